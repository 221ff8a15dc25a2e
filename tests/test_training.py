"""Fine-tuning and evaluation on a tiny BERT built here, with the Trainer traps of multi-output models."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, Trainer, TrainingArguments

from conftest import REPO_ROOT, TINY_DIMENSIONS, offline_env, run_python
from lqkbert import evaluation, training
from lqkbert.data import load_valid_rows
from lqkbert.model_folder import build_model
from lqkbert.tokenizer import train_wordpiece


NUM_TRAIN, NUM_EVAL = 48, 16


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    rows = (REPO_ROOT / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    (folder / "train.jsonl").write_text("\n".join(rows[:NUM_TRAIN]) + "\n", encoding="utf-8")
    (folder / "dev.jsonl").write_text("\n".join(rows[NUM_TRAIN:NUM_TRAIN + NUM_EVAL]) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, corpus):
    """A plain BERT masked-LM folder with its own tokenizer: the shape of klue/bert-base, tiny."""
    folder = tmp_path_factory.mktemp("base")
    texts = [row["text"] for row in load_valid_rows([corpus / "train.jsonl"])]
    tokenizer = train_wordpiece(texts, folder, vocab_size=300, min_frequency=1)
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), **TINY_DIMENSIONS)).save_pretrained(folder)
    return folder


def train_arguments(base_dir, corpus, output_dir, *extra):
    return [
        "--base_model", str(base_dir),
        "--train_file", str(corpus / "train.jsonl"),
        "--validation_file", str(corpus / "dev.jsonl"),
        "--output_dir", str(output_dir),
        "--num_train_epochs", "2",
        "--per_device_train_batch_size", "16",
        "--per_device_eval_batch_size", "16",
        "--learning_rate", "1e-3",
        "--seed", "3",
        "--disable_tqdm", "true",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base_dir, corpus):
    output_dir = tmp_path_factory.mktemp("run") / "model"
    assert training.main(train_arguments(base_dir, corpus, output_dir)) == 0
    return output_dir


def test_output_folder_is_hub_ready(trained):
    names = sorted(path.name for path in trained.iterdir())
    config = json.loads((trained / "config.json").read_text())
    results = json.loads((trained / "eval_results.json").read_text())

    assert {"README.md", "config.json", "configuration_lqkbert.py", "eval_results.json", "model.safetensors",
            "modeling_lqkbert.py", "tokenizer_config.json"} <= set(names)
    assert "tokenizer.json" in names or "vocab.txt" in names
    assert not [name for name in names if name.startswith("checkpoint-") or name.endswith((".bin", ".pt"))]
    assert config["auto_map"]["AutoModel"] == "modeling_lqkbert.LQKBertModel"
    assert set(config["emotion_thresholds"]) == set(config["emotion_labels"])
    assert results["num_examples"] == NUM_EVAL
    assert results["base_model"].endswith("base0")
    for key in ("sentiment_accuracy", "action_macro_f1", "emotion_micro_f1", "toxicity_mae", "combined_score"):
        assert key in results["metrics"]
    assert not [path for path in trained.parent.iterdir() if ".partial-" in path.name]


def test_checkpoints_load_offline(trained, tmp_path):
    checkpoints = sorted((trained.parent / "model-checkpoints").glob("checkpoint-*"))
    assert checkpoints
    for checkpoint in checkpoints:
        assert (checkpoint / "modeling_lqkbert.py").is_file()
        assert (checkpoint / "configuration_lqkbert.py").is_file()

    stdout = run_python(
        f"""
        from transformers import AutoModel
        print(type(AutoModel.from_pretrained({str(checkpoints[-1])!r}, trust_remote_code=True)).__name__)
        """,
        tmp_path,
    )
    assert stdout.strip().splitlines()[-1] == "LQKBertModel"


def test_resume_from_checkpoint(trained, base_dir, corpus, tmp_path):
    checkpoint_dir = tmp_path / "checkpoints"
    shutil.copytree(trained.parent / "model-checkpoints", checkpoint_dir)
    last = sorted(checkpoint_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))[-1]

    arguments = train_arguments(base_dir, corpus, tmp_path / "resumed", "--num_train_epochs", "3",
                                "--checkpoint_dir", str(checkpoint_dir), "--resume_from_checkpoint", str(last))
    assert training.main(arguments) == 0

    state = json.loads((sorted(checkpoint_dir.glob("checkpoint-*"),
                               key=lambda path: int(path.name.split("-")[1]))[-1] / "trainer_state.json").read_text())
    assert state["epoch"] == 3.0
    assert (tmp_path / "resumed" / "model.safetensors").is_file()


def test_trained_thresholds_used_by_loader(trained):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(trained, trust_remote_code=True)
    saved = json.loads((trained / "config.json").read_text())["emotion_thresholds"]

    assert config.emotion_thresholds == saved
    assert all(0.0 < value < 1.0 for value in saved.values())


def test_bad_data_fails_before_training(base_dir, corpus, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        (corpus / "train.jsonl").read_text(encoding="utf-8")
        + json.dumps({"text": "비트 떡상", "action_signal": "moon"}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    arguments = train_arguments(base_dir, corpus, tmp_path / "model")
    arguments[arguments.index("--train_file") + 1] = str(bad)

    assert training.main(arguments) == 1
    error = capsys.readouterr().err
    assert f"{bad}:{NUM_TRAIN + 1}: field 'action_signal' has unknown label 'moon'" in error
    assert not (tmp_path / "model").exists()
    assert not (tmp_path / "model-checkpoints").exists()


def test_output_dir_that_is_not_a_model_rejected(base_dir, corpus, tmp_path, capsys):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "todo.txt").write_text("keep me")

    assert training.main(train_arguments(base_dir, corpus, precious)) == 1
    assert "exists and is not an LQ-KBERT model folder" in capsys.readouterr().err
    assert (precious / "todo.txt").read_text() == "keep me"


def test_interrupted_run_keeps_previous_folder(trained, base_dir, corpus, tmp_path, monkeypatch):
    output_dir = tmp_path / "model"
    shutil.copytree(trained, output_dir)
    before = {path.name: path.read_bytes() for path in output_dir.iterdir()}

    def interrupt(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train", interrupt)
    with pytest.raises(KeyboardInterrupt):
        training.main(train_arguments(base_dir, corpus, output_dir))

    assert {path.name: path.read_bytes() for path in output_dir.iterdir()} == before
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".")]


def test_dataset_name_loads_local_dataset(base_dir, corpus, tmp_path):
    dataset_dir = tmp_path / "dataset"
    dataset_dir.mkdir()
    shutil.copyfile(corpus / "train.jsonl", dataset_dir / "train.jsonl")
    shutil.copyfile(corpus / "dev.jsonl", dataset_dir / "validation.jsonl")
    arguments = train_arguments(base_dir, corpus, tmp_path / "model", "--num_train_epochs", "1")
    for option in ("--train_file", "--validation_file"):
        index = arguments.index(option)
        del arguments[index:index + 2]

    assert training.main([*arguments, "--dataset_name", str(dataset_dir)]) == 0
    assert json.loads((tmp_path / "model" / "eval_results.json").read_text())["num_examples"] == NUM_EVAL


# Trainer traps of a model with several outputs and label fields


@pytest.fixture(scope="module")
def datasets_and_model(base_dir, corpus):
    from lqkbert.model_folder import load_tokenizer

    tokenizer = load_tokenizer(base_dir)
    model = build_model(str(base_dir), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    train_rows = load_valid_rows([corpus / "train.jsonl"])
    eval_rows = load_valid_rows([corpus / "dev.jsonl"])
    # Partial labels in the evaluation rows: predict() must still return every head.
    eval_rows[0] = {"text": eval_rows[0]["text"], "action_signal": eval_rows[0]["action_signal"]}
    return (
        training.encode(train_rows, tokenizer, model.config, 200),
        training.encode(eval_rows, tokenizer, model.config, 200),
        tokenizer,
    )


def make_trainer(base_dir, datasets_and_model, tmp_path, **arguments):
    train_dataset, eval_dataset, tokenizer = datasets_and_model
    torch.manual_seed(0)
    model = build_model(str(base_dir), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), report_to="none", label_names=training.LABEL_NAMES,
                             save_strategy="no", seed=0, disable_tqdm=True, use_cpu=True, **arguments)
    return Trainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                   data_collator=training.MultiTaskCollator(tokenizer.pad_token_id),
                   compute_metrics=training.make_compute_metrics(model.config))


def test_label_columns_survive_column_removal(base_dir, datasets_and_model, tmp_path):
    trainer = make_trainer(base_dir, datasets_and_model, tmp_path, remove_unused_columns=True)

    batch = next(iter(trainer.get_train_dataloader()))

    assert set(training.LABEL_NAMES) <= set(batch)
    assert batch["labels_emo"].dtype == torch.float32
    assert batch["labels_senti"].dtype == torch.long


def test_eval_loss_reported(base_dir, datasets_and_model, tmp_path):
    trainer = make_trainer(base_dir, datasets_and_model, tmp_path, per_device_eval_batch_size=8)

    metrics = trainer.evaluate()

    assert np.isfinite(metrics["eval_loss"])
    assert "eval_combined_score" in metrics
    assert "eval_sentiment_accuracy" in metrics


@pytest.mark.parametrize("hidden_states", [False, True])
@pytest.mark.parametrize("with_labels", [False, True])
def test_predict_returns_heads_in_order(base_dir, datasets_and_model, tmp_path, hidden_states, with_labels):
    trainer = make_trainer(base_dir, datasets_and_model, tmp_path, per_device_eval_batch_size=5)
    trainer.model.config.output_hidden_states = hidden_states
    dataset = datasets_and_model[1]
    if not with_labels:
        dataset = dataset.remove_columns(training.LABEL_NAMES)

    prediction = trainer.predict(dataset)

    shapes = [array.shape for array in prediction.predictions]
    assert shapes == [(NUM_EVAL, 5), (NUM_EVAL, 6), (NUM_EVAL, 7), (NUM_EVAL, 3)]
    if with_labels:
        assert [np.asarray(labels).shape[0] for labels in prediction.label_ids] == [NUM_EVAL] * 4
        assert np.isfinite(prediction.metrics["test_loss"])
    else:
        assert prediction.label_ids is None


def test_gradient_accumulation_matches_full_batch(base_dir, datasets_and_model, tmp_path):
    full = make_trainer(base_dir, datasets_and_model, tmp_path, per_device_train_batch_size=8,
                        gradient_accumulation_steps=1, max_steps=3, learning_rate=1e-3)
    accumulated = make_trainer(base_dir, datasets_and_model, tmp_path, per_device_train_batch_size=2,
                               gradient_accumulation_steps=4, max_steps=3, learning_rate=1e-3)

    full_loss = full.train().training_loss
    accumulated_loss = accumulated.train().training_loss

    assert abs(full_loss - accumulated_loss) < 1e-4
    for (name, expected), (_, actual) in zip(full.model.named_parameters(), accumulated.model.named_parameters()):
        torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4, msg=f"parameter {name}")


def test_collator_pads_and_keeps_missing_labels():
    collator = training.MultiTaskCollator(pad_token_id=0, pad_to_multiple_of=4)
    batch = collator([
        {"input_ids": [2, 7, 3], "attention_mask": [1, 1, 1], "labels_senti": -100, "labels_act": 1,
         "labels_emo": [-1.0] * 7, "labels_reg": [float("nan"), 0.5, 0.0]},
        {"input_ids": [2, 3], "attention_mask": [1, 1], "labels_senti": 2, "labels_act": -100,
         "labels_emo": [1.0] + [0.0] * 6, "labels_reg": [0.1, 0.2, 0.3]},
    ])

    assert batch["input_ids"].tolist() == [[2, 7, 3, 0], [2, 3, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]
    assert batch["labels_senti"].tolist() == [-100, 2]
    assert torch.isnan(batch["labels_reg"][0, 0])


# Distributed


@pytest.mark.slow
def test_torchrun_two_processes_one_folder(base_dir, corpus, tmp_path):
    output_dir = tmp_path / "model"
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", "29533",
               "-m", "lqkbert", "train", *train_arguments(base_dir, corpus, output_dir, "--num_train_epochs", "1",
                                                          "--ddp_backend", "gloo", "--use_cpu", "true")]
    env = offline_env(tmp_path / "hf_home")
    env.update(OMP_NUM_THREADS="1")

    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL)

    assert result.returncode == 0, result.stderr[-4000:]
    assert (output_dir / "model.safetensors").is_file()
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(("model", ".model"))) == [
        "model", "model-checkpoints"
    ]
    assert result.stderr.count("Model folder ready") == 1


# The evaluate command


def test_evaluate_writes_reports(trained, corpus, tmp_path, capsys):
    output_dir = tmp_path / "eval"

    code = evaluation.main(["--model", str(trained), "--data", str(corpus / "dev.jsonl"),
                            "--output-dir", str(output_dir)])

    assert code == 0
    report = json.loads((output_dir / "metrics.json").read_text())
    assert report["num_examples"] == NUM_EVAL
    assert (output_dir / "confusion_sentiment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (output_dir / "confusion_action.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert f"| sentiment | accuracy | {report['metrics']['sentiment_accuracy']:.3f} |" in printed
    assert (output_dir / "metrics.md").read_text().startswith(f"{NUM_EVAL} examples from")


def test_evaluate_matches_training_metrics(trained, corpus, tmp_path):
    evaluation.main(["--model", str(trained), "--data", str(corpus / "dev.jsonl"), "--output-dir", str(tmp_path)])

    evaluated = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    recorded = json.loads((trained / "eval_results.json").read_text())["metrics"]
    for key in ("sentiment_accuracy", "action_accuracy", "emotion_micro_f1", "certainty_mae"):
        assert evaluated[key] == pytest.approx(recorded[key], abs=1e-6), key


def test_evaluate_updates_model_card(trained, corpus, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(trained, model_dir)

    evaluation.main(["--model", str(model_dir), "--data", str(corpus / "train.jsonl"), "--output-dir",
                     str(tmp_path / "eval"), "--update-model-card"])

    results = json.loads((model_dir / "eval_results.json").read_text())
    assert results["num_examples"] == NUM_TRAIN
    assert results["base_model"] == json.loads((trained / "eval_results.json").read_text())["base_model"]
    assert f"{results['metrics']['sentiment_accuracy']:.4f}" in (model_dir / "README.md").read_text()


# Metrics against hand computations


def test_compute_metrics_by_hand():
    logits_senti = np.array([[5, 0, 0, 0, 0], [0, 5, 0, 0, 0], [0, 5, 0, 0, 0], [0, 0, 0, 0, 5]], dtype=float)
    labels_senti = np.array([0, 1, 0, -100])
    logits_emo = np.full((4, 7), -5.0)
    logits_emo[0, 0] = 5.0
    logits_emo[1, 1] = 5.0
    labels_emo = np.zeros((4, 7))
    labels_emo[0, 0] = 1
    labels_emo[2, 1] = 1
    labels_emo[3] = -1
    pred_reg = np.array([[0.5, 1.5, -0.2]] * 4)
    labels_reg = np.array([[0.5, 1.0, 0.0], [1.0, 0.5, np.nan], [np.nan] * 3, [0.0, 0.0, 0.1]])

    metrics = evaluation.compute_metrics(
        logits_senti, logits_senti[:, :5].repeat(2, axis=1)[:, :6], logits_emo, pred_reg,
        labels_senti, np.full(4, -100), labels_emo, labels_reg,
        emotion_labels=["greed", "fear", "confidence", "doubt", "anger", "hope", "sarcasm"],
        regression_targets=["certainty", "relevance", "toxicity"], thresholds=[0.5] * 7,
    )

    assert metrics["sentiment_accuracy"] == pytest.approx(2 / 3)
    # class 0: tp 1, predicted 1, actual 2 -> 2/3; class 1: tp 1, predicted 2, actual 1 -> 2/3
    assert metrics["sentiment_macro_f1"] == pytest.approx(2 / 3)
    assert "action_accuracy" not in metrics
    # greed: one hit; fear: one false positive, one miss -> 0; the five others: no positives at all -> 1.0
    assert metrics["emotion_f1_greed"] == pytest.approx(1.0)
    assert metrics["emotion_f1_fear"] == pytest.approx(0.0)
    assert metrics["emotion_micro_f1"] == pytest.approx(2 * 1 / (2 + 2))
    assert metrics["certainty_mae"] == pytest.approx((0.0 + 0.5 + 0.5) / 3)
    assert metrics["relevance_mae"] == pytest.approx((0.0 + 0.5 + 1.0) / 3)
    assert metrics["toxicity_mae"] == pytest.approx((0.0 + 0.1) / 2)
    assert metrics["toxicity_pearson"] is None


def test_threshold_tuning_picks_separating_value():
    logits = np.log(np.array([[0.9], [0.8], [0.35], [0.3], [0.1]]) / (1 - np.array([[0.9], [0.8], [0.35], [0.3], [0.1]])))
    labels = np.array([[1], [1], [1], [0], [0]])

    thresholds = evaluation.tune_emotion_thresholds(logits, labels, ["fear"])

    assert thresholds == {"fear": 0.35}
    assert evaluation.tune_emotion_thresholds(logits, np.zeros((5, 1)), ["fear"]) == {"fear": 0.5}
