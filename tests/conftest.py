"""Shared fixtures: a Korean WordPiece tokenizer trained here and tiny LQ-KBERT models saved to real folders."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from lqkbert.model_folder import config_class, model_class, save_model_folder
from lqkbert.tokenizer import train_wordpiece


REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"

# Sentences written for the tests. They cover Hangul, jamo laughter and crying, emoji, English and numbers, so the
# trained vocabulary has ids for each of them.
KOREAN_SENTENCES = [
    "비트코인 가즈아 ㅋㅋㅋ 🚀🚀",
    "이더리움 존버 중 ㅎㅎ 언젠가 오르겠지",
    "리플 떡락 ㅠㅠ 손절해야 하나",
    "도지 펌핑 끝났다 설거지 조심",
    "솔라나 메인넷 업그레이드 공지 나옴",
    "김프 5% 넘었네 ㄷㄷ",
    "오늘 롱 잡았다가 바로 청산 ㅜㅜ",
    "스캠 코인 러그풀 당했음 😭",
    "BTC 9800만원 돌파, ATH 갱신",
    "알트 불장 오면 익절하고 나간다",
    "물타기 하다가 한강 간다 ㅋㅋ",
    "업비트 입출금 점검 안내",
    "빗썸 상장폐지 예정 종목 공지",
    "ETF 승인 뉴스에 시장 반등",
    "금리 인상 우려로 코인 시장 하락",
    "이거 지금 들어가도 돼요?",
    "왜 갑자기 떨어지는 거임?",
    "점심 뭐 먹지 배고프다",
    "고래가 100 BTC 이동시킴 🐋",
    "숏 쳤는데 떡상해서 멘붕 💀",
]

TINY_DIMENSIONS = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=256,
    type_vocab_size=2,
    pad_token_id=0,
)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    train_wordpiece(KOREAN_SENTENCES, folder, vocab_size=400, min_frequency=1)
    return folder


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from lqkbert.model_folder import load_tokenizer

    return load_tokenizer(tokenizer_dir)


def make_tiny_config(vocab_size, **overrides):
    return config_class()(vocab_size=vocab_size, **{**TINY_DIMENSIONS, **overrides})


def make_tiny_model(vocab_size, seed=0, **overrides):
    torch.manual_seed(seed)
    model = model_class()(make_tiny_config(vocab_size, **overrides))
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    """A saved tiny LQ-KBERT folder, built once per session; tests must not modify it."""
    folder = tmp_path_factory.mktemp("tiny") / "model"
    save_model_folder(make_tiny_model(len(tokenizer)), tokenizer, folder)
    return folder


def offline_env(hf_home):
    """Environment of a fresh subprocess that cannot reach the Hub and starts with an empty Hugging Face cache."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(hf_home), PYTHONDONTWRITEBYTECODE="1")
    env.pop("HF_MODULES_CACHE", None)
    return env


def run_python(code, tmp_path, cwd=None):
    """Run `code` in a fresh offline interpreter and return its stdout; fail the test with stderr on a non-zero exit.

    `cwd` defaults to an empty folder, so the repository's root files cannot be imported by accident.
    """
    hf_home = tmp_path / "hf_home"
    hf_home.mkdir(exist_ok=True)
    work_dir = cwd or (tmp_path / "cwd")
    Path(work_dir).mkdir(exist_ok=True)

    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=work_dir,
        env=offline_env(hf_home),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        pytest.fail(f"subprocess exited with {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result.stdout


def json_lines(stdout):
    """Parse the JSON objects printed one per line. On transformers 5.x, `AutoTokenizer` may print its custom-code
    question (answered "no" by the closed stdin) without a newline, so a line may carry that text before the `{`."""
    return [json.loads(line[line.index("{"):]) for line in stdout.splitlines() if "{" in line]
