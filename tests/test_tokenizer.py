"""The tokenizer built from the root tokenizer_config.json keeps Hangul, jamo and emoji intact."""

import json
import unicodedata

import pytest
from transformers import AutoTokenizer

from lqkbert.model_folder import ROOT_TOKENIZER_CONFIG
from lqkbert.tokenizer import train_wordpiece


def test_root_tokenizer_config_settings():
    settings = json.loads(ROOT_TOKENIZER_CONFIG.read_text(encoding="utf-8"))

    assert settings["tokenizer_class"] == "BertTokenizer"
    assert settings["do_lower_case"] is False
    assert settings["strip_accents"] is False
    assert settings["model_max_length"] == 512
    assert [settings[key] for key in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")] == [
        "[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]",
    ]


@pytest.fixture(scope="module")
def auto_tokenizer(tokenizer_dir):
    # Plain AutoTokenizer, as the model card loads it: the settings must come from the files alone.
    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.mark.parametrize("word", ["비트코인", "가즈아", "ㅋㅋ", "ㅠㅠ", "🚀", "😭", "🐋"])
def test_vocabulary_pieces_survive(auto_tokenizer, word):
    ids = auto_tokenizer(word, add_special_tokens=False)["input_ids"]

    assert ids
    assert auto_tokenizer.unk_token_id not in ids
    assert auto_tokenizer.decode(ids).replace(" ", "") == word


def test_hangul_never_decomposed(auto_tokenizer):
    tokens = auto_tokenizer.tokenize("리플 떡락 ㅠㅠ 손절")

    assert "".join(token.removeprefix("##") for token in tokens) == "리플떡락ㅠㅠ손절"
    for token in tokens:
        assert token == unicodedata.normalize("NFC", token)
        assert not any(0x1100 <= ord(char) <= 0x11FF for char in token)


def test_case_and_accents_kept(tmp_path):
    tokenizer = train_wordpiece(["BTC Bitcoin ETF café 비트", "ÉTF Café 이더"], tmp_path, vocab_size=200, min_frequency=1)

    assert "Bitcoin" in tokenizer.tokenize("Bitcoin")
    assert tokenizer.tokenize("BTC") == ["BTC"]
    assert "é" in "".join(tokenizer.tokenize("café"))
    assert tokenizer.unk_token not in tokenizer.tokenize("Café ÉTF")


def test_unknown_character_is_unk(auto_tokenizer):
    assert auto_tokenizer.tokenize("鬱") == [auto_tokenizer.unk_token]


def test_empty_corpus_rejected(tmp_path):
    with pytest.raises(ValueError, match="Cannot train a WordPiece vocabulary on no text"):
        train_wordpiece(["", "   "], tmp_path)
