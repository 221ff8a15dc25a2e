"""Fine-tuning: `python -m lqkbert train`, built on `transformers.Trainer`.

It takes every `TrainingArguments` option, as the transformers example scripts do, plus the model and data options
below. The final model folder is written in one piece at the end (see `save_model_folder`). Checkpoints go to a separate
folder, and each one carries the Hub code, so it loads offline through `AutoModel` and training resumes from it with
`--resume_from_checkpoint`.
"""

import dataclasses
import json
import logging
import math
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments, set_seed

from .data import DataError, LabelSchema, Row, check_row, load_valid_rows
from .evaluation import IGNORE_INDEX, compute_metrics, label_arrays, tune_emotion_thresholds
from .model_folder import DEFAULT_BASE_MODEL, build_model, copy_hub_code, load_tokenizer, save_model_folder


logger = logging.getLogger(__name__)

LABEL_NAMES = ["labels_senti", "labels_act", "labels_emo", "labels_reg"]


@dataclass
class ModelArguments:
    base_model: str = field(
        default=DEFAULT_BASE_MODEL,
        metadata={"help": "BERT checkpoint to start from: a Hub name or a local folder. A plain BERT checkpoint gets new "
                          "heads; an LQ-KBERT folder keeps its heads and labels."},
    )
    tokenizer_name: Optional[str] = field(
        default=None, metadata={"help": "Tokenizer folder or Hub name (default: the base model's)."}
    )
    classifier_dropout: Optional[float] = field(
        default=None, metadata={"help": "Dropout before the heads (default: the base model's hidden_dropout_prob)."}
    )
    loss_weight_senti: float = field(default=1.0, metadata={"help": "Weight of the sentiment loss in the total."})
    loss_weight_act: float = field(default=1.0, metadata={"help": "Weight of the action loss in the total."})
    loss_weight_emo: float = field(default=1.0, metadata={"help": "Weight of the emotion loss in the total."})
    loss_weight_reg: float = field(default=1.0, metadata={"help": "Weight of the score regression loss in the total."})
    regression_loss: str = field(
        default="mse", metadata={"help": "Loss of the score head.", "choices": ["mse", "l1", "smooth_l1"]}
    )
    checkpoint_dir: Optional[str] = field(
        default=None,
        metadata={"help": "Folder for Trainer checkpoints and logs (default: OUTPUT_DIR-checkpoints next to the "
                          "output folder), kept apart so the output folder holds only what goes to the Hub."},
    )
    tune_emotion_thresholds: bool = field(
        default=True,
        metadata={"help": "After training, choose each emotion's decision threshold on the evaluation set (F1-"
                          "maximizing, grid 0.05-0.95) and save it in config.json."},
    )


@dataclass
class DataArguments:
    train_file: Optional[list[str]] = field(
        default=None, metadata={"help": "Training data: JSONL or CSV files in the corpus format (data/README.md)."}
    )
    validation_file: Optional[list[str]] = field(
        default=None, metadata={"help": "Evaluation data: JSONL or CSV files in the corpus format."}
    )
    dataset_name: Optional[str] = field(
        default=None,
        metadata={"help": "A dataset for `datasets.load_dataset` (Hub name or local folder) instead of files, with the "
                          "corpus columns."},
    )
    dataset_config_name: Optional[str] = field(default=None, metadata={"help": "Configuration of --dataset_name."})
    train_split: str = field(default="train", metadata={"help": "Split of --dataset_name used for training."})
    validation_split: Optional[str] = field(
        default="validation", metadata={"help": "Split of --dataset_name used for evaluation, if it exists."}
    )
    max_length: int = field(
        default=200, metadata={"help": "Maximum tokens per text; longer texts are truncated, as in the model card."}
    )
    max_chars: int = field(
        default=200, metadata={"help": "Maximum characters per text in the data; longer rows are reported as invalid."}
    )
    training_data_description: Optional[str] = field(
        default=None, metadata={"help": "One paragraph describing the training data, for the generated model card."}
    )


# Defaults chosen for users who give no value: evaluate and save each epoch, keep the best checkpoint by the
# combined score, and label names that make Trainer report eval_loss.
TRAINING_DEFAULTS = dict(
    eval_strategy="epoch",
    save_strategy="epoch",
    load_best_model_at_end=True,
    metric_for_best_model="combined_score",
    greater_is_better=True,
    save_total_limit=2,
    logging_steps=10,
    report_to="none",
    label_names=LABEL_NAMES,
)


class MultiTaskCollator:
    """Pad token fields to the longest row of the batch and stack the four label fields with the model's dtypes."""

    def __init__(self, pad_token_id, pad_to_multiple_of=None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features):
        length = max(len(feature["input_ids"]) for feature in features)
        if self.pad_to_multiple_of:
            length = math.ceil(length / self.pad_to_multiple_of) * self.pad_to_multiple_of

        batch = {}
        for key, pad_value in (("input_ids", self.pad_token_id), ("attention_mask", 0), ("token_type_ids", 0)):
            if key in features[0]:
                batch[key] = torch.tensor(
                    [list(feature[key]) + [pad_value] * (length - len(feature[key])) for feature in features],
                    dtype=torch.long,
                )
        for key, dtype in (("labels_senti", torch.long), ("labels_act", torch.long),
                           ("labels_emo", torch.float32), ("labels_reg", torch.float32)):
            if key in features[0]:
                batch[key] = torch.tensor([feature[key] for feature in features], dtype=dtype)
        return batch


class HubCodeCallback(TrainerCallback):
    """Copy the Hub code files into every checkpoint, so `AutoModel` loads it offline and training can resume."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint.is_dir():
                copy_hub_code(checkpoint)
        return control


def encode(records, tokenizer, config, max_length):
    """Tokenize `records` and attach their label fields; returns a `datasets.Dataset`."""
    import datasets

    encodings = tokenizer([record["text"] for record in records], truncation=True, max_length=max_length)
    labels = label_arrays(records, config)
    rows = {key: encodings[key] for key in encodings.keys()}
    rows.update({key: values.tolist() for key, values in labels.items()})
    return datasets.Dataset.from_dict(rows)


def load_records(data_args, split_files, schema, dataset_split):
    """Return validated rows from files or a `datasets` dataset, or raise `DataError` listing every invalid row."""
    if split_files:
        return load_valid_rows(split_files, schema, max_chars=data_args.max_chars)

    import datasets

    dataset = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name, split=dataset_split)
    rows = [Row(f"{data_args.dataset_name}[{dataset_split}]", index, dict(record)) for index, record in
            enumerate(dataset, 1)]
    for row in rows:
        check_row(row, schema, data_args.max_chars)
    problems = [problem for row in rows for problem in row.problems]
    if problems:
        raise DataError(problems, f"Invalid rows in {data_args.dataset_name} split {dataset_split!r}:")
    return [row.fields for row in rows]


def make_compute_metrics(config):
    """Return Trainer's `compute_metrics`; undefined metrics (a Pearson r of constant predictions) are left out."""
    def compute(prediction):
        logits_senti, logits_act, logits_emo, pred_reg = prediction.predictions[:4]
        labels_senti, labels_act, labels_emo, labels_reg = prediction.label_ids
        metrics = compute_metrics(
            logits_senti, logits_act, logits_emo, pred_reg, labels_senti, labels_act, labels_emo, labels_reg,
            emotion_labels=config.emotion_labels,
            regression_targets=config.regression_targets,
            thresholds=config.emotion_threshold_list(),
        )
        return {key: value for key, value in metrics.items() if value is not None}

    return compute


def parse_arguments(argv):
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    parser.prog = "python -m lqkbert train"
    parser.description = ("Fine-tune a BERT checkpoint (default klue/bert-base) on labeled Korean sentences into a "
                          "Hub-ready LQ-KBERT model folder (--output_dir). Every TrainingArguments option is accepted.")
    parser.set_defaults(**{key: value for key, value in TRAINING_DEFAULTS.items()
                           if any(action.dest == key for action in parser._actions)})

    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=argv[0])
    return parser.parse_args_into_dataclasses(args=argv)


def _chosen_defaults(argv):
    return [key for key in TRAINING_DEFAULTS if f"--{key}" not in argv]


def check_output_dir(output_dir):
    """Raise before training when `output_dir` exists but is not a model folder that training may replace."""
    output_dir = Path(output_dir)
    if not output_dir.exists():
        return
    if not output_dir.is_dir():
        raise ValueError(f"--output_dir {output_dir} is a file; give a folder path for the model.")
    config_path = output_dir / "config.json"
    is_model = config_path.is_file() and json.loads(config_path.read_text(encoding="utf-8")).get("model_type") == "lqkbert"
    if any(output_dir.iterdir()) and not is_model:
        raise ValueError(
            f"--output_dir {output_dir} exists and is not an LQ-KBERT model folder; training replaces the output folder "
            "as a whole, so choose a new or empty folder."
        )


def train(argv):
    model_args, data_args, training_args = parse_arguments(argv)
    if not data_args.train_file and not data_args.dataset_name:
        raise ValueError("No training data: pass --train_file FILE [FILE ...] or --dataset_name NAME.")
    if data_args.train_file and data_args.dataset_name:
        raise ValueError("Pass either --train_file or --dataset_name, not both.")

    output_dir = Path(training_args.output_dir)
    check_output_dir(output_dir)
    checkpoint_dir = Path(model_args.checkpoint_dir or f"{output_dir}-checkpoints")
    replacements = {"output_dir": str(checkpoint_dir)}
    if getattr(training_args, "logging_dir", None) and Path(training_args.logging_dir).is_relative_to(output_dir):
        replacements["logging_dir"] = str(checkpoint_dir / "runs")

    # Data is read and checked before the model loads, so a bad row fails the run in seconds.
    tokenizer = load_tokenizer(model_args.tokenizer_name or model_args.base_model)
    config_overrides = dict(
        classifier_dropout=model_args.classifier_dropout,
        regression_loss=model_args.regression_loss,
        loss_weights={"senti": model_args.loss_weight_senti, "act": model_args.loss_weight_act,
                      "emo": model_args.loss_weight_emo, "reg": model_args.loss_weight_reg},
    )
    from .model_folder import build_config

    schema_config = build_config(model_args.base_model, **config_overrides)
    schema = LabelSchema.from_config(schema_config)
    train_records = load_records(data_args, data_args.train_file, schema, data_args.train_split)
    eval_records = None
    if data_args.validation_file:
        eval_records = load_records(data_args, data_args.validation_file, schema, None)
    elif data_args.dataset_name and data_args.validation_split:
        import datasets

        splits = datasets.get_dataset_split_names(data_args.dataset_name, data_args.dataset_config_name)
        if data_args.validation_split in splits:
            eval_records = load_records(data_args, None, schema, data_args.validation_split)

    if eval_records is None and training_args.eval_strategy != "no":
        logger.info("No evaluation data: training without evaluation and keeping the last model.")
        replacements.update(eval_strategy="no", load_best_model_at_end=False)
    training_args = dataclasses.replace(training_args, **replacements)
    chosen = _chosen_defaults(argv)
    logger.info("Defaults chosen for options not given: %s",
                ", ".join(f"{key}={getattr(training_args, key)}" for key in chosen))

    set_seed(training_args.seed)
    model = build_model(model_args.base_model, **config_overrides)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(
            f"The tokenizer has {tokenizer.vocab_size} tokens but the model's embeddings have {model.config.vocab_size}; "
            "use the tokenizer that belongs to --base_model."
        )

    train_dataset = encode(train_records, tokenizer, model.config, data_args.max_length)
    eval_dataset = encode(eval_records, tokenizer, model.config, data_args.max_length) if eval_records else None
    logger.info("Training on %d rows%s", len(train_records),
                f", evaluating on {len(eval_records)} rows" if eval_records else "")

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=MultiTaskCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        compute_metrics=make_compute_metrics(model.config) if eval_dataset is not None else None,
        callbacks=[HubCodeCallback()],
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)

    results = None
    if eval_dataset is not None:
        prediction = trainer.predict(eval_dataset, metric_key_prefix="eval")
        if model_args.tune_emotion_thresholds:
            thresholds = tune_emotion_thresholds(prediction.predictions[2], prediction.label_ids[2],
                                                 model.config.emotion_labels)
            model.config.emotion_thresholds = thresholds
            logger.info("Emotion thresholds tuned on the evaluation set: %s", thresholds)
        metrics = make_compute_metrics(model.config)(prediction)
        trainer.log_metrics("eval", {f"eval_{key}": value for key, value in metrics.items()})
        results = {
            "data": ", ".join(data_args.validation_file or [f"{data_args.dataset_name}[{data_args.validation_split}]"]),
            "num_examples": len(eval_records),
            "metrics": metrics,
        }

    if trainer.is_world_process_zero():
        training_data = data_args.training_data_description or describe_training_data(data_args, len(train_records))
        write_output_folder(trainer.model, tokenizer, output_dir, model_args.base_model, training_data, results)
    trainer.accelerator.wait_for_everyone()
    return output_dir


def describe_training_data(data_args, num_rows):
    source = ", ".join(data_args.train_file) if data_args.train_file else f"{data_args.dataset_name} " \
             f"(split {data_args.train_split})"
    return f"Fine-tuned on {num_rows} labeled sentences from {source}."


def write_output_folder(model, tokenizer, output_dir, base_model, training_data, results):
    """Write the Hub-ready folder: model, tokenizer, Hub code, eval_results.json and a generated model card."""
    from .model_card import write_model_card

    record = dict(results or {}, base_model=base_model, training_data=training_data)
    extra_files = {"eval_results.json": json.dumps(record, indent=2, ensure_ascii=False) + "\n"} if results else {}

    # The card generator reads config.json from a folder; give it one before the real folder exists.
    with tempfile.TemporaryDirectory() as scratch:
        model.config.save_pretrained(scratch)
        card = write_model_card(Path(scratch), base_model=base_model, training_data=training_data,
                                eval_results=record if results else None)
        extra_files["README.md"] = Path(card).read_text(encoding="utf-8")

    save_model_folder(model, tokenizer, output_dir, extra_files=extra_files)
    logger.info("Model folder ready: %s", output_dir)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        train(argv)
    except (DataError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
