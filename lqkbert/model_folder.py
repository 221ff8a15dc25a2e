"""Build LQ-KBERT models from a base BERT checkpoint and write complete, Hub-ready model folders."""

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer
from transformers.dynamic_module_utils import custom_object_save

from .remote_code import HUB_CODE_DIR, hub_code_paths, import_hub_module


logger = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = "klue/bert-base"
ROOT_TOKENIZER_CONFIG = HUB_CODE_DIR / "tokenizer_config.json"

# Settings that keep Hangul intact: lower-casing or accent stripping would decompose syllables into jamo (NFD).
TOKENIZER_SETTINGS = {"do_lower_case": False, "strip_accents": False, "tokenize_chinese_chars": True}

# Encoder dimensions of klue/bert-base, the published model's backbone.
KLUE_BERT_BASE_DIMENSIONS = dict(
    vocab_size=32000,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=512,
    type_vocab_size=2,
    pad_token_id=0,
)

# Keys of a base checkpoint's config.json that describe the base model, not ours.
_BASE_ONLY_KEYS = {"model_type", "architectures", "auto_map", "transformers_version", "_name_or_path", "id2label",
                   "label2id", "problem_type", "custom_pipelines"}


def config_class():
    return import_hub_module("configuration_lqkbert").LQKBertConfig


def model_class():
    return import_hub_module("modeling_lqkbert").LQKBertModel


def build_config(base_model=DEFAULT_BASE_MODEL, **overrides):
    """Create an `LQKBertConfig` with the encoder dimensions of `base_model` (a Hub name or a local folder).

    A base that is already an LQ-KBERT checkpoint keeps its label lists and thresholds unless `overrides` change them.
    """
    base_config = AutoConfig.from_pretrained(base_model, trust_remote_code=_is_lqkbert_folder(base_model))
    if base_config.model_type not in ("bert", "lqkbert"):
        raise ValueError(
            f"Invalid base model {base_model!r}: its model_type is {base_config.model_type!r}, but LQ-KBERT needs a "
            "BERT encoder (model_type 'bert' or 'lqkbert'), such as klue/bert-base."
        )

    values = {key: value for key, value in base_config.to_dict().items() if key not in _BASE_ONLY_KEYS}
    values.update(overrides)
    return config_class()(**values)


def build_model(base_model=DEFAULT_BASE_MODEL, **config_overrides):
    """Load `base_model` into an `LQKBertModel`: the encoder comes from the checkpoint, new heads are initialized."""
    config = build_config(base_model, **config_overrides)
    return model_class().from_pretrained(base_model, config=config)


def load_tokenizer(name_or_path=DEFAULT_BASE_MODEL):
    """Load the BERT WordPiece tokenizer of `name_or_path` with the settings of the root `tokenizer_config.json`."""
    # Passing our config keeps transformers 5.x from reading config.json itself and asking on stdin whether to run
    # the folder's custom code.
    extra = {"config": config_class().from_pretrained(name_or_path)} if _is_lqkbert_folder(name_or_path) else {}
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **TOKENIZER_SETTINGS, **extra)
    if getattr(tokenizer, "do_lower_case", False):
        raise ValueError(
            f"The tokenizer of {name_or_path!r} lower-cases its input, which decomposes Hangul into jamo. Use a "
            "cased BERT WordPiece vocabulary such as klue/bert-base's."
        )
    return tokenizer


def save_model_folder(model, tokenizer, output_dir, extra_files=None):
    """Write a complete model folder: weights, config with `auto_map`, Hub code, tokenizer and `extra_files`.

    The folder is written next to `output_dir` under a temporary name and renamed into place only when complete, so
    an interrupted save never leaves a half-written folder and never damages an existing one. `extra_files` maps file
    names to text (for example the model card `README.md`).
    """
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.partial-", dir=output_dir.parent))
    # mkdtemp creates mode 0700; give the finished folder the permissions a plain mkdir would, under the umask.
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)

    try:
        model.config.custom_pipelines = pipeline_config_entry()
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        copy_hub_code(staging)
        for name, text in (extra_files or {}).items():
            (staging / name).write_text(text, encoding="utf-8")
        check_folder_files(staging)
        replace_folder(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    logger.info("Saved model folder %s", output_dir)
    return output_dir


def pipeline_config_entry():
    """Return the config's `custom_pipelines`: the task of `pipeline_lqkbert.py` and its class, model and input type.

    The entry comes from the file's `PIPELINE_REGISTRY.register_pipeline` call and has the form that
    `Pipeline.save_pretrained` writes, without the TensorFlow models, so every transformers version writes the same.
    """
    module = import_hub_module("pipeline_lqkbert")
    task_info = module.LQKBertPipeline._registered_impl[module.TASK]
    entry = {
        "impl": f"pipeline_lqkbert.{task_info['impl'].__name__}",
        "pt": [auto_class.__name__ for auto_class in task_info["pt"]],
        "type": task_info["type"],
    }
    return {module.TASK: entry}


def copy_hub_code(folder):
    """Copy the Hub code files into `folder`, so that `trust_remote_code=True` loading finds them."""
    for path in hub_code_paths():
        if path.is_file():
            shutil.copyfile(path, Path(folder) / path.name)


def check_folder_files(folder):
    """Raise `FileNotFoundError` unless `folder` contains a config with `auto_map`, its code files and the weights."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"Model folder {folder} has no config.json.")

    auto_map = json.loads(config_path.read_text(encoding="utf-8")).get("auto_map") or {}
    for auto_class in ("AutoConfig", "AutoModel"):
        if auto_class not in auto_map:
            raise FileNotFoundError(f"{config_path} has no auto_map entry for {auto_class}: found {auto_map}.")

    code_files = {reference.split(".")[0] + ".py" for reference in _auto_map_references(auto_map)}
    missing = sorted(name for name in code_files | {"model.safetensors"} if not (folder / name).is_file())
    if missing:
        raise FileNotFoundError(f"Model folder {folder} is missing {missing}.")


def _auto_map_references(auto_map):
    for value in auto_map.values():
        # Tokenizer entries are [slow, fast] pairs; model and config entries are one "module.Class" string.
        for reference in value if isinstance(value, (list, tuple)) else [value]:
            if reference:
                yield reference.split("--")[-1]


def replace_folder(source, destination):
    """Move the finished folder `source` to `destination`, replacing what was there only after `source` is in place."""
    source, destination = Path(source), Path(destination)
    if not destination.exists():
        os.replace(source, destination)
        return

    retired = Path(tempfile.mkdtemp(prefix=f".{destination.name}.old-", dir=destination.parent))
    os.rmdir(retired)
    os.replace(destination, retired)
    try:
        os.replace(source, destination)
    except BaseException:
        os.replace(retired, destination)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _is_lqkbert_folder(name_or_path):
    config_path = Path(name_or_path) / "config.json"
    if not config_path.is_file():
        return False
    return json.loads(config_path.read_text(encoding="utf-8")).get("model_type") == "lqkbert"


def write_root_config(path=HUB_CODE_DIR / "config.json"):
    """Write the repository's root `config.json`: klue/bert-base dimensions, the card's labels and `auto_map`.

    `auto_map` comes from `register_for_auto_class()` in the Hub files, through `save_pretrained`, not by hand.
    """
    config = config_class()(
        **KLUE_BERT_BASE_DIMENSIONS,
        architectures=["LQKBertModel"],
        custom_pipelines=pipeline_config_entry(),
    )
    # A model on the meta device allocates no weights; it only lets transformers record the AutoModel entry.
    with torch.device("meta"):
        model = model_class()(config)
    with tempfile.TemporaryDirectory() as scratch:
        custom_object_save(model, scratch, config=config)
        config.save_pretrained(scratch)
        shutil.copyfile(Path(scratch) / "config.json", path)
    return Path(path)
