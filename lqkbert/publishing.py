"""Validate an LQ-KBERT model folder and upload it to the Hugging Face Hub.

Publishing is where a broken model reaches every user at once, so `validate_folder` runs every check before anything
is sent and raises `FolderValidationError` listing all failures, each with its fix. The checks:

- Required files: `config.json` with `auto_map` entries for AutoConfig and AutoModel, the Hub code files, safetensors
  weights (one file, or shards with their index), the tokenizer files and the model card `README.md`.
- Hub code: the folder's `.py` files are byte for byte the repository's current ones (`sync_code=True` copies them in).
- Published files: the upload is an allow-list (`published_names`). Any other entry of the folder is an error, so
  nothing is silently left out and no pickle file, Trainer checkpoint, log or hidden file can go up.
- Weights: every safetensors tensor is finite, read tensor by tensor without pickle.
- Model card: the YAML metadata of `README.md` parses.
- Loading: a fresh offline subprocess with an empty `HF_HOME` loads exactly the published files through `AutoConfig`,
  `AutoTokenizer`, `AutoModel` and `pipeline("lqkbert")` with `trust_remote_code=True`, as a user would.
- Card snippet: the usage code of the published model card runs against the folder with only `repo_or_dir` replaced.

`main` is the command line behind `push_to_hub.py`. Exit codes: 0 success (or a dry run whose checks pass),
1 validation failed (nothing uploaded), 2 usage error (invalid arguments, missing folder or missing token),
3 upload failed.
"""

import argparse
import ast
import json
import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import huggingface_hub
import yaml
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import HFValidationError, validate_repo_id
from safetensors import SafetensorError, safe_open

from .remote_code import HUB_CODE_DIR, HUB_CODE_FILES


logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_VALIDATION_FAILED = 1
EXIT_USAGE = 2
EXIT_UPLOAD_FAILED = 3

DEFAULT_COMMIT_MESSAGE = "Upload LQ-KBERT model"
DEFAULT_TIMEOUT = 600.0
PIPELINE_TASK = "lqkbert"
PIPELINE_KEYS = ["sentiment_strength", "action_signal", "emotions", "certainty", "relevance", "toxicity"]
SNIPPET_KEYS = [
    "text",
    "pred_sentiment_strength",
    "pred_action_signal",
    "pred_emotions",
    "pred_certainty",
    "pred_relevance",
    "pred_toxicity",
]
REFERENCE_DIR = HUB_CODE_DIR.parent / "shared" / "reference"
CARD_SNIPPET_PATH = REFERENCE_DIR / "model_card_snippet.py"
LOGIN_HELP = (
    "Log in with `hf auth login` (`huggingface-cli login` on huggingface_hub < 1.0), or set the HF_TOKEN environment "
    "variable to a token with write access from https://huggingface.co/settings/tokens."
)

SINGLE_WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_VOCABULARIES = ["vocab.txt", "tokenizer.json"]
OPTIONAL_TOKENIZER_FILES = ["special_tokens_map.json", "added_tokens.json"]
# `eval_results.json` backs the card's evaluation table, so readers can check the numbers.
OPTIONAL_FILES = ["eval_results.json"]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
TRAINING_STATE_FILES = {"trainer_state.json", "training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt"}
LOG_FOLDERS = {"runs", "logs", "wandb", "mlruns"}

# Environment variables that would let the loading subprocess find a token, a cache or code outside the published files.
ISOLATED_ENV_VARIABLES = [
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "TRANSFORMERS_CACHE",
    "HF_MODULES_CACHE",
    "PYTHONPATH",
]
LOAD_CHECK_TEXTS = ["비트코인 조정 후 반등, 투자심리 개선", "비트 그만 좀 내려라 진짜.."]

# Runs in a fresh interpreter with the staged folder as argv[1]. It imports nothing from this repository, and prints
# one JSON line: what it loaded and computed, or the step that failed with its traceback.
LOAD_CHECK_CODE = r"""
import json
import sys
import traceback

folder, texts = sys.argv[1], json.loads(sys.argv[2])
step = "import torch and transformers"
try:
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer, pipeline

    step = "AutoConfig.from_pretrained"
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    step = "AutoTokenizer.from_pretrained"
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    step = "AutoModel.from_pretrained"
    model, loading_info = AutoModel.from_pretrained(folder, trust_remote_code=True, output_loading_info=True)
    model.eval()

    step = "model forward pass"
    with torch.inference_mode():
        out = model(**tokenizer(texts, return_tensors="pt", padding=True))
    heads = ["logits_senti", "logits_act", "logits_emo", "pred_reg"]

    step = "pipeline"
    classifier = pipeline("lqkbert", model=folder, trust_remote_code=True)
    result = classifier(texts[0])
    try:
        json.dumps(result)
    except TypeError:
        result = {"not JSON-serializable": {key: type(value).__name__ for key, value in dict(result).items()}}
except Exception:
    print(json.dumps({"failed_step": step, "error": traceback.format_exc(limit=-4)}))
    sys.exit(1)

print(json.dumps({
    "config_class": type(config).__name__,
    "model_class": type(model).__name__,
    "labels": {
        "logits_senti": list(config.sentiment_labels),
        "logits_act": list(config.action_labels),
        "logits_emo": list(config.emotion_labels),
        "pred_reg": list(config.regression_targets),
    },
    "vocab_size": config.vocab_size,
    "tokenizer_size": len(tokenizer),
    "loading_info": {key: sorted(map(str, value)) for key, value in loading_info.items()},
    "shapes": {key: list(out[key].shape) for key in heads},
    "non_finite_outputs": [key for key in heads if not bool(torch.isfinite(out[key]).all())],
    "pipeline_result": result,
}))
"""

# The card's usage steps, for when the card's own snippet file is not available: load with the Auto classes, run
# the texts as one batch and print one JSON line per text with the card's keys.
FALLBACK_SNIPPET = r"""
import json

import torch
from transformers import AutoModel, AutoTokenizer

repo_or_dir = "LangQuant/LQ-Kbert-base"
texts = [
    "비트코인 조정 후 반등, 투자심리 개선",
    "환율 급등에 증시 변동성 확대",
    "비트 그만 좀 내려라 진짜..",
    "폭락ㅠㅠㅜㅠㅜ 다 팔아야할까요?",
]

tokenizer = AutoTokenizer.from_pretrained(repo_or_dir)
model = AutoModel.from_pretrained(repo_or_dir, trust_remote_code=True).eval()
config = model.config

enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=200)
with torch.inference_mode():
    out = model(**enc)

for i, text in enumerate(texts):
    emotion_probs = torch.sigmoid(out["logits_emo"][i]).tolist()
    scores = torch.clamp(out["pred_reg"][i], 0, 1).tolist()
    result = {
        "text": text,
        "pred_sentiment_strength": config.sentiment_labels[int(out["logits_senti"][i].argmax())],
        "pred_action_signal": config.action_labels[int(out["logits_act"][i].argmax())],
        "pred_emotions": [name for name, p in zip(config.emotion_labels, emotion_probs) if p >= 0.5],
        "pred_certainty": float(scores[0]),
        "pred_relevance": float(scores[1]),
        "pred_toxicity": float(scores[2]),
    }
    print(json.dumps(result, ensure_ascii=False))
"""
SNIPPET_REPO_LINE = re.compile(r'^repo_or_dir = "[^"]*"', flags=re.M)


@dataclass(frozen=True)
class Problem:
    """One failed check: the check's name and a message stating what is wrong and how to fix it."""

    check: str
    message: str


class FolderValidationError(Exception):
    """Raised when a model folder fails one or more publishing checks. `problems` lists every failure."""

    def __init__(self, folder, problems, note=None):
        self.folder = Path(folder)
        self.problems = list(problems)
        lines = [f"Model folder {self.folder} failed {len(self.problems)} publishing check(s), so nothing was uploaded:"]
        lines += [f"  - [{problem.check}] {problem.message}" for problem in self.problems]
        if note:
            lines.append(note)
        super().__init__("\n".join(lines))


@dataclass
class PublishPlan:
    """Files that go up: each name in the repository mapped to the local file that provides it."""

    folder: Path
    sources: dict = field(default_factory=dict)

    @property
    def names(self):
        return sorted(self.sources)

    def sizes(self):
        """Return `(name, size in bytes)` of each published file, sorted by name."""
        return [(name, self.sources[name].stat().st_size) for name in self.names]


# Validation


def validate_folder(folder, *, sync_code=False, write=True, run_load_checks=True, snippet_path=CARD_SNIPPET_PATH,
                    timeout=DEFAULT_TIMEOUT):
    """Run every publishing check on `folder` and return the `PublishPlan` of the files to upload.

    Args:
        folder: The model folder.
        sync_code: Replace the folder's Hub `.py` files that are missing or differ from the repository's current
            ones, instead of reporting them.
        write: With `sync_code`, copy the files into the folder. When `False` (a dry run), the folder is left as it
            is and the checks and the plan use the repository's files in place of the stale ones.
        run_load_checks: Run the subprocess checks (loading and card snippet). Each starts a fresh interpreter that
            imports torch and transformers and loads the weights, so they take seconds even for a tiny model. Only
            tests of the other checks turn them off.
        snippet_path: The model card's usage snippet. When the file does not exist, the same steps written in
            `FALLBACK_SNIPPET` run instead.
        timeout: Limit in seconds for each subprocess check.

    Raises:
        FolderValidationError: listing every failed check.
    """
    folder = Path(folder)
    problems = []

    config, config_problems = _read_config(folder)
    problems += config_problems
    weight_names, weight_problems = _weight_files(folder)
    problems += weight_problems
    problems += _check_tokenizer_and_card_files(folder)
    required_files_missing = bool(problems)

    code_sources, code_problems = _check_code(folder, sync_code=sync_code, write=write)
    problems += code_problems
    problems += _check_auto_map(config)

    allowed = published_names(weight_names)
    problems += _check_unexpected_entries(folder, allowed)
    problems += _check_weights_finite(folder, weight_names)
    problems += _check_card_metadata(folder)

    plan = PublishPlan(folder)
    for name in allowed:
        if (folder / name).is_file():
            plan.sources[name] = folder / name
    plan.sources.update(code_sources)
    required_files_missing = required_files_missing or not set(HUB_CODE_FILES) <= set(plan.sources)

    if not run_load_checks:
        logger.info("Skipped the loading and card snippet checks (run_load_checks=False).")
    elif required_files_missing:
        problems.append(Problem(
            "loading",
            "Not run because required files are missing from the folder or the repository (see above). Add them "
            "and run the checks again.",
        ))
    else:
        problems += check_loading(plan, timeout=timeout, snippet_path=snippet_path)

    if problems:
        note = None
        if any(problem.check == "entries" for problem in problems):
            note = f"The upload contains only these files, when present: {', '.join(allowed)}."
        raise FolderValidationError(folder, problems, note)
    return plan


def published_names(weight_names):
    """Return the allow-list of file names that an upload may contain, for a folder with these weight files."""
    names = {"config.json", "README.md", TOKENIZER_CONFIG, *TOKENIZER_VOCABULARIES, *OPTIONAL_TOKENIZER_FILES}
    names.update(HUB_CODE_FILES)
    names.update(OPTIONAL_FILES)
    names.update(weight_names)
    return sorted(names)


def _read_config(folder):
    path = folder / "config.json"
    if not path.is_file():
        return None, [Problem(
            "files",
            f"config.json is missing from {folder}. Save the model with save_pretrained (or "
            "lqkbert.model_folder.save_model_folder), which writes it.",
        )]

    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return None, [Problem("files", f"{path} is not valid JSON ({error}). Save the model again to rewrite it.")]
    if not isinstance(config, dict):
        return None, [Problem("files", f"{path} contains {type(config).__name__}, not a JSON object. Save the "
                                       "model again to rewrite it.")]
    return config, []


def _weight_files(folder):
    """Return the names of the safetensors weight files (the single file, or the index and its shards)."""
    single = (folder / SINGLE_WEIGHTS).is_file()
    index_path = folder / WEIGHTS_INDEX

    if single and index_path.is_file():
        return [SINGLE_WEIGHTS], [Problem(
            "files",
            f"{folder} has both {SINGLE_WEIGHTS} and {WEIGHTS_INDEX}, so it is unclear which weights load. Keep one: "
            "save the model again into an empty folder.",
        )]
    if single:
        return [SINGLE_WEIGHTS], []
    if not index_path.is_file():
        return [], [Problem(
            "files",
            f"{folder} has no safetensors weights ({SINGLE_WEIGHTS}, or {WEIGHTS_INDEX} with its shards). Save the "
            "model with save_pretrained, which writes safetensors.",
        )]

    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
        return [], [Problem(
            "files",
            f"{index_path} is not a valid safetensors index ({type(error).__name__}: {error}); it needs a "
            "'weight_map' from tensor names to shard files. Save the model again.",
        )]

    invalid = [name for name in shards if not isinstance(name, str) or "/" in name or not name.endswith(".safetensors")]
    if invalid:
        return [], [Problem("files", f"{index_path} names invalid shard files {invalid}. Save the model again.")]
    missing = [name for name in shards if not (folder / name).is_file()]
    if missing:
        return [WEIGHTS_INDEX, *shards], [Problem(
            "files", f"{index_path} lists shards that are missing from the folder: {missing}. Save the model again.",
        )]
    return [WEIGHTS_INDEX, *shards], []


def _check_tokenizer_and_card_files(folder):
    problems = []
    if not (folder / TOKENIZER_CONFIG).is_file():
        problems.append(Problem(
            "files",
            f"{TOKENIZER_CONFIG} is missing from {folder}. Save the tokenizer into the folder with "
            "tokenizer.save_pretrained(folder).",
        ))
    if not any((folder / name).is_file() for name in TOKENIZER_VOCABULARIES):
        problems.append(Problem(
            "files",
            f"The tokenizer vocabulary is missing from {folder}: neither vocab.txt nor tokenizer.json exists. Save "
            "the tokenizer into the folder with tokenizer.save_pretrained(folder).",
        ))
    if not (folder / "README.md").is_file():
        problems.append(Problem(
            "files",
            f"README.md (the model card) is missing from {folder}. Generate it with "
            f"`python -m lqkbert.model_card {shlex.quote(str(folder))}`.",
        ))
    return problems


def _check_auto_map(config):
    if config is None:
        return []

    auto_map = config.get("auto_map")
    if not isinstance(auto_map, dict):
        auto_map = {}
    problems = []
    for auto_class in ("AutoConfig", "AutoModel"):
        reference = auto_map.get(auto_class)
        if not isinstance(reference, str) or not reference:
            problems.append(Problem(
                "files",
                f"config.json has no auto_map entry for {auto_class} (auto_map is {config.get('auto_map')!r}), so "
                "AutoConfig and AutoModel cannot find the model code. Save the model with the classes of "
                "configuration_lqkbert.py and modeling_lqkbert.py, whose register_for_auto_class() writes auto_map.",
            ))
        elif "--" in reference:
            problems.append(Problem(
                "files",
                f"config.json's auto_map entry for {auto_class} is {reference!r}, which points to another repository. "
                "The published folder must carry its own code: set it to the file name and class, such as "
                "'modeling_lqkbert.LQKBertModel', and run with --sync-code.",
            ))
        elif f"{reference.split('.')[0]}.py" not in HUB_CODE_FILES:
            problems.append(Problem(
                "files",
                f"config.json's auto_map entry for {auto_class} is {reference!r}, but its module is not one of the "
                f"Hub code files {HUB_CODE_FILES}. Save the model again with the repository's classes.",
            ))

    # `pipeline(task, model=folder)` finds the pipeline class of a custom task only through this config entry.
    pipelines = config.get("custom_pipelines")
    entry = pipelines.get(PIPELINE_TASK) if isinstance(pipelines, dict) else None
    implementation = entry.get("impl") if isinstance(entry, dict) else None
    if not isinstance(implementation, str) or not implementation.startswith("pipeline_lqkbert."):
        problems.append(Problem(
            "files",
            f"config.json has no custom_pipelines entry for the task {PIPELINE_TASK!r} in pipeline_lqkbert.py "
            f"(custom_pipelines is {pipelines!r}), so pipeline({PIPELINE_TASK!r}, model=...) cannot find the "
            "pipeline. Save the folder with lqkbert.model_folder.save_model_folder, which writes the entry.",
        ))
    return problems


def _check_code(folder, *, sync_code, write):
    """Compare the folder's Hub code files with the repository's and return the replacement sources and problems."""
    sources, problems = {}, []
    for name in HUB_CODE_FILES:
        current = HUB_CODE_DIR / name
        published = folder / name
        if not current.is_file():
            problems.append(Problem(
                "code",
                f"The repository has no {name} at {current}, so the folder's copy cannot be checked. Run from a "
                "complete clone of the repository.",
            ))
            continue

        if published.is_file() and published.read_bytes() == current.read_bytes():
            continue
        if not sync_code and published.is_file():
            problems.append(Problem(
                "code",
                f"{name} differs from the repository's current version ({current}), so users would run other code "
                "than the tests cover. Run again with --sync-code to copy the current files into the folder.",
            ))
        elif not sync_code:
            problems.append(Problem(
                "code",
                f"{name} is missing from the folder, so loading with trust_remote_code=True fails. Run again with "
                f"--sync-code to copy the repository's current version ({current}) into the folder.",
            ))
        elif write:
            shutil.copyfile(current, published)
            logger.info("Copied %s from %s into %s (--sync-code)", name, HUB_CODE_DIR, folder)
        else:
            sources[name] = current
            logger.info("Dry run: %s would be copied from %s into %s (--sync-code)", name, HUB_CODE_DIR, folder)
    return sources, problems


def _describe_unexpected(path):
    """Return why an entry that is not on the allow-list must not be published, and the fix."""
    name = path.name
    if name.startswith("."):
        return "a hidden file or folder", "Delete it or move it out of the folder."
    if path.is_dir():
        if name.startswith("checkpoint-"):
            return ("a Trainer checkpoint (optimizer state and pickle files)",
                    "Move it out of the folder; publish the final model only.")
        if name in LOG_FOLDERS:
            return "a folder of training logs", "Move it out of the folder."
        if name == "__pycache__":
            return "a Python bytecode cache", "Delete it."
        return "a subfolder; only files at the top level are published", "Move it out of the folder."
    if name.endswith(PICKLE_SUFFIXES):
        return ("a pickle-based file, which can run arbitrary code when loaded",
                "Delete it: the weights go up as safetensors only.")
    if name in TRAINING_STATE_FILES or name.startswith("rng_state"):
        return "Trainer state from training", "Move it out of the folder."
    if name.endswith(".log"):
        return "a log file", "Move it out of the folder."
    if name.endswith(".py"):
        return (f"a Python file other than the Hub code files {HUB_CODE_FILES}",
                "Move it out of the folder; tooling such as push_to_hub.py is not part of the model.")
    return "not on the list of published files", "Move it out of the folder."


def _check_unexpected_entries(folder, allowed):
    if not folder.is_dir():
        return []

    problems = []
    for path in sorted(folder.iterdir()):
        if path.name in allowed and path.is_file():
            continue
        reason, fix = _describe_unexpected(path)
        kind = "Folder" if path.is_dir() else "File"
        problems.append(Problem("entries", f"{kind} {path.name!r} is {reason}. {fix}"))
    return problems


def _check_weights_finite(folder, weight_names):
    problems = []
    for name in weight_names:
        path = folder / name
        if not name.endswith(".safetensors") or not path.is_file():
            continue

        non_finite = []
        try:
            # safe_open reads one tensor at a time from the file, without pickle and without loading the whole model.
            with safe_open(str(path), framework="pt") as weights:
                for key in weights.keys():
                    tensor = weights.get_tensor(key)
                    if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
                        count = int((~tensor.isfinite()).sum())
                        non_finite.append(f"{key} ({count} of {tensor.numel()} values)")
        except (SafetensorError, OSError, RuntimeError) as error:
            problems.append(Problem(
                "weights",
                f"{name} cannot be read as safetensors ({error}). Save the model again with save_pretrained.",
            ))
            continue

        if non_finite:
            listed = ", ".join(non_finite[:5])
            if len(non_finite) > 5:
                listed += f" and {len(non_finite) - 5} more"
            problems.append(Problem(
                "weights",
                f"{name} has tensors with NaN or infinite values: {listed}. Training diverged or the file is damaged: "
                "publish an earlier checkpoint, or retrain with a lower learning rate.",
            ))
    return problems


def _check_card_metadata(folder):
    path = folder / "README.md"
    if not path.is_file():
        return []
    try:
        ModelCard.load(path)
    except (yaml.YAMLError, ValueError, TypeError, UnicodeDecodeError) as error:
        return [Problem(
            "card",
            f"README.md has invalid YAML metadata, which the Hub rejects ({type(error).__name__}: {error}). "
            f"Regenerate it with `python -m lqkbert.model_card {shlex.quote(str(folder))}`.",
        )]
    return []


# Subprocess checks


def check_loading(plan, *, timeout=DEFAULT_TIMEOUT, snippet_path=CARD_SNIPPET_PATH):
    """Load the published files as a user would, run the card snippet and return the problems found.

    The files are linked into an empty staging folder first, so a file missing from the upload fails here too.
    """
    with tempfile.TemporaryDirectory(prefix="lqkbert-publish-") as scratch:
        scratch = Path(scratch)
        staged = _stage_files(plan, scratch / "model")
        problems = _check_auto_classes_and_pipeline(staged, scratch, timeout)
        problems += _check_card_snippet(staged, scratch, timeout, snippet_path)
    return problems


def check_card_snippet(folder, *, snippet_path=CARD_SNIPPET_PATH, timeout=DEFAULT_TIMEOUT):
    """Run the model card's usage code against `folder` in a fresh offline process and return the problems found."""
    with tempfile.TemporaryDirectory(prefix="lqkbert-snippet-") as scratch:
        return _check_card_snippet(Path(folder), Path(scratch), timeout, snippet_path)


def _stage_files(plan, staged):
    staged.mkdir()
    for name, source in plan.sources.items():
        try:
            os.symlink(source.resolve(), staged / name)
        except OSError:
            # Creating symlinks needs a privilege on some Windows setups; a copy checks the same content.
            shutil.copyfile(source, staged / name)
    return staged


def _isolated_env(hf_home):
    env = {key: value for key, value in os.environ.items() if key not in ISOLATED_ENV_VARIABLES}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(hf_home), PYTHONDONTWRITEBYTECODE="1")
    return env


def _run_python(code, args, scratch, timeout):
    """Run `code` in a fresh offline interpreter with an empty HF_HOME and an empty working folder."""
    hf_home = scratch / "hf_home"
    work_dir = scratch / "cwd"
    hf_home.mkdir(exist_ok=True)
    work_dir.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=work_dir,
        env=_isolated_env(hf_home),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
    )


def _json_lines(stdout):
    """Parse JSON objects printed one per line. On transformers 5.x, `AutoTokenizer` may print its custom-code question
    (answered by the closed stdin) without a newline, so text can precede the `{` on a line."""
    lines = []
    for line in stdout.splitlines():
        if "{" not in line:
            continue
        try:
            lines.append(json.loads(line[line.index("{"):]))
        except json.JSONDecodeError:
            continue
    return lines


def _tail(text, lines=12):
    return "\n      ".join(text.strip().splitlines()[-lines:])


def _check_auto_classes_and_pipeline(staged, scratch, timeout):
    try:
        result = _run_python(LOAD_CHECK_CODE, [str(staged), json.dumps(LOAD_CHECK_TEXTS)], scratch, timeout)
    except subprocess.TimeoutExpired:
        return [Problem("loading", f"Loading the folder in a fresh process timed out after {timeout:g} s.")]

    reports = _json_lines(result.stdout)
    report = reports[-1] if reports else {}
    if result.returncode != 0 or "failed_step" in report or "shapes" not in report:
        step = report.get("failed_step", "start of the process")
        details = _tail(report.get("error") or result.stderr)
        if report.get("error") and result.stderr.strip():
            # Some transformers versions log the details (such as a table of mismatched shapes) before raising.
            details += f"\n      Last lines of stderr:\n      {_tail(result.stderr, lines=8)}"
        return [Problem(
            "loading",
            f"The folder failed to load offline in a fresh process at {step} (trust_remote_code=True). Fix the "
            f"error below, then run the checks again:\n      {details}",
        )]
    return _check_load_report(report)


def _check_load_report(report):
    problems = []
    if report["model_class"] != "LQKBertModel":
        problems.append(Problem(
            "loading",
            f"AutoModel loaded {report['model_class']}, not LQKBertModel: config.json's auto_map points to other "
            "code. Save the model again with the repository's classes.",
        ))

    loading_info = {key: value for key, value in report["loading_info"].items() if value and key != "error_msgs"}
    if loading_info:
        problems.append(Problem(
            "loading",
            f"The weights do not match the model: {loading_info}. Weights that are missing would be initialized at "
            "random for every user. Save the trained model with save_pretrained.",
        ))

    if report["tokenizer_size"] > report["vocab_size"]:
        problems.append(Problem(
            "loading",
            f"The tokenizer has {report['tokenizer_size']} tokens but the model's vocab_size is "
            f"{report['vocab_size']}, so some token ids have no embedding. Resize the embeddings with "
            "model.resize_token_embeddings(len(tokenizer)) and retrain, or publish the matching tokenizer.",
        ))

    for head, shape in report["shapes"].items():
        expected = [len(LOAD_CHECK_TEXTS), len(report["labels"][head])]
        if shape != expected:
            problems.append(Problem(
                "loading",
                f"Output {head} has shape {shape}, expected {expected} for {len(LOAD_CHECK_TEXTS)} texts and the "
                f"labels {report['labels'][head]} of config.json. Save the model and config together again.",
            ))
    if report["non_finite_outputs"]:
        problems.append(Problem(
            "loading",
            f"The model returns NaN or infinite values in {report['non_finite_outputs']}. Publish an earlier "
            "checkpoint or retrain.",
        ))

    problems += _check_pipeline_result(report["pipeline_result"], report["labels"])
    return problems


def _check_pipeline_result(result, labels):
    prefix = f'pipeline("{PIPELINE_TASK}")({LOAD_CHECK_TEXTS[0]!r}) returned'
    if not isinstance(result, dict) or "not JSON-serializable" in result:
        return [Problem(
            "pipeline",
            f"{prefix} {result!r}, but it must return one JSON-serializable dict with the keys {PIPELINE_KEYS} for "
            "one string. Fix postprocess() in pipeline_lqkbert.py.",
        )]

    missing = [key for key in PIPELINE_KEYS if key not in result]
    if missing:
        return [Problem(
            "pipeline",
            f"{prefix} a dict without the keys {missing} (it has {sorted(result)}). Fix postprocess() in "
            "pipeline_lqkbert.py.",
        )]

    invalid = []
    if result["sentiment_strength"] not in labels["logits_senti"]:
        invalid.append(f"sentiment_strength={result['sentiment_strength']!r} is not in {labels['logits_senti']}")
    if result["action_signal"] not in labels["logits_act"]:
        invalid.append(f"action_signal={result['action_signal']!r} is not in {labels['logits_act']}")
    emotions = result["emotions"]
    if not isinstance(emotions, list) or not set(emotions) <= set(labels["logits_emo"]):
        invalid.append(f"emotions={emotions!r} is not a list of names from {labels['logits_emo']}")
    for key in ("certainty", "relevance", "toxicity"):
        if not _is_unit_score(result[key]):
            invalid.append(f"{key}={result[key]!r} is not a number in [0, 1]")

    if invalid:
        return [Problem("pipeline", f"{prefix} invalid values: {'; '.join(invalid)}. Fix pipeline_lqkbert.py.")]
    return []


def _is_unit_score(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0.0 <= value <= 1.0)


def _snippet_code(snippet_path, staged):
    """Return the snippet pointed at `staged`, its texts and where it comes from, or a `Problem` if it is unusable."""
    if snippet_path is not None and Path(snippet_path).is_file():
        code, origin = Path(snippet_path).read_text(encoding="utf-8"), str(snippet_path)
    else:
        logger.info("The model card snippet is not at %s: running the same steps from lqkbert.publishing.",
                    snippet_path)
        code, origin = FALLBACK_SNIPPET, "the card snippet steps in lqkbert.publishing"

    if len(SNIPPET_REPO_LINE.findall(code)) != 1:
        return Problem("snippet", f"{origin} has no single line `repo_or_dir = \"...\"` to point at the folder.")
    code = SNIPPET_REPO_LINE.sub(lambda _: f"repo_or_dir = {str(staged)!r}", code)

    try:
        texts = _snippet_texts(code)
    except (SyntaxError, ValueError) as error:
        return Problem("snippet", f"{origin} has no literal `texts = [...]` list to check the output against ({error}).")
    return code, texts, origin


def _snippet_texts(code):
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Assign) and any(getattr(target, "id", None) == "texts" for target in node.targets):
            return ast.literal_eval(node.value)
    raise ValueError("no assignment to `texts`")


def _check_card_snippet(staged, scratch, timeout, snippet_path):
    snippet = _snippet_code(snippet_path, staged)
    if isinstance(snippet, Problem):
        return [snippet]
    code, texts, origin = snippet

    try:
        result = _run_python(code, [], scratch, timeout)
    except subprocess.TimeoutExpired:
        return [Problem("snippet", f"The card snippet ({origin}) timed out after {timeout:g} s.")]
    if result.returncode != 0:
        return [Problem(
            "snippet",
            f"The model card's usage code ({origin}) fails on the folder with exit status {result.returncode}, so "
            f"it would fail for every user who copies it:\n      {_tail(result.stderr)}",
        )]

    lines = _json_lines(result.stdout)
    if len(lines) != len(texts):
        return [Problem(
            "snippet",
            f"The model card's usage code ({origin}) printed {len(lines)} JSON lines for {len(texts)} texts; expected "
            f"one per text. Its output:\n      {_tail(result.stdout)}",
        )]

    problems = []
    for text, line in zip(texts, lines):
        invalid = _invalid_snippet_line(text, line)
        if invalid:
            problems.append(Problem("snippet", f"The model card's usage code ({origin}) printed {line!r}: {invalid}."))
    return problems


def _invalid_snippet_line(text, line):
    if list(line) != SNIPPET_KEYS:
        return f"expected the keys {SNIPPET_KEYS}"
    if line["text"] != text:
        return f"the text should be {text!r}"
    if not isinstance(line["pred_sentiment_strength"], str) or not isinstance(line["pred_action_signal"], str):
        return "the sentiment strength and action signal should be label names"
    if not isinstance(line["pred_emotions"], list):
        return "the emotions should be a list of names"
    scores = [line[key] for key in ("pred_certainty", "pred_relevance", "pred_toxicity")]
    if not all(_is_unit_score(score) for score in scores):
        return f"the scores {scores} should be numbers in [0, 1]"
    return None


# Upload


def upload(plan, *, repo_id, token, private=False, revision=None, create_pr=False,
           commit_message=DEFAULT_COMMIT_MESSAGE):
    """Create the repository if needed, upload exactly the files of `plan` in one commit and return its CommitInfo."""
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision and revision != "main" and not revision.startswith("refs/"):
        api.create_branch(repo_id, branch=revision, exist_ok=True)

    return api.upload_folder(
        repo_id=repo_id,
        folder_path=plan.folder,
        allow_patterns=plan.names,
        revision=revision,
        create_pr=create_pr,
        commit_message=commit_message,
    )


def _upload_errors():
    errors = (OSError, HfHubHTTPError)
    # huggingface_hub >= 1.0 sends requests through httpx, whose transport errors are not OSError.
    client_error = getattr(huggingface_hub.errors, "HTTPError", None)
    if isinstance(client_error, type) and issubclass(client_error, Exception):
        errors += (client_error,)
    return errors


def retry_command(folder, *, repo_id, private=False, revision=None, create_pr=False, commit_message=None):
    """Return the `hf upload` command that uploads `folder` by hand with the same settings (without the token).

    The folder passed validation, so it contains exactly the published files and needs no `--include` list.
    """
    parts = ["hf", "upload", repo_id, str(folder), "."]
    if revision:
        parts += ["--revision", revision]
    if private:
        parts.append("--private")
    if create_pr:
        parts.append("--create-pr")
    if commit_message:
        parts += ["--commit-message", commit_message]
    return shlex.join(parts)


def _redact(text, token):
    return text.replace(token, "***") if token else text


def format_plan(plan, *, repo_id, private, revision, create_pr, commit_message):
    """Return the dry-run report: the files with their sizes and the commit that would be made."""
    sizes = plan.sizes()
    total = sum(size for _, size in sizes)
    width = max(len(name) for name, _ in sizes)
    lines = [f"Files to upload from {plan.folder} ({len(sizes)} files, {total:,} bytes):"]
    for name, size in sizes:
        source = plan.sources[name]
        origin = "" if source.parent.resolve() == plan.folder.resolve() else f"  (from {source}, --sync-code)"
        lines.append(f"  {name:<{width}}  {size:>14,} bytes{origin}")
    lines += [
        "Commit:",
        f"  repo_id:        {repo_id}",
        f"  revision:       {revision or 'main'}",
        f"  create_pr:      {create_pr}",
        f"  private:        {private} (applies only if the repository is created)",
        f"  commit_message: {commit_message}",
    ]
    return "\n".join(lines)


# Command line


def build_parser():
    parser = argparse.ArgumentParser(
        prog="push_to_hub.py",
        description="Validate an LQ-KBERT model folder and upload it to the Hugging Face Hub. Every check runs "
        "before anything is sent, and nothing is uploaded unless all pass.",
        epilog="Exit codes: 0 success, 1 validation failed, 2 usage error (including a missing token), 3 upload "
        "failed. The token comes from HF_TOKEN or the saved login (`hf auth login`).",
    )
    parser.add_argument("model_dir", type=Path, help="model folder to publish")
    parser.add_argument("--repo-id", required=True, help="Hub repository to upload to, as ORG/NAME")
    parser.add_argument("--private", action="store_true",
                        help="create the repository as private (no effect on an existing repository)")
    parser.add_argument("--revision", help="branch to upload to; created from main if it does not exist")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing directly")
    parser.add_argument("--commit-message", default=DEFAULT_COMMIT_MESSAGE, help="summary line of the commit")
    parser.add_argument("--dry-run", action="store_true",
                        help="run every check and print the files and the commit, but upload nothing and change no "
                        "file (needs no token)")
    parser.add_argument("--sync-code", action="store_true",
                        help="copy the repository's current Hub .py files into the folder before the checks")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="limit in seconds for each loading check subprocess (default: %(default)s)")
    return parser


def _check_repo_id(repo_id):
    if repo_id.count("/") != 1:
        return f"Invalid --repo-id {repo_id!r}: use ORG/NAME, such as LangQuant/LQ-Kbert-base."
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        return f"Invalid --repo-id {repo_id!r}: {error}"
    return None


def main(argv=None):
    args = build_parser().parse_args(argv)

    usage_error = _check_repo_id(args.repo_id)
    if usage_error is None and not args.model_dir.is_dir():
        usage_error = f"Model folder {args.model_dir} does not exist or is not a folder."
    if usage_error is None and args.timeout <= 0:
        usage_error = f"Invalid --timeout {args.timeout:g}: use a positive number of seconds."
    if usage_error:
        print(f"error: {usage_error}", file=sys.stderr)
        return EXIT_USAGE

    token = None
    if not args.dry_run:
        token = huggingface_hub.get_token()
        if not token:
            print(f"error: No Hugging Face token found, so nothing can be uploaded. {LOGIN_HELP}", file=sys.stderr)
            return EXIT_USAGE

    try:
        plan = validate_folder(args.model_dir, sync_code=args.sync_code, write=not args.dry_run, timeout=args.timeout)
    except FolderValidationError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_VALIDATION_FAILED

    card = (args.model_dir / "README.md").read_text(encoding="utf-8")
    if args.repo_id not in card:
        logger.warning(
            "README.md never mentions %s, so its usage code loads another repository. Regenerate the card with "
            "`python -m lqkbert.model_card %s --repo-id %s`.", args.repo_id, shlex.quote(str(args.model_dir)),
            args.repo_id,
        )

    settings = dict(repo_id=args.repo_id, private=args.private, revision=args.revision, create_pr=args.create_pr,
                    commit_message=args.commit_message)
    if args.dry_run:
        print(format_plan(plan, **settings))
        print("Dry run: all checks passed and nothing was uploaded.")
        return EXIT_OK

    logger.info("All checks passed; uploading %d files to %s", len(plan.names), args.repo_id)
    try:
        commit = upload(plan, token=token, **settings)
    except _upload_errors() as error:
        command = retry_command(args.model_dir.resolve(), **settings)
        print(
            f"error: Uploading {args.model_dir} to {args.repo_id} failed: {_redact(str(error), token)}\n"
            f"The folder passed every check. To retry by hand, run:\n  {command}\n"
            "(with huggingface_hub < 1.0, `huggingface-cli upload` takes the same arguments)",
            file=sys.stderr,
        )
        return EXIT_UPLOAD_FAILED

    print(f"Uploaded {len(plan.names)} files to {args.repo_id}: {commit.commit_url}")
    if commit.pr_url:
        print(f"Pull request: {commit.pr_url}")
    return EXIT_OK
