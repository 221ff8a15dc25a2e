"""LQKBertConfig: defaults that describe the published checkpoint, round trips, and exact errors on bad values."""

import json

import pytest

from lqkbert.model_folder import config_class, write_root_config
from lqkbert.remote_code import HUB_CODE_DIR


def test_defaults_follow_model_card():
    config = config_class()()

    assert config.model_type == "lqkbert"
    assert config.sentiment_labels == ["strong_pos", "weak_pos", "neutral", "weak_neg", "strong_neg"]
    assert config.action_labels == ["buy", "hold", "sell", "avoid", "info_only", "ask_info"]
    assert config.emotion_labels == ["greed", "fear", "confidence", "doubt", "anger", "hope", "sarcasm"]
    assert config.regression_targets == ["certainty", "relevance", "toxicity"]
    assert config.emotion_threshold_list() == [0.5] * 7
    assert config.loss_weights == {"senti": 1.0, "act": 1.0, "emo": 1.0, "reg": 1.0}
    assert config.max_text_length == 200
    assert (config.num_sentiment_labels, config.num_action_labels) == (5, 6)
    assert (config.num_emotion_labels, config.num_regression_targets) == (7, 3)


def test_round_trip_keeps_every_field(tmp_path):
    config = config_class()(
        hidden_size=32,
        emotion_thresholds={"fear": 0.3, "sarcasm": 0.7},
        loss_weights={"reg": 0.25},
        regression_loss="smooth_l1",
        classifier_dropout=0.2,
    )
    config.save_pretrained(tmp_path)
    loaded = config_class().from_pretrained(tmp_path)

    assert loaded.emotion_thresholds == config.emotion_thresholds
    assert loaded.emotion_thresholds["fear"] == 0.3
    assert loaded.emotion_thresholds["greed"] == 0.5
    assert loaded.loss_weights == {"senti": 1.0, "act": 1.0, "emo": 1.0, "reg": 0.25}
    assert loaded.regression_loss == "smooth_l1"
    assert loaded.classifier_dropout == 0.2
    assert loaded.hidden_size == 32


def test_root_config_is_generated(tmp_path):
    committed = json.loads((HUB_CODE_DIR / "config.json").read_text(encoding="utf-8"))
    generated = json.loads(write_root_config(tmp_path / "config.json").read_text(encoding="utf-8"))

    # Each transformers version leaves different default fields out of config.json, so compare the configs that the
    # two files describe, as this version reads them.
    assert committed["auto_map"] == generated["auto_map"]
    assert config_class().from_dict(committed).to_dict() == config_class().from_dict(generated).to_dict()


def test_root_config_has_klue_dimensions():
    root = json.loads((HUB_CODE_DIR / "config.json").read_text(encoding="utf-8"))

    assert root["model_type"] == "lqkbert"
    assert (root["vocab_size"], root["hidden_size"], root["num_hidden_layers"]) == (32000, 768, 12)
    assert (root["num_attention_heads"], root["intermediate_size"]) == (12, 3072)
    assert (root["max_position_embeddings"], root["type_vocab_size"], root["pad_token_id"]) == (512, 2, 0)
    assert root["auto_map"] == {
        "AutoConfig": "configuration_lqkbert.LQKBertConfig",
        "AutoModel": "modeling_lqkbert.LQKBertModel",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sentiment_labels": []}, r"Invalid sentiment_labels=\[\]: the list is empty"),
        ({"action_labels": ["buy", "buy", "sell"]}, r"Invalid action_labels=\['buy', 'buy', 'sell'\]: duplicate names \['buy'\]"),
        ({"emotion_labels": "greed,fear"}, r"Invalid emotion_labels='greed,fear': use a list of non-empty label names"),
        ({"regression_targets": ["certainty", ""]}, r"Invalid regression_targets=\['certainty', ''\]"),
        ({"emotion_thresholds": {"fear": 1.0}}, r"Invalid emotion_thresholds\['fear'\]=1.0: a threshold must lie strictly between 0 and 1"),
        ({"emotion_thresholds": {"fear": 0}}, r"Invalid emotion_thresholds\['fear'\]=0: a threshold must lie strictly between 0 and 1"),
        ({"emotion_thresholds": {"joy": 0.5}}, r"Invalid emotion_thresholds: unknown emotions \['joy'\]; the keys must be among"),
        ({"loss_weights": {"senti": -1}}, r"Invalid loss_weights\['senti'\]=-1: a loss weight must be a finite number >= 0"),
        ({"loss_weights": {"sentiment": 1}}, r"Invalid loss_weights: unknown keys \['sentiment'\]; the keys must be among \['senti', 'act', 'emo', 'reg'\]"),
        ({"regression_loss": "huber"}, r"Invalid regression_loss='huber': use one of \['mse', 'l1', 'smooth_l1'\]"),
        ({"num_sentiment_labels": 3}, r"Invalid num_sentiment_labels=3: sentiment_labels has 5 names"),
        ({"num_emotion_labels": 8}, r"Invalid num_emotion_labels=8: emotion_labels has 7 names"),
        ({"action_labels": ["buy", "sell"], "num_action_labels": 6}, r"Invalid num_action_labels=6: action_labels has 2 names"),
        ({"max_text_length": 0}, r"Invalid max_text_length=0: use a positive number of characters"),
        ({"classifier_dropout": 1.5}, r"Invalid classifier_dropout=1.5: use a probability in \[0, 1\)"),
    ],
)
def test_invalid_values_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        config_class()(**kwargs)


def test_matching_head_sizes_accepted():
    config = config_class()(action_labels=["buy", "sell"], num_action_labels=2)

    assert config.num_action_labels == 2
