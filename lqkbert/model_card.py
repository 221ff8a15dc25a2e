"""Generate the Hub model card (`README.md`) of an LQ-KBERT model folder.

The card is rendered with `huggingface_hub.ModelCard`: YAML metadata (license, languages, base model, tags and a
`model-index` with the evaluation results) followed by an English body. Label names, decision thresholds and the input
limit are read from the folder's `config.json`, so the card always describes the checkpoint next to it. The output
depends only on the inputs (no dates, no versions of the running software), so regenerating a card is reproducible.

Run `python -m lqkbert.model_card MODEL_DIR` to (re)write the card of an existing folder.
"""

import argparse
import json
import logging
import math
import re
import sys
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .model_folder import DEFAULT_BASE_MODEL, config_class


logger = logging.getLogger(__name__)

MODEL_NAME = "LQ-KBERT-Base"
DEFAULT_REPO_ID = "LangQuant/LQ-Kbert-base"
EVAL_RESULTS_FILE = "eval_results.json"
TAGS = ["korean", "crypto", "finance", "sentiment-analysis", "multi-task", "text-classification", "custom_code"]

# Definitions of the published labels, restated from the labeling guidelines of the original LQ-KBERT-Base card. The
# Korean cue words are the ones annotators looked for, with an English gloss.
SENTIMENT_DEFINITIONS = {
    "strong_pos": 'Confident expectation of a sharp rise: "가즈아" (let\'s go), "무조건 간다" (it goes up, no doubt).',
    "weak_pos": 'Cautious optimism: "반등 가능" (a rebound is possible), "괜찮을 듯" (looks fine).',
    "neutral": "Plain information, announcements or small talk without a view on the price.",
    "weak_neg": 'Softened pessimism: "조정 올 듯" (a correction seems likely), "관망" (wait and see).',
    "strong_neg": 'Crash or panic: "나락" (free fall), "망함" (it is over), news of hacks or sanctions ("해킹/제재").',
}
ACTION_DEFINITIONS = {
    "buy": 'Instruction or intent to buy or open a position: "지금 산다" (buying now), "롱" (going long).',
    "hold": 'Keep the position or wait: "존버" (hold on no matter what), "유지" (keep it).',
    "sell": 'Sell or close a position: "익절" (take profit), "손절" (stop loss), "정리" (close out).',
    "avoid": 'Stay away, or a risk warning: "가지마" (don\'t go in), "스캠" (scam), "위험" (dangerous).',
    "info_only": "Passes on information (news, announcements) without a trading intent.",
    "ask_info": 'Question or probing: "들어가도 돼?" (can I get in?), "왜 떨어져?" (why is it falling?).',
}
EMOTION_KOREAN_NAMES = {
    "greed": "탐욕",
    "fear": "두려움",
    "confidence": "확신",
    "doubt": "의심",
    "anger": "분노",
    "hope": "희망",
    "sarcasm": "풍자",
}
SCORE_DEFINITIONS = {
    "certainty": [
        "How assertive the sentence is.",
        "0.2-0.4: questions, probing and memes (low).",
        "0.4-0.6: hedged opinions (medium).",
        "0.6-0.8: figures, evidence or an official tone (high).",
        "0.8-1.0: strong assertions and instructions (very high).",
    ],
    "relevance": [
        "How closely the sentence concerns investing.",
        "0.7-1.0: directly about investing or the market.",
        "0.4-0.7: indirectly related (the industry, people, technology).",
        "0.0-0.3: unrelated chatter and memes.",
    ],
    "toxicity": [
        "Strength of profanity, insults and demeaning language, from 0 to 1.",
        "It is rated independently of what the sentence means for investing.",
    ],
}
# Annotation examples from the original card: the labels annotators gave, not model predictions.
LABELING_EXAMPLES = [
    ("개떡상이여", "strong_pos", "buy", "strong conviction of a rise and an intent to buy now"),
    ("여기선 관망이 맞다", "weak_neg", "hold", "negative, but the choice is to keep the position"),
    ("들어가도 될까?", "weak_pos", "ask_info", "cautious optimism, asking whether to buy"),
    ("해킹 터짐, 비상. 접근 금지", "strong_neg", "avoid", "strongly negative and a warning to stay away"),
    ("업데이트 공지 나왔습니다", "neutral", "info_only", "plain information, no action"),
]

DISCLAIMER_ENGLISH = (
    "This model is provided for academic research and experiments only. Its outputs are not financial or investment "
    "advice, and LangQuant accepts no liability for any consequence of their use."
)
DISCLAIMER_KOREAN = (
    "이 모델은 학술 연구 및 실험용으로만 제공됩니다.\n"
    "본 모델의 출력은 금융/투자 자문으로 간주될 수 없으며,\n"
    "발생하는 모든 결과에 대해 LangQuant는 책임을 지지 않습니다."
)
CITATION = """@misc{langquant2025lkbert,
  title  = {LQ-KBERT-Base: Crypto Market Korean Sentiment & Action Signal Classifier},
  author = {LangQuant},
  year   = {2025},
  url    = {https://huggingface.co/langquant/LQ-Kbert-base}
}"""

# Mapping of each known metric suffix to a model-index metric: (suffix, metric type, display name, averaging).
METRIC_SUFFIXES = [
    ("_accuracy", "accuracy", "accuracy", None),
    ("_macro_f1", "f1", "macro F1", "macro"),
    ("_micro_f1", "f1", "micro F1", "micro"),
    ("_mae", "mae", "MAE", None),
    ("_pearson", "pearsonr", "Pearson r", None),
]
HEAD_NAMES = {
    "sentiment": "Sentiment strength",
    "action": "Action signal",
    "emotion": "Emotions",
    "certainty": "Certainty",
    "relevance": "Relevance",
    "toxicity": "Toxicity",
}
SPLIT_NAMES = {"train", "dev", "validation", "test"}


def write_model_card(
    folder,
    *,
    base_model=DEFAULT_BASE_MODEL,
    training_data=None,
    eval_results=None,
    repo_id=None,
    model_name=MODEL_NAME,
):
    """Write `folder/README.md`, the Hub model card of the model in `folder`, and return its path.

    Args:
        folder: A model folder with an LQ-KBERT `config.json`.
        base_model: Hub name of the checkpoint the model was fine-tuned from, recorded as `base_model`.
        training_data: Text describing the training data. Without it, the card states that none was given.
        eval_results: Evaluation results in the format of `eval_results.json` (`data`, `num_examples`, `metrics`).
            When `None`, `folder/eval_results.json` is read if it exists. Without results, the card has no
            `model-index` and no evaluation table. A `training_data` key in the results (training records it there)
            describes the training data when the `training_data` argument is `None`.
        repo_id: Hub repository used in the card's code examples. Defaults to the published LQ-KBERT-Base repository.
        model_name: Name of the model in the title and in `model-index`.
    """
    folder = Path(folder)
    config = _load_config(folder)
    if eval_results is None:
        eval_results = _read_eval_results_file(folder)
    if eval_results is not None:
        eval_results = _check_eval_results(eval_results)
        if training_data is None:
            training_data = eval_results.get("training_data")
    repo_id = repo_id or DEFAULT_REPO_ID

    # The Hub's `base_model` field takes a repository id; a local folder (such as the demo's encoder) is named in the
    # text only.
    hub_base_model = None if _is_local_path(base_model) else base_model
    card_data = ModelCardData(
        model_name=model_name,
        license="mit",
        language=["ko", "en"],
        base_model=hub_base_model,
        pipeline_tag="text-classification",
        library_name="transformers",
        tags=list(TAGS),
        eval_results=_model_index_results(eval_results) or None,
    )
    body = "\n\n".join(
        [
            _intro_section(model_name, base_model, config),
            _labels_section(config),
            _usage_section(repo_id, config),
            _evaluation_section(eval_results),
            _training_data_section(training_data),
            _limitations_section(config),
            _disclaimer_section(),
            _citation_section(),
        ]
    )
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}\n")

    path = folder / "README.md"
    path.write_text(str(card).rstrip("\n") + "\n", encoding="utf-8")
    logger.info("Wrote the model card %s", path)
    return path


def _load_config(folder):
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"Model folder {folder} has no config.json: save the model first (lqkbert.model_folder.save_model_folder), "
            "then write its card."
        )

    model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    if model_type != "lqkbert":
        raise ValueError(
            f"Invalid model folder {folder}: config.json has model_type {model_type!r}, but the card describes an "
            "LQ-KBERT model (model_type 'lqkbert'). Convert the checkpoint with lqkbert.model_folder.build_model."
        )
    return config_class().from_pretrained(folder)


def _read_eval_results_file(folder):
    path = folder / EVAL_RESULTS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"Invalid {path}: not valid JSON ({error}). Rewrite it with `python -m lqkbert evaluate`.")


def _check_eval_results(eval_results):
    if not isinstance(eval_results, dict) or not isinstance(eval_results.get("metrics"), dict):
        raise ValueError(
            f"Invalid eval_results {eval_results!r}: expected a mapping with a 'metrics' mapping, such as "
            '{"data": "data/test.jsonl", "num_examples": 363, "metrics": {"sentiment_accuracy": 0.81}}.'
        )

    for name, value in eval_results["metrics"].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"Invalid eval_results metric {name!r}={value!r}: a metric value must be a number.")

    data = eval_results.get("data")
    if data is not None and not isinstance(data, str):
        raise ValueError(f"Invalid eval_results 'data'={data!r}: give the path or name of the evaluation data.")
    return eval_results


def describe_metric(name):
    """Return `(head, metric type, display name, averaging)` of a metric key such as `"sentiment_macro_f1"`.

    Unknown keys keep their own name as the metric type, so every metric of `eval_results.json` is published.
    """
    if name.startswith("emotion_f1_"):
        emotion = name[len("emotion_f1_"):]
        return "Emotions", "f1", f"F1 ({emotion})", None

    for suffix, metric_type, display_name, average in METRIC_SUFFIXES:
        if name.endswith(suffix):
            head = name[: -len(suffix)]
            return HEAD_NAMES.get(head, head), metric_type, display_name, average

    if name == "combined_score":
        return "All heads", "combined_score", "combined score", None
    return "Other", name, name, None


def _dataset_fields(eval_results):
    data = eval_results.get("data") or "evaluation data"

    # `data` is one file ("data/test.jsonl"), a comma-separated list of files, or a Hub split ("name[test]").
    split_match = re.fullmatch(r"(.+)\[([^\]]+)\]", data)
    if split_match:
        return {"dataset_type": split_match[1], "dataset_name": split_match[1], "dataset_split": split_match[2]}
    if "," in data:
        return {"dataset_type": data, "dataset_name": data, "dataset_split": None}

    stem = Path(data).stem
    return {
        "dataset_type": data,
        "dataset_name": Path(data).name,
        "dataset_split": stem if stem in SPLIT_NAMES else None,
    }


def _model_index_results(eval_results):
    if eval_results is None:
        return []

    results = []
    for name, value in eval_results["metrics"].items():
        if not math.isfinite(value):
            logger.warning("Metric %s is %r, which model-index cannot store: it is left out of the card metadata.",
                           name, value)
            continue

        head, metric_type, display_name, average = describe_metric(name)
        results.append(
            EvalResult(
                task_type="text-classification",
                task_name="Korean crypto-market sentence classification",
                metric_type=metric_type,
                metric_value=value,
                metric_name=f"{head} {display_name}",
                metric_args={"average": average} if average else None,
                **_dataset_fields(eval_results),
            )
        )
    return results


def _markdown_list(items):
    return "\n".join(f"- {item}" for item in items)


def _is_local_path(name):
    return Path(name).exists() or name.startswith((".", "/", "~"))


def _intro_section(model_name, base_model, config):
    emotions = ", ".join(f"`{name}`" for name in config.emotion_labels)
    scores = ", ".join(f"`{name}`" for name in config.regression_targets)
    if _is_local_path(base_model):
        origin = f"the local BERT checkpoint `{Path(base_model).name}`, which is not published on the Hub"
    else:
        origin = f"[`{base_model}`](https://huggingface.co/{base_model})"
    return f"""# {model_name}

{model_name} is a BERT encoder fine-tuned from {origin}. It reads one
Korean crypto-market sentence of at most {config.max_text_length} characters (a community post or a news line) and
predicts in one forward pass:

- `sentiment_strength`: the tone of the price outlook, one of {len(config.sentiment_labels)} classes.
- `action_signal`: the trading action that the writer intends or recommends, one of {len(config.action_labels)} classes.
- `emotions`: any number of {emotions}.
- {scores}: scores in [0, 1].

The model code lives in this repository (`configuration_lqkbert.py`, `modeling_lqkbert.py`, `pipeline_lqkbert.py`),
so loading it needs `trust_remote_code=True`."""


def _labels_section(config):
    sentiment = [
        f"`{name}`: {SENTIMENT_DEFINITIONS.get(name, 'No published definition: a label added for this checkpoint.')}"
        for name in config.sentiment_labels
    ]
    action = [
        f"`{name}`: {ACTION_DEFINITIONS.get(name, 'No published definition: a label added for this checkpoint.')}"
        for name in config.action_labels
    ]

    emotion_rows = "\n".join(
        f"| `{name}` | {EMOTION_KOREAN_NAMES.get(name, '-')} | {config.emotion_thresholds[name]:g} |"
        for name in config.emotion_labels
    )

    scores = []
    for name in config.regression_targets:
        lines = SCORE_DEFINITIONS.get(name, ["No published definition: a score added for this checkpoint."])
        details = "".join(f"\n  - {line}" for line in lines[1:])
        scores.append(f"`{name}`: {lines[0]}{details}")

    examples = "\n".join(
        f'| "{text}" | `{sentiment_label}` | `{action_label}` | {reading} |'
        for text, sentiment_label, action_label, reading in LABELING_EXAMPLES
    )

    return f"""## Labels

The label names, their order and the thresholds below are read from this checkpoint's `config.json`
(`sentiment_labels`, `action_labels`, `emotion_labels`, `emotion_thresholds`, `regression_targets`), which is also
where code should read them.

### Sentiment strength (`sentiment_strength`)

{_markdown_list(sentiment)}

### Action signal (`action_signal`)

{_markdown_list(action)}

Sentiment strength rates the tone of the price outlook (positive to negative). Action signal is the trading intent
or instruction (buy, sell, hold, avoid, ask, inform). The two are independent: a gloomy sentence can still say "hold".

### Emotions (`emotions`, multi-label)

Each emotion has its own sigmoid output. An emotion is predicted when its probability is at least its threshold.

| Emotion | Korean | Threshold |
|---------|--------|-----------|
{emotion_rows}

### Scores

Linear outputs, clamped to [0, 1] for use.

{_markdown_list(scores)}

### Annotation examples

Labels that annotators gave to these sentences (not model predictions):

| Sentence | sentiment_strength | action_signal | Reading |
|----------|--------------------|---------------|---------|
{examples}"""


def _usage_section(repo_id, config):
    example_output = {
        "sentiment_strength": config.sentiment_labels[0],
        "action_signal": config.action_labels[0],
        "emotions": [config.emotion_labels[0]],
        **{name: 0.5 for name in config.regression_targets},
        "truncated": False,
    }
    return f"""## Usage

Loading runs the Python files of this repository on your machine (`trust_remote_code=True`). Pin `revision` to a
commit hash that you have reviewed: a branch name such as `main` follows every later push, so new code would run
without notice and results could change. Take the hash from the "Files and versions" tab and replace `"main"` below.

### With `AutoModel`

```python
import json

import torch
from transformers import AutoModel, AutoTokenizer

repo_id = "{repo_id}"
revision = "main"  # replace with the full commit hash that you reviewed

tokenizer = AutoTokenizer.from_pretrained(repo_id, revision=revision, trust_remote_code=True)
model = AutoModel.from_pretrained(repo_id, revision=revision, trust_remote_code=True).eval()
config = model.config

texts = ["비트코인 조정 후 반등, 투자심리 개선", "폭락ㅠㅠㅜㅠㅜ 다 팔아야할까요?"]
batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=config.max_text_length + 2)
with torch.inference_mode():
    out = model(**batch)

emotion_probs = torch.sigmoid(out.logits_emo)
thresholds = torch.tensor(config.emotion_threshold_list())
scores = out.pred_reg.clamp(0.0, 1.0)

for i, text in enumerate(texts):
    result = {{
        "text": text,
        "sentiment_strength": config.sentiment_labels[int(out.logits_senti[i].argmax())],
        "action_signal": config.action_labels[int(out.logits_act[i].argmax())],
        "emotions": [name for name, hit in zip(config.emotion_labels, emotion_probs[i] >= thresholds) if hit],
        **{{name: float(score) for name, score in zip(config.regression_targets, scores[i])}},
    }}
    print(json.dumps(result, ensure_ascii=False))
```

`max_length` allows {config.max_text_length} tokens plus `[CLS]` and `[SEP]`. Each WordPiece token covers at least one
character, so a sentence within the {config.max_text_length}-character limit is never cut.

### With the pipeline

```python
from transformers import pipeline

classifier = pipeline(
    "lqkbert",
    model="{repo_id}",
    trust_remote_code=True,
    revision="main",  # replace with the full commit hash that you reviewed
)
print(classifier("비트코인 조정 후 반등, 투자심리 개선"))
```

For one string the pipeline returns one dict of this form, and for a list of strings a list of such dicts:

```json
{json.dumps(example_output, ensure_ascii=False)}
```

`truncated` is true when the text was longer than {config.max_text_length} tokens and the tokenizer dropped the
rest. Pass `long_text="split"` to classify a long text sentence by sentence instead."""


def _format_metric(value):
    return f"{value:.4f}" if math.isfinite(value) else "n/a"


def _evaluation_section(eval_results):
    if eval_results is None:
        return "## Evaluation\n\nNo evaluation results were given when this card was generated."

    rows = []
    for name, value in eval_results["metrics"].items():
        head, _, display_name, _ = describe_metric(name)
        rows.append(f"| {head} | {display_name} | `{name}` | {_format_metric(value)} |")

    data = eval_results.get("data") or "an unnamed evaluation set"
    size = eval_results.get("num_examples")
    source = f"`{data}` ({size} examples)" if size is not None else f"`{data}`"
    return f"""## Evaluation

Results on {source}. The classification heads are scored with accuracy and F1, and the scores with mean absolute
error (MAE) and Pearson r. Macro F1 averages the classes with equal weight. Micro F1 pools the decisions of all
emotions.

| Head | Metric | Key | Value |
|------|--------|-----|-------|
{chr(10).join(rows)}"""


def _training_data_section(training_data):
    if not training_data or not training_data.strip():
        return "## Training data\n\nNo description of the training data was given when this card was generated."
    return f"## Training data\n\n{training_data.strip()}"


def _limitations_section(config):
    return f"""## Limitations

- Input is one sentence of at most {config.max_text_length} characters. Longer texts are outside what the model was
  trained on: split them into sentences first.
- The model was trained on Korean crypto-market posts and news. Other languages, other markets and other domains
  give unreliable outputs, and community slang changes quickly.
- Sarcasm, memes and irony often depend on context that one sentence does not contain, so they are easy to misread.
- The scores are regression outputs clamped to [0, 1], not calibrated probabilities.
- The outputs describe the text, not the market. They are not financial advice and are no basis for trading on their
  own."""


def _disclaimer_section():
    return f"""## Disclaimer

{DISCLAIMER_ENGLISH}

Original (Korean):

```
{DISCLAIMER_KOREAN}
```"""


def _citation_section():
    return f"## Citation\n\n```bibtex\n{CITATION}\n```"


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m lqkbert.model_card",
        description="Write the Hub model card (README.md) of an LQ-KBERT model folder.",
    )
    parser.add_argument("model_dir", type=Path, help="model folder with config.json (and optionally eval_results.json)")
    parser.add_argument(
        "--base-model",
        help="Hub name of the checkpoint the model was fine-tuned from (default: the base_model recorded in "
        f"eval_results.json, else {DEFAULT_BASE_MODEL})",
    )
    parser.add_argument("--training-data-file", type=Path, help="text file describing the training data")
    parser.add_argument("--repo-id", help=f"Hub repository used in the card's code examples (default: {DEFAULT_REPO_ID})")
    args = parser.parse_args(argv)

    base_model = args.base_model
    if base_model is None:
        recorded = _read_eval_results_file(args.model_dir) or {}
        base_model = recorded.get("base_model") or DEFAULT_BASE_MODEL

    training_data = None
    if args.training_data_file is not None:
        training_data = args.training_data_file.read_text(encoding="utf-8")

    path = write_model_card(args.model_dir, base_model=base_model, training_data=training_data, repo_id=args.repo_id)
    print(path)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
