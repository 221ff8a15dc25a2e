"""Per-head metrics, emotion threshold tuning, and the `evaluate` command.

Metric names are shared by training logs (with Trainer's `eval_` prefix), `eval_results.json` and the model card:
`sentiment_accuracy`, `sentiment_macro_f1`, `action_accuracy`, `action_macro_f1`, `emotion_micro_f1`,
`emotion_macro_f1`, `emotion_f1_<name>`, `<target>_mae`, `<target>_pearson` and `combined_score`.
"""

import argparse
import json
import logging
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)


# Metrics


def f1_scores(y_true, y_pred, num_classes):
    """Return per-class F1 for the classes that occur in `y_true` or `y_pred` (others are left out, as in sklearn)."""
    scores = {}
    for label in range(num_classes):
        true_positive = np.sum((y_pred == label) & (y_true == label))
        predicted = np.sum(y_pred == label)
        actual = np.sum(y_true == label)
        if predicted == 0 and actual == 0:
            continue
        scores[label] = 2 * true_positive / (predicted + actual)
    return scores


def binary_f1(y_true, y_pred):
    true_positive = np.sum(y_true & y_pred)
    denominator = np.sum(y_true) + np.sum(y_pred)
    return 1.0 if denominator == 0 else 2 * true_positive / denominator


def pearson(x, y):
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def sigmoid(values):
    return 1.0 / (1.0 + np.exp(-values))


def compute_metrics(logits_senti, logits_act, logits_emo, pred_reg, labels_senti, labels_act, labels_emo, labels_reg,
                    emotion_labels, regression_targets, thresholds):
    """Compute every head's metrics over the rows that carry that head's label.

    Labels follow the model's conventions: -100 for a missing class, a negative entry for a row without emotion
    labels, NaN for a missing score. Metrics of a head with no labels are left out.
    """
    metrics = {}

    for name, logits, labels in (("sentiment", logits_senti, labels_senti), ("action", logits_act, labels_act)):
        labels = np.asarray(labels).reshape(-1)
        present = labels != IGNORE_INDEX
        if not present.any():
            continue
        y_true, y_pred = labels[present], np.asarray(logits)[present].argmax(-1)
        metrics[f"{name}_accuracy"] = float(np.mean(y_true == y_pred))
        metrics[f"{name}_macro_f1"] = float(np.mean(list(f1_scores(y_true, y_pred, logits.shape[-1]).values())))

    labels_emo = np.asarray(labels_emo, dtype=np.float64)
    present = ~(labels_emo < 0).any(-1)
    if present.any():
        y_true = labels_emo[present] >= 0.5
        y_pred = sigmoid(np.asarray(logits_emo, dtype=np.float64)[present]) >= np.asarray(thresholds)
        per_emotion = [binary_f1(y_true[:, k], y_pred[:, k]) for k in range(len(emotion_labels))]
        metrics["emotion_micro_f1"] = float(binary_f1(y_true.reshape(-1), y_pred.reshape(-1)))
        metrics["emotion_macro_f1"] = float(np.mean(per_emotion))
        for name, score in zip(emotion_labels, per_emotion):
            metrics[f"emotion_f1_{name}"] = float(score)

    labels_reg = np.asarray(labels_reg, dtype=np.float64)
    predicted = np.clip(np.asarray(pred_reg, dtype=np.float64), 0.0, 1.0)
    maes = []
    for k, name in enumerate(regression_targets):
        present = ~np.isnan(labels_reg[:, k])
        if not present.any():
            continue
        mae = float(np.mean(np.abs(predicted[present, k] - labels_reg[present, k])))
        maes.append(mae)
        metrics[f"{name}_mae"] = mae
        metrics[f"{name}_pearson"] = pearson(predicted[present, k], labels_reg[present, k])

    metrics["combined_score"] = combined_score(metrics)
    return metrics


def combined_score(metrics):
    """Mean of sentiment macro-F1, action macro-F1, emotion macro-F1 and (1 - mean score MAE), over the heads present.

    One number in [0, 1], higher is better, used to select the best checkpoint.
    """
    parts = [metrics[key] for key in ("sentiment_macro_f1", "action_macro_f1", "emotion_macro_f1") if key in metrics]
    maes = [value for key, value in metrics.items() if key.endswith("_mae")]
    if maes:
        parts.append(1.0 - float(np.mean(maes)))
    return float(np.mean(parts)) if parts else 0.0


def tune_emotion_thresholds(logits_emo, labels_emo, emotion_labels, default=0.5):
    """Pick, per emotion, the threshold on the sigmoid probability that maximizes F1 on labeled rows.

    The grid is 0.05 to 0.95 in steps of 0.05; ties go to the threshold closest to `default`. An emotion with no
    positive label keeps `default`, because F1 cannot rank thresholds without positives.
    """
    labels_emo = np.asarray(labels_emo, dtype=np.float64)
    present = ~(labels_emo < 0).any(-1)
    probabilities = sigmoid(np.asarray(logits_emo, dtype=np.float64)[present])
    targets = labels_emo[present] >= 0.5

    thresholds = {}
    for k, name in enumerate(emotion_labels):
        if not targets[:, k].any():
            thresholds[name] = default
            continue
        scored = [(binary_f1(targets[:, k], probabilities[:, k] >= t), -abs(t - default), float(t)) for t in THRESHOLD_GRID]
        thresholds[name] = max(scored)[2]
    return thresholds


def confusion_matrix(y_true, y_pred, num_classes):
    """Return counts with true classes as rows and predicted classes as columns."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


# Reports


def format_metrics_table(metrics):
    """Render metrics as a Markdown table, one head per row."""
    def cell(key):
        value = metrics.get(key)
        return "n/a" if value is None else f"{value:.3f}"

    lines = ["| head | metric | value |", "|---|---|---:|"]
    for head in ("sentiment", "action"):
        lines.append(f"| {head} | accuracy | {cell(f'{head}_accuracy')} |")
        lines.append(f"| {head} | macro-F1 | {cell(f'{head}_macro_f1')} |")
    lines.append(f"| emotions | micro-F1 | {cell('emotion_micro_f1')} |")
    lines.append(f"| emotions | macro-F1 | {cell('emotion_macro_f1')} |")
    for key in sorted(key for key in metrics if key.startswith("emotion_f1_")):
        lines.append(f"| emotions | F1 {key.removeprefix('emotion_f1_')} | {cell(key)} |")
    for key in [key for key in metrics if key.endswith("_mae")]:
        target = key.removesuffix("_mae")
        lines.append(f"| {target} | MAE | {cell(key)} |")
        lines.append(f"| {target} | Pearson r | {cell(f'{target}_pearson')} |")
    lines.append(f"| all | combined score | {cell('combined_score')} |")
    return "\n".join(lines)


def plot_confusion_matrix(matrix, labels, title, path):
    """Save a confusion matrix as a PNG with counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(1.1 * len(labels) + 2, 1.1 * len(labels) + 1.5))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("labeled")
    axes.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for row in range(matrix.shape[0]):
        for column in range(matrix.shape[1]):
            color = "white" if matrix[row, column] > threshold else "black"
            axes.text(column, row, str(matrix[row, column]), ha="center", va="center", color=color)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def write_text_atomic(path, text):
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as output:
            output.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# Running a model over labeled rows


def label_arrays(records, config):
    """Convert corpus rows to the model's label arrays: ids with -100, multi-hot with -1 rows, scores with NaN."""
    sentiment_ids = {name: i for i, name in enumerate(config.sentiment_labels)}
    action_ids = {name: i for i, name in enumerate(config.action_labels)}
    emotions = list(config.emotion_labels)

    senti, act, emo, reg = [], [], [], []
    for record in records:
        senti.append(sentiment_ids.get(record.get("sentiment_strength"), IGNORE_INDEX))
        act.append(action_ids.get(record.get("action_signal"), IGNORE_INDEX))
        names = record.get("emotions")
        emo.append([-1.0] * len(emotions) if names is None else [float(name in names) for name in emotions])
        reg.append([math.nan if record.get(name) is None else float(record[name]) for name in config.regression_targets])
    return {
        "labels_senti": np.array(senti, dtype=np.int64),
        "labels_act": np.array(act, dtype=np.int64),
        "labels_emo": np.array(emo, dtype=np.float32).reshape(len(records), len(emotions)),
        "labels_reg": np.array(reg, dtype=np.float32).reshape(len(records), len(config.regression_targets)),
    }


def run_model(model, tokenizer, texts, batch_size=64, max_length=200):
    """Return the four heads' outputs for `texts` as numpy arrays in input order (fp32, batches sorted by length)."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    outputs = {key: [None] * len(texts) for key in ("logits_senti", "logits_act", "logits_emo", "pred_reg")}
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in indices], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt").to(model.device)
            result = model(**batch)
            for key in outputs:
                values = result[key].float().cpu().numpy()
                for row, i in enumerate(indices):
                    outputs[key][i] = values[row]
    return {key: np.stack(values) if values else np.zeros((0, 0)) for key, values in outputs.items()}


def evaluate_model(model, tokenizer, records, batch_size=64, max_length=200):
    """Run `model` over labeled `records` and return `(metrics, outputs, labels)`."""
    config = model.config
    outputs = run_model(model, tokenizer, [record["text"] for record in records], batch_size, max_length)
    labels = label_arrays(records, config)
    metrics = compute_metrics(
        **outputs, **labels,
        emotion_labels=config.emotion_labels,
        regression_targets=config.regression_targets,
        thresholds=config.emotion_threshold_list(),
    )
    return metrics, outputs, labels


# Command line


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m lqkbert evaluate",
        description="Score a model folder on labeled JSONL or CSV files: metrics JSON, a Markdown table and "
                    "confusion-matrix plots for sentiment and action.",
    )
    parser.add_argument("--model", required=True, help="model folder or Hub name that loads through AutoModel")
    parser.add_argument("--data", required=True, nargs="+", help="labeled JSONL or CSV files in the corpus format")
    parser.add_argument("--output-dir", default=None,
                        help="folder for metrics.json, metrics.md and the PNG plots "
                             "(default: eval/<model folder name>-<first data file name>)")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per forward pass (default: %(default)s)")
    parser.add_argument("--max-length", type=int, default=200,
                        help="maximum tokens per text, as in the model card (default: %(default)s)")
    parser.add_argument("--update-model-card", action="store_true",
                        help="also write eval_results.json into the model folder and regenerate its README.md "
                             "model card with these results")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from transformers import AutoModel, AutoTokenizer

    from .data import DataError, LabelSchema, load_valid_rows

    model = AutoModel.from_pretrained(args.model, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(args.model, trust_remote_code=True)
    try:
        records = load_valid_rows(args.data, LabelSchema.from_config(model.config), max_chars=10**9)
    except (DataError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    metrics, outputs, labels = evaluate_model(model, tokenizer, records, args.batch_size, args.max_length)

    output_dir = Path(args.output_dir or Path("eval") / f"{Path(args.model).name}-{Path(args.data[0]).stem}")
    output_dir.mkdir(parents=True, exist_ok=True)
    report = {"model": str(args.model), "data": [str(path) for path in args.data], "num_examples": len(records),
              "metrics": metrics}
    write_text_atomic(output_dir / "metrics.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    table = format_metrics_table(metrics)
    write_text_atomic(output_dir / "metrics.md", f"{len(records)} examples from {', '.join(args.data)}\n\n{table}\n")

    for head, key, names in (("sentiment", "senti", model.config.sentiment_labels),
                             ("action", "act", model.config.action_labels)):
        present = labels[f"labels_{key}"] != IGNORE_INDEX
        matrix = confusion_matrix(labels[f"labels_{key}"][present], outputs[f"logits_{key}"][present].argmax(-1),
                                  len(names))
        plot_confusion_matrix(matrix, names, f"{head} ({present.sum()} labeled rows)",
                              output_dir / f"confusion_{head}.png")

    if args.update_model_card:
        update_model_card(Path(args.model), report)

    print(table)
    print(f"\nWrote {output_dir}/metrics.json, metrics.md, confusion_sentiment.png and confusion_action.png")
    return 0


def update_model_card(model_dir, report):
    """Write `eval_results.json` into a local model folder and regenerate its model card from it.

    The base model and training-data description recorded by training in the previous `eval_results.json` are kept.
    """
    from .model_card import write_model_card

    if not model_dir.is_dir():
        raise FileNotFoundError(f"--update-model-card needs a local model folder; {model_dir} is not one.")

    previous_path = model_dir / "eval_results.json"
    previous = json.loads(previous_path.read_text(encoding="utf-8")) if previous_path.is_file() else {}
    results = {
        "data": report["data"][0] if len(report["data"]) == 1 else ", ".join(report["data"]),
        "num_examples": report["num_examples"],
        "metrics": report["metrics"],
        "base_model": previous.get("base_model", "klue/bert-base"),
        "training_data": previous.get("training_data"),
    }
    write_text_atomic(previous_path, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    write_model_card(model_dir, base_model=results["base_model"], training_data=results["training_data"],
                     eval_results=results)
    logger.info("Updated %s and README.md", previous_path)
