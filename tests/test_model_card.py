"""The generated Hub model card: YAML metadata, model-index, the body read from config.json, and runnable usage code."""

import ast
import json
import logging
import math
import re
import shutil

import pytest
import yaml
from huggingface_hub import ModelCard

from conftest import json_lines, make_tiny_config, run_python
from lqkbert import model_card
from lqkbert.model_card import write_model_card


EVAL_RESULTS = {
    "data": "data/test.jsonl",
    "num_examples": 363,
    "metrics": {
        "sentiment_accuracy": 0.7134,
        "sentiment_macro_f1": 0.6512,
        "action_accuracy": 0.6021,
        "action_macro_f1": 0.5533,
        "emotion_micro_f1": 0.5109,
        "emotion_macro_f1": 0.4217,
        "emotion_f1_greed": 0.3981,
        "emotion_f1_sarcasm": 0.1,
        "certainty_mae": 0.1123,
        "certainty_pearson": 0.7012,
        "relevance_mae": 0.0987,
        "relevance_pearson": 0.6644,
        "toxicity_mae": 0.0412,
        "toxicity_pearson": 0.8123,
        "combined_score": 0.6025,
    },
}
EXPECTED_METRIC_TYPES = {
    "sentiment_accuracy": "accuracy",
    "sentiment_macro_f1": "f1",
    "action_accuracy": "accuracy",
    "action_macro_f1": "f1",
    "emotion_micro_f1": "f1",
    "emotion_macro_f1": "f1",
    "emotion_f1_greed": "f1",
    "emotion_f1_sarcasm": "f1",
    "certainty_mae": "mae",
    "certainty_pearson": "pearsonr",
    "relevance_mae": "mae",
    "relevance_pearson": "pearsonr",
    "toxicity_mae": "mae",
    "toxicity_pearson": "pearsonr",
    "combined_score": "combined_score",
}
REQUIRED_TAGS = {"korean", "crypto", "sentiment-analysis", "multi-task", "custom_code"}


def write_config(folder, **overrides):
    folder.mkdir(parents=True, exist_ok=True)
    make_tiny_config(400, **overrides).save_pretrained(folder)
    return folder


def card_metadata(path):
    return ModelCard.load(path).data.to_dict()


def card_body(path):
    return ModelCard.load(path).text


def model_index_metrics(metadata):
    (entry,) = metadata["model-index"]
    (result,) = entry["results"]
    return result, result["metrics"]


@pytest.fixture
def config_dir(tmp_path):
    return write_config(tmp_path / "model")


def test_metadata_without_eval_results(config_dir):
    path = write_model_card(config_dir)
    metadata = card_metadata(path)

    assert path == config_dir / "README.md"
    assert metadata["license"] == "mit"
    assert metadata["language"] == ["ko", "en"]
    assert metadata["base_model"] == "klue/bert-base"
    assert metadata["pipeline_tag"] == "text-classification"
    assert metadata["library_name"] == "transformers"
    assert REQUIRED_TAGS <= set(metadata["tags"])
    assert "model-index" not in metadata
    assert "No evaluation results were given" in card_body(path)


def test_local_base_model_left_out_of_metadata(config_dir, tmp_path):
    local_base = tmp_path / "demo-base"
    local_base.mkdir()

    path = write_model_card(config_dir, base_model=str(local_base))

    assert "base_model" not in card_metadata(path)
    assert "fine-tuned from the local BERT checkpoint `demo-base`, which is not published on the Hub" in card_body(path)


def test_metadata_from_eval_results_file(config_dir):
    (config_dir / "eval_results.json").write_text(json.dumps(EVAL_RESULTS), encoding="utf-8")

    metadata = card_metadata(write_model_card(config_dir, base_model="klue/roberta-base"))
    result, metrics = model_index_metrics(metadata)

    assert metadata["base_model"] == "klue/roberta-base"
    assert metadata["model-index"][0]["name"] == "LQ-KBERT-Base"
    assert result["task"]["type"] == "text-classification"
    assert result["dataset"]["type"] == "data/test.jsonl"
    assert result["dataset"]["name"] == "test.jsonl"
    assert result["dataset"]["split"] == "test"
    assert [metric["value"] for metric in metrics] == list(EVAL_RESULTS["metrics"].values())
    assert [metric["type"] for metric in metrics] == [EXPECTED_METRIC_TYPES[key] for key in EVAL_RESULTS["metrics"]]
    assert all(metric["name"] for metric in metrics)
    assert len({metric["name"] for metric in metrics}) == len(metrics)


def test_metric_names_and_averages(config_dir):
    metadata = card_metadata(write_model_card(config_dir, eval_results=EVAL_RESULTS))
    _, metrics = model_index_metrics(metadata)
    by_name = {metric["name"]: metric for metric in metrics}

    assert by_name["Sentiment strength accuracy"]["value"] == 0.7134
    assert by_name["Sentiment strength macro F1"]["args"] == {"average": "macro"}
    assert by_name["Emotions micro F1"]["args"] == {"average": "micro"}
    assert by_name["Emotions F1 (greed)"]["value"] == 0.3981
    assert by_name["Toxicity Pearson r"]["type"] == "pearsonr"
    assert by_name["Certainty MAE"]["type"] == "mae"


def test_eval_results_argument_wins_over_file(config_dir):
    (config_dir / "eval_results.json").write_text(json.dumps(EVAL_RESULTS), encoding="utf-8")
    explicit_results = {"data": "data/dev.jsonl", "num_examples": 10, "metrics": {"sentiment_accuracy": 0.25}}

    metadata = card_metadata(write_model_card(config_dir, eval_results=explicit_results))
    result, metrics = model_index_metrics(metadata)

    assert result["dataset"]["split"] == "dev"
    assert [(metric["type"], metric["value"]) for metric in metrics] == [("accuracy", 0.25)]


def test_evaluation_table_in_body(config_dir):
    body = card_body(write_model_card(config_dir, eval_results=EVAL_RESULTS))

    assert "Results on `data/test.jsonl` (363 examples)." in body
    assert "| Sentiment strength | accuracy | `sentiment_accuracy` | 0.7134 |" in body
    assert "| Emotions | F1 (greed) | `emotion_f1_greed` | 0.3981 |" in body
    assert "| All heads | combined score | `combined_score` | 0.6025 |" in body


def test_hub_split_dataset_name(config_dir):
    explicit_results = {"data": "langquant/posts[validation]", "metrics": {"action_accuracy": 0.5}}

    result, _ = model_index_metrics(card_metadata(write_model_card(config_dir, eval_results=explicit_results)))

    assert result["dataset"] == {"name": "langquant/posts", "type": "langquant/posts", "split": "validation"}


def test_nan_metric_left_out_of_model_index(config_dir, caplog):
    explicit_results = {"data": "data/test.jsonl", "metrics": {"certainty_pearson": math.nan, "certainty_mae": 0.2}}

    with caplog.at_level(logging.WARNING, logger="lqkbert.model_card"):
        path = write_model_card(config_dir, eval_results=explicit_results)
    _, metrics = model_index_metrics(card_metadata(path))

    assert [metric["type"] for metric in metrics] == ["mae"]
    assert "| Certainty | Pearson r | `certainty_pearson` | n/a |" in card_body(path)
    assert "Metric certainty_pearson is nan" in caplog.text


@pytest.mark.parametrize(
    "eval_results, message",
    [
        ({"data": "data/test.jsonl"}, "expected a mapping with a 'metrics' mapping"),
        ({"metrics": {"sentiment_accuracy": "high"}}, "metric 'sentiment_accuracy'='high': a metric value must be"),
        ({"metrics": {"sentiment_accuracy": True}}, "metric 'sentiment_accuracy'=True"),
        ({"data": 3, "metrics": {}}, "Invalid eval_results 'data'=3"),
    ],
)
def test_invalid_eval_results_rejected(config_dir, eval_results, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        write_model_card(config_dir, eval_results=eval_results)


def test_invalid_eval_results_file_rejected(config_dir):
    (config_dir / "eval_results.json").write_text("{not json", encoding="utf-8")

    with pytest.raises(ValueError, match=r"eval_results.json: not valid JSON"):
        write_model_card(config_dir)


def test_missing_or_foreign_config_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        write_model_card(tmp_path)

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}), encoding="utf-8")
    with pytest.raises(ValueError, match="config.json has model_type 'bert', but the card describes an LQ-KBERT"):
        write_model_card(tmp_path)


def test_body_reads_labels_and_thresholds_from_config(tmp_path):
    folder = write_config(
        tmp_path / "model",
        emotion_labels=["greed", "fear", "confidence", "doubt", "anger", "hope", "sarcasm", "joy"],
        emotion_thresholds={"greed": 0.35, "joy": 0.625},
        max_text_length=150,
    )

    body = card_body(write_model_card(folder))

    assert "| `greed` | 탐욕 | 0.35 |" in body
    assert "| `fear` | 두려움 | 0.5 |" in body
    assert "| `joy` | - | 0.625 |" in body
    assert "at most 150 characters" in body
    for name in ["strong_pos", "weak_pos", "neutral", "weak_neg", "strong_neg"]:
        assert f"- `{name}`: " in body
    for name in ["buy", "hold", "sell", "avoid", "info_only", "ask_info"]:
        assert f"- `{name}`: " in body
    for name in ["certainty", "relevance", "toxicity"]:
        assert f"- `{name}`: " in body


def test_body_marks_labels_without_definition(tmp_path):
    folder = write_config(tmp_path / "model", action_labels=["buy", "sell", "short"])

    body = card_body(write_model_card(folder))

    assert "- `short`: No published definition" in body
    assert "- `hold`: " not in body


def test_body_sections(config_dir):
    body = card_body(write_model_card(config_dir, repo_id="acme/lq-kbert-ft"))

    for heading in ["## Labels", "## Usage", "## Evaluation", "## Training data", "## Limitations", "## Disclaimer",
                    "## Citation"]:
        assert f"\n{heading}\n" in body
    assert 'repo_id = "acme/lq-kbert-ft"' in body
    assert 'model="acme/lq-kbert-ft"' in body
    assert 'pipeline(\n    "lqkbert",' in body
    assert "trust_remote_code=True" in body
    assert "revision=" in body
    assert "commit hash" in body
    assert "at most 200 characters" in body
    assert "not financial advice" in body
    assert "이 모델은 학술 연구 및 실험용으로만 제공됩니다." in body
    assert "not financial or investment advice" in body
    assert "@misc{langquant2025lkbert," in body
    assert "No description of the training data was given" in body


def test_training_data_text(config_dir):
    body = card_body(write_model_card(config_dir, training_data="  12,000 Korean posts from two exchanges.\n"))

    assert "## Training data\n\n12,000 Korean posts from two exchanges.\n" in body
    assert "No description of the training data" not in body


def test_training_data_from_eval_results(config_dir):
    recorded = dict(EVAL_RESULTS, training_data="Fine-tuned on 800 labeled sentences from data/train.jsonl.")

    body = card_body(write_model_card(config_dir, eval_results=recorded))

    assert "Fine-tuned on 800 labeled sentences from data/train.jsonl." in body


def test_card_is_deterministic(config_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(config_dir, other)

    first = write_model_card(config_dir, eval_results=EVAL_RESULTS, training_data="Posts.").read_bytes()
    second = write_model_card(config_dir, eval_results=EVAL_RESULTS, training_data="Posts.").read_bytes()
    copied = write_model_card(other, eval_results=EVAL_RESULTS, training_data="Posts.").read_bytes()

    assert first == second
    assert first == copied
    assert first.endswith(b"```\n")


def test_yaml_block_is_plain_yaml(config_dir):
    text = write_model_card(config_dir, eval_results=EVAL_RESULTS).read_text(encoding="utf-8")

    _, header, _ = text.split("---\n", 2)
    metadata = yaml.safe_load(header)

    assert metadata["license"] == "mit"
    assert metadata["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.7134


def test_command_uses_recorded_base_model(config_dir, capsys):
    recorded = dict(EVAL_RESULTS, base_model="klue/bert-base-v2")
    (config_dir / "eval_results.json").write_text(json.dumps(recorded), encoding="utf-8")

    assert model_card.main([str(config_dir), "--repo-id", "acme/model"]) == 0

    metadata = card_metadata(config_dir / "README.md")
    assert metadata["base_model"] == "klue/bert-base-v2"
    assert capsys.readouterr().out.strip() == str(config_dir / "README.md")


def _python_blocks(body):
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_card_usage_code_runs(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    body = card_body(write_model_card(folder, repo_id="acme/lq-kbert"))
    auto_model_code, pipeline_code = _python_blocks(body)

    pointed = [code.replace('"acme/lq-kbert"', repr(str(folder))) for code in (auto_model_code, pipeline_code)]
    assert all(repr(str(folder)) in code for code in pointed)
    stdout = run_python(pointed[0] + "\nprint('---')\n" + pointed[1], tmp_path)
    auto_model_output, pipeline_output = stdout.split("---\n")

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    results = json_lines(auto_model_output)
    assert [result["text"] for result in results] == ["비트코인 조정 후 반등, 투자심리 개선", "폭락ㅠㅠㅜㅠㅜ 다 팔아야할까요?"]
    for result in results:
        assert list(result) == ["text", "sentiment_strength", "action_signal", "emotions", "certainty", "relevance",
                                "toxicity"]
        assert result["sentiment_strength"] in config["sentiment_labels"]
        assert result["action_signal"] in config["action_labels"]
        assert set(result["emotions"]) <= set(config["emotion_labels"])
        for key in ("certainty", "relevance", "toxicity"):
            assert 0.0 <= result[key] <= 1.0

    pipeline_result = ast.literal_eval(pipeline_output.strip().splitlines()[-1])
    assert {"sentiment_strength", "action_signal", "emotions", "certainty", "relevance", "toxicity"} <= set(
        pipeline_result
    )
    assert pipeline_result["sentiment_strength"] in config["sentiment_labels"]
