"""The shipped corpus in data/: valid rows, coverage of every label, no near duplicates, no card sentences."""

import json

import pytest

from conftest import REPO_ROOT
from lqkbert.data import (
    EMOTION_LABELS,
    SENTIMENT_LABELS,
    ACTION_LABELS,
    find_near_duplicates,
    normalize_text,
    validate_files,
)


SPLITS = ["train", "dev", "test"]

# The model card's nine example sentences: four in its usage code, five in its table. No split may contain them.
CARD_SENTENCES = [
    "비트코인 조정 후 반등, 투자심리 개선",
    "환율 급등에 증시 변동성 확대",
    "비트 그만 좀 내려라 진짜..",
    "폭락ㅠㅠㅜㅠㅜ 다 팔아야할까요?",
    "개떡상이여 ",
    "여기선 관망이 맞다",
    "들어가도 될까?",
    "해킹 터짐, 비상. 접근 금지",
    "업데이트 공지 나왔습니다",
]


@pytest.fixture(scope="module")
def report():
    return validate_files([REPO_ROOT / "data" / f"{split}.jsonl" for split in SPLITS])


@pytest.fixture(scope="module")
def records(report):
    return [row.fields for row in report.rows]


def test_every_row_valid(report):
    assert report.problems == []
    assert sum(report.missing.values()) == 0


def test_size_and_split_ratios(report):
    sizes = {split: sum(1 for row in report.rows if row.path.endswith(f"{split}.jsonl")) for split in SPLITS}
    total = sum(sizes.values())

    assert total >= 3000
    assert abs(sizes["train"] / total - 0.8) < 0.02
    assert abs(sizes["dev"] / total - 0.1) < 0.02
    assert abs(sizes["test"] / total - 0.1) < 0.02


def test_class_coverage(records):
    for label in SENTIMENT_LABELS:
        assert sum(r["sentiment_strength"] == label for r in records) >= 300, label
    for label in ACTION_LABELS:
        assert sum(r["action_signal"] == label for r in records) >= 250, label
    for label in EMOTION_LABELS:
        assert sum(label in r["emotions"] for r in records) >= 150, label


def test_emotion_and_score_coverage(records):
    total = len(records)

    assert sum(not r["emotions"] for r in records) >= total / 4
    assert sum(r["toxicity"] >= 0.5 for r in records) >= total / 10
    assert sum(r["relevance"] <= 0.3 for r in records) >= total / 10
    for low, high in ((0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0)):
        assert sum(low <= r["certainty"] <= high for r in records) >= 100, (low, high)
    for low, high in ((0.0, 0.3), (0.4, 0.7), (0.7, 1.0)):
        assert sum(low <= r["relevance"] <= high for r in records) >= 100, (low, high)


def test_lengths_span_limit(records):
    lengths = [len(r["text"]) for r in records]

    assert min(lengths) >= 2
    assert max(lengths) <= 200
    assert sum(length > 100 for length in lengths) >= 100


def test_no_near_duplicates_across_splits(records):
    assert find_near_duplicates([r["text"] for r in records], 0.8) == []


def test_card_sentences_absent(records):
    texts = {normalize_text(r["text"]) for r in records}
    for sentence in CARD_SENTENCES:
        assert normalize_text(sentence) not in texts, sentence


def test_card_examples_file_matches_known_sentences():
    from conftest import REFERENCE_DIR

    path = REFERENCE_DIR / "card_examples.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    examples = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    assert set(examples) <= set(CARD_SENTENCES)
