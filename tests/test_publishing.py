"""Publishing: every validation failure on a broken copy of the tiny model, dry runs, uploads and secrecy of the token.

The Hub cannot be reached from the tests, so `HfApi` is replaced at the network boundary: its `create_repo`,
`create_branch` and `upload_folder` methods record their calls and return a `CommitInfo`. The subprocess checks take
several seconds, so one valid folder per module goes through them for real, and the tests of the other checks skip
them (`run_load_checks=False`) or reuse that result.
"""

import contextlib
import importlib
import io
import json
import logging
import re
import shlex
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import CommitInfo
from huggingface_hub.errors import HfHubHTTPError
from safetensors.torch import load_file, save_file

from conftest import REPO_ROOT
from lqkbert import publishing
from lqkbert.model_card import write_model_card
from lqkbert.publishing import FolderValidationError, validate_folder


REPO_ID = "acme/lq-kbert-tiny"
FAKE_TOKEN = "hf_publishTestToken7f3c9a1e5b"
COMMIT_URL = f"https://huggingface.co/{REPO_ID}/commit/0123456789abcdef0123456789abcdef01234567"
PR_URL = f"https://huggingface.co/{REPO_ID}/discussions/3"


def make_folder(tiny_model_dir, folder):
    """Copy the session's tiny model into `folder`, with the repository's current Hub code and a model card."""
    shutil.copytree(tiny_model_dir, folder)
    for name in publishing.HUB_CODE_FILES:
        if (REPO_ROOT / name).is_file():
            shutil.copyfile(REPO_ROOT / name, folder / name)
    write_model_card(folder, repo_id=REPO_ID)
    return folder


def validate_without_subprocess(folder, **kwargs):
    return validate_folder(folder, run_load_checks=False, **kwargs)


def expected_names(folder):
    return sorted(path.name for path in folder.iterdir())


@pytest.fixture(scope="module")
def valid_folder(tmp_path_factory, tiny_model_dir):
    return make_folder(tiny_model_dir, tmp_path_factory.mktemp("publish") / "model")


@pytest.fixture
def folder(tiny_model_dir, tmp_path):
    return make_folder(tiny_model_dir, tmp_path / "model")


class RecordingHfApi:
    """Stand-ins for the `HfApi` methods that reach the network; `calls` records them with their arguments."""

    def __init__(self, monkeypatch, upload_error=None, pr_url=None):
        self.calls = []
        self.tokens = []
        self.upload_error = upload_error
        self.pr_url = pr_url
        recorder = self
        original_init = huggingface_hub.HfApi.__init__

        def init(api, *args, **kwargs):
            original_init(api, *args, **kwargs)
            recorder.tokens.append(api.token)

        def create_repo(api, repo_id, **kwargs):
            recorder.calls.append(("create_repo", repo_id, kwargs))

        def create_branch(api, repo_id, **kwargs):
            recorder.calls.append(("create_branch", repo_id, kwargs))

        def upload_folder(api, **kwargs):
            recorder.calls.append(("upload_folder", kwargs.pop("repo_id"), kwargs))
            if recorder.upload_error is not None:
                raise recorder.upload_error
            return CommitInfo(commit_url=COMMIT_URL, commit_message=kwargs["commit_message"], commit_description="",
                              oid=COMMIT_URL.rsplit("/", 1)[-1], pr_url=recorder.pr_url)

        monkeypatch.setattr(huggingface_hub.HfApi, "__init__", init)
        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
        monkeypatch.setattr(huggingface_hub.HfApi, "create_branch", create_branch)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)

    @property
    def names(self):
        return [call[0] for call in self.calls]


def make_http_error(message):
    try:
        return HfHubHTTPError(message)
    except TypeError:
        # huggingface_hub >= 1.0 requires the HTTP response; build one from its client library, without a request.
        response_class = huggingface_hub.errors.Response
        client = importlib.import_module(response_class.__module__.split(".")[0])
        request = client.Request("POST", f"https://huggingface.co/api/models/{REPO_ID}/commit/main")
        return HfHubHTTPError(message, response=response_class(500, request=request))


def run_main(argv):
    """Run the command line and return its exit code, stdout, stderr and log output."""
    stdout, stderr, logs = io.StringIO(), io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(logs)
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = publishing.main([str(arg) for arg in argv])
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
    return code, stdout.getvalue(), stderr.getvalue(), logs.getvalue()


def assert_token_absent(*texts, folder=None):
    for text in texts:
        assert FAKE_TOKEN not in text
    if folder is not None:
        for path in Path(folder).rglob("*"):
            if path.is_file():
                assert FAKE_TOKEN.encode() not in path.read_bytes(), f"token written to {path}"


@pytest.fixture(scope="module")
def dry_run(valid_folder):
    """The real command line in dry-run mode on the valid folder, with every check (subprocesses included)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
        api = RecordingHfApi(monkeypatch)
        code, stdout, stderr, logs = run_main([valid_folder, "--repo-id", REPO_ID, "--dry-run"])
    return dict(code=code, stdout=stdout, stderr=stderr, logs=logs, calls=api.calls)


@pytest.fixture
def skip_subprocess_checks(monkeypatch, dry_run):
    """Reuse the module's real loading check (the `dry_run` fixture) instead of rerunning it for each CLI test."""
    assert dry_run["code"] == 0
    monkeypatch.setattr(publishing, "check_loading", lambda plan, **kwargs: [])


# Valid folder, dry run


def test_dry_run_passes_every_check(dry_run):
    assert dry_run["code"] == publishing.EXIT_OK, dry_run["stderr"]
    assert dry_run["stdout"].strip().endswith("Dry run: all checks passed and nothing was uploaded.")
    assert dry_run["stderr"] == ""


def test_dry_run_lists_files_and_sizes(dry_run, valid_folder):
    listed = re.findall(r"^  (\S+)\s+([\d,]+) bytes$", dry_run["stdout"], flags=re.M)

    assert [name for name, _ in listed] == expected_names(valid_folder)
    for name, size in listed:
        assert int(size.replace(",", "")) == (valid_folder / name).stat().st_size
    assert "model.safetensors" in dict(listed)
    assert "pipeline_lqkbert.py" in dict(listed)
    total = sum((valid_folder / name).stat().st_size for name, _ in listed)
    assert f"({len(listed)} files, {total:,} bytes)" in dry_run["stdout"]


def test_dry_run_shows_commit(dry_run):
    stdout = dry_run["stdout"]

    assert f"  repo_id:        {REPO_ID}\n" in stdout
    assert "  revision:       main\n" in stdout
    assert "  create_pr:      False\n" in stdout
    assert "  private:        False (applies only if the repository is created)\n" in stdout
    assert f"  commit_message: {publishing.DEFAULT_COMMIT_MESSAGE}\n" in stdout


def test_dry_run_uploads_nothing(dry_run):
    assert dry_run["calls"] == []


def test_dry_run_never_shows_token(dry_run, valid_folder):
    assert_token_absent(dry_run["stdout"], dry_run["stderr"], dry_run["logs"], folder=valid_folder)


def test_dry_run_needs_no_token(valid_folder, skip_subprocess_checks, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: pytest.fail("a dry run must not read the token"))

    code, stdout, _, _ = run_main([valid_folder, "--repo-id", REPO_ID, "--dry-run"])

    assert code == publishing.EXIT_OK
    assert "nothing was uploaded" in stdout


def test_validate_returns_plan(valid_folder, skip_subprocess_checks):
    plan = validate_folder(valid_folder)

    assert plan.names == expected_names(valid_folder)
    assert all(source == valid_folder / name for name, source in plan.sources.items())


# Validation failures, one broken thing per folder


@pytest.mark.parametrize(
    "removed, message",
    [
        (["config.json"], "config.json is missing from"),
        (["model.safetensors"], "has no safetensors weights (model.safetensors, or model.safetensors.index.json"),
        (["tokenizer_config.json"], "tokenizer_config.json is missing from"),
        (["tokenizer.json", "vocab.txt"], "The tokenizer vocabulary is missing from"),
        (["README.md"], "README.md (the model card) is missing from"),
    ],
)
def test_missing_file_rejected(folder, removed, message):
    for name in removed:
        (folder / name).unlink(missing_ok=True)

    with pytest.raises(FolderValidationError, match=re.escape(message)) as raised:
        validate_folder(folder)

    assert "[loading] Not run because required files are missing" in str(raised.value)


def test_missing_readme_names_fix(folder):
    (folder / "README.md").unlink()

    with pytest.raises(FolderValidationError, match=re.escape(f"python -m lqkbert.model_card {folder}")):
        validate_without_subprocess(folder)


def test_missing_auto_map_rejected(folder):
    config = json.loads((folder / "config.json").read_text())
    del config["auto_map"]
    (folder / "config.json").write_text(json.dumps(config))

    with pytest.raises(FolderValidationError) as raised:
        validate_without_subprocess(folder)

    message = str(raised.value)
    assert "config.json has no auto_map entry for AutoConfig (auto_map is None)" in message
    assert "config.json has no auto_map entry for AutoModel (auto_map is None)" in message
    assert "failed 2 publishing check(s)" in message


def test_auto_map_to_other_repo_rejected(folder):
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"]["AutoModel"] = "langquant/LQ-Kbert-base--modeling_lqkbert.LQKBertModel"
    (folder / "config.json").write_text(json.dumps(config))

    with pytest.raises(FolderValidationError, match="which points to another repository"):
        validate_without_subprocess(folder)


def test_invalid_config_json_rejected(folder):
    (folder / "config.json").write_text("{broken")

    with pytest.raises(FolderValidationError, match=r"config.json is not valid JSON"):
        validate_without_subprocess(folder)


def test_stale_code_rejected(folder):
    with (folder / "modeling_lqkbert.py").open("a", encoding="utf-8") as file:
        file.write("\n# an edit made after training\n")

    with pytest.raises(FolderValidationError) as raised:
        validate_without_subprocess(folder)

    message = str(raised.value)
    assert "[code] modeling_lqkbert.py differs from the repository's current version" in message
    assert "Run again with --sync-code" in message
    assert "configuration_lqkbert.py" not in message


def test_sync_code_fixes_stale_code(folder):
    with (folder / "modeling_lqkbert.py").open("a", encoding="utf-8") as file:
        file.write("\n# an edit made after training\n")
    (folder / "pipeline_lqkbert.py").unlink()

    plan = validate_without_subprocess(folder, sync_code=True)

    for name in publishing.HUB_CODE_FILES:
        assert (folder / name).read_bytes() == (REPO_ROOT / name).read_bytes()
        assert plan.sources[name] == folder / name


def test_sync_code_dry_run_leaves_folder(folder):
    (folder / "pipeline_lqkbert.py").unlink()
    stale = (folder / "modeling_lqkbert.py").read_text(encoding="utf-8") + "\n# stale\n"
    (folder / "modeling_lqkbert.py").write_text(stale, encoding="utf-8")

    plan = validate_without_subprocess(folder, sync_code=True, write=False)

    assert not (folder / "pipeline_lqkbert.py").exists()
    assert (folder / "modeling_lqkbert.py").read_text(encoding="utf-8") == stale
    assert plan.sources["pipeline_lqkbert.py"] == REPO_ROOT / "pipeline_lqkbert.py"
    assert plan.sources["modeling_lqkbert.py"] == REPO_ROOT / "modeling_lqkbert.py"


def test_missing_code_file_rejected(folder):
    (folder / "configuration_lqkbert.py").unlink()

    with pytest.raises(FolderValidationError) as raised:
        validate_folder(folder)

    message = str(raised.value)
    assert "[code] configuration_lqkbert.py is missing from the folder, so loading with trust_remote_code=True" in message
    assert "Run again with --sync-code to copy the repository's current version" in message
    assert "[loading] Not run because required files are missing" in message


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "weights.pth", "tokenizer.pkl", "last.ckpt"])
def test_pickle_file_rejected(folder, name):
    (folder / name).write_bytes(b"\x80\x04K\x01.")

    with pytest.raises(FolderValidationError) as raised:
        validate_without_subprocess(folder)

    message = str(raised.value)
    assert f"[entries] File '{name}' is a pickle-based file, which can run arbitrary code when loaded." in message
    assert "The upload contains only these files, when present: README.md," in message


@pytest.mark.parametrize(
    "entry, is_folder, reason",
    [
        ("checkpoint-500", True, "Folder 'checkpoint-500' is a Trainer checkpoint"),
        ("runs", True, "Folder 'runs' is a folder of training logs"),
        ("__pycache__", True, "Folder '__pycache__' is a Python bytecode cache"),
        ("extra", True, "Folder 'extra' is a subfolder; only files at the top level are published"),
        (".git", True, "Folder '.git' is a hidden file or folder"),
        (".DS_Store", False, "File '.DS_Store' is a hidden file or folder"),
        ("trainer_state.json", False, "File 'trainer_state.json' is Trainer state from training"),
        ("rng_state_0.json", False, "File 'rng_state_0.json' is Trainer state from training"),
        ("train.log", False, "File 'train.log' is a log file"),
        ("push_to_hub.py", False, "File 'push_to_hub.py' is a Python file other than the Hub code files"),
        ("notes.txt", False, "File 'notes.txt' is not on the list of published files"),
    ],
)
def test_stray_entry_rejected(folder, entry, is_folder, reason):
    if is_folder:
        (folder / entry).mkdir()
        (folder / entry / "optimizer.pt").write_bytes(b"state")
    else:
        (folder / entry).write_text("{}")

    with pytest.raises(FolderValidationError, match=re.escape(reason)):
        validate_without_subprocess(folder)


def _write_weights(path, change):
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})


def test_nan_weight_rejected(folder):
    def poison(tensors):
        tensors["head_emo.weight"][0, 0] = float("nan")
        tensors["head_reg.bias"][1] = float("inf")

    _write_weights(folder / "model.safetensors", poison)
    numel = load_file(str(folder / "model.safetensors"))["head_emo.weight"].numel()

    with pytest.raises(FolderValidationError) as raised:
        validate_without_subprocess(folder)

    message = str(raised.value)
    assert "[weights] model.safetensors has tensors with NaN or infinite values: " in message
    assert f"head_emo.weight (1 of {numel} values)" in message
    assert "head_reg.bias (1 of 3 values)" in message


def test_corrupt_weights_rejected(folder):
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")

    with pytest.raises(FolderValidationError, match=r"\[weights\] model.safetensors cannot be read as safetensors"):
        validate_without_subprocess(folder)


def test_sharded_weights_accepted(folder):
    from lqkbert.model_folder import model_class

    model = model_class().from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    model.save_pretrained(folder, max_shard_size="60KB")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1

    plan = validate_without_subprocess(folder, sync_code=True)

    assert set(shards) | {"model.safetensors.index.json"} <= set(plan.names)
    assert "model.safetensors" not in plan.names

    (folder / shards[-1]).unlink()
    with pytest.raises(FolderValidationError, match=re.escape(f"lists shards that are missing from the folder: "
                                                              f"['{shards[-1]}']")):
        validate_without_subprocess(folder)


def test_single_and_sharded_weights_rejected(folder):
    index = {"metadata": {}, "weight_map": {"head_emo.weight": "model.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))

    with pytest.raises(FolderValidationError, match="has both model.safetensors and model.safetensors.index.json"):
        validate_without_subprocess(folder)


def test_invalid_card_metadata_rejected(folder):
    (folder / "README.md").write_text("---\nlicense: [mit\n---\n# Card\n", encoding="utf-8")

    with pytest.raises(FolderValidationError, match=r"\[card\] README.md has invalid YAML metadata"):
        validate_without_subprocess(folder)


def test_every_failure_reported(folder):
    (folder / "optimizer.pt").write_bytes(b"state")
    with (folder / "configuration_lqkbert.py").open("a", encoding="utf-8") as file:
        file.write("\n# stale\n")
    _write_weights(folder / "model.safetensors", lambda tensors: tensors["head_act.bias"].fill_(float("nan")))

    with pytest.raises(FolderValidationError) as raised:
        validate_without_subprocess(folder)

    assert [problem.check for problem in raised.value.problems] == ["code", "entries", "weights"]
    assert "failed 3 publishing check(s), so nothing was uploaded" in str(raised.value)


def test_folder_that_fails_to_load(folder):
    # A hidden size that disagrees with the saved weights passes the file checks but fails in from_pretrained.
    config = json.loads((folder / "config.json").read_text())
    config["hidden_size"] = 48
    (folder / "config.json").write_text(json.dumps(config))

    with pytest.raises(FolderValidationError) as raised:
        validate_folder(folder, timeout=300)

    problems = {problem.check: problem.message for problem in raised.value.problems}
    assert sorted(problems) == ["loading", "snippet"]
    assert problems["loading"].startswith(
        "The folder failed to load offline in a fresh process at AutoModel.from_pretrained (trust_remote_code=True)."
    )
    assert "size mismatch" in problems["loading"] or "shape" in problems["loading"]
    assert problems["snippet"].startswith("The model card's usage code (")
    assert "fails on the folder with exit status 1" in problems["snippet"]


# Checks of the loading report and the snippet output


def _load_report(**changes):
    report = {
        "config_class": "LQKBertConfig",
        "model_class": "LQKBertModel",
        "labels": {
            "logits_senti": ["strong_pos", "weak_pos", "neutral", "weak_neg", "strong_neg"],
            "logits_act": ["buy", "hold", "sell", "avoid", "info_only", "ask_info"],
            "logits_emo": ["greed", "fear", "confidence", "doubt", "anger", "hope", "sarcasm"],
            "pred_reg": ["certainty", "relevance", "toxicity"],
        },
        "vocab_size": 400,
        "tokenizer_size": 400,
        "loading_info": {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []},
        "shapes": {"logits_senti": [2, 5], "logits_act": [2, 6], "logits_emo": [2, 7], "pred_reg": [2, 3]},
        "non_finite_outputs": [],
        "pipeline_result": {"sentiment_strength": "neutral", "action_signal": "hold", "emotions": ["fear"],
                            "certainty": 0.25, "relevance": 1.0, "toxicity": 0.0},
    }
    report.update(changes)
    return report


def test_load_report_valid():
    assert publishing._check_load_report(_load_report()) == []


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model_class": "BertModel"}, "AutoModel loaded BertModel, not LQKBertModel"),
        ({"loading_info": {"missing_keys": ["head_emo.weight"], "unexpected_keys": []}},
         "The weights do not match the model: {'missing_keys': ['head_emo.weight']}"),
        ({"tokenizer_size": 401}, "The tokenizer has 401 tokens but the model's vocab_size is 400"),
        ({"shapes": {"logits_senti": [2, 4], "logits_act": [2, 6], "logits_emo": [2, 7], "pred_reg": [2, 3]}},
         "Output logits_senti has shape [2, 4], expected [2, 5]"),
        ({"non_finite_outputs": ["pred_reg"]}, "The model returns NaN or infinite values in ['pred_reg']"),
    ],
)
def test_load_report_problem(changes, message):
    problems = publishing._check_load_report(_load_report(**changes))

    assert len(problems) == 1
    assert message in problems[0].message


@pytest.mark.parametrize(
    "result, message",
    [
        ([{"sentiment_strength": "neutral"}], "returned [{'sentiment_strength': 'neutral'}], but it must return one"),
        ({"not JSON-serializable": {"certainty": "float32"}}, "JSON-serializable dict"),
        ({"sentiment_strength": "neutral", "action_signal": "hold", "emotions": []},
         "a dict without the keys ['certainty', 'relevance', 'toxicity']"),
        ({"sentiment_strength": "bullish", "action_signal": "hold", "emotions": [], "certainty": 0.1,
          "relevance": 0.2, "toxicity": 0.3}, "sentiment_strength='bullish' is not in ['strong_pos'"),
        ({"sentiment_strength": "neutral", "action_signal": "hold", "emotions": ["joy"], "certainty": 0.1,
          "relevance": 0.2, "toxicity": 0.3}, "emotions=['joy'] is not a list of names from ['greed'"),
        ({"sentiment_strength": "neutral", "action_signal": "hold", "emotions": [], "certainty": 1.5,
          "relevance": 0.2, "toxicity": 0.3}, "certainty=1.5 is not a number in [0, 1]"),
    ],
)
def test_pipeline_result_problem(result, message):
    problems = publishing._check_pipeline_result(result, _load_report()["labels"])

    assert len(problems) == 1
    assert problems[0].check == "pipeline"
    assert message in problems[0].message


def _snippet_file(tmp_path, body):
    path = tmp_path / "snippet.py"
    path.write_text('import json\nrepo_or_dir = "org/name"\ntexts = ["가", "나"]\n' + body, encoding="utf-8")
    return path


def test_snippet_missing_lines_reported(tmp_path, valid_folder):
    snippet = _snippet_file(tmp_path, 'print(json.dumps({"text": texts[0]}))\n')

    problems = publishing.check_card_snippet(valid_folder, snippet_path=snippet)

    assert [problem.message.split(":")[0] for problem in problems] == [
        f"The model card's usage code ({snippet}) printed 1 JSON lines for 2 texts; expected one per text. Its output"
    ]


def test_snippet_points_at_folder(tmp_path, valid_folder):
    body = """
keys = ["text", "pred_sentiment_strength", "pred_action_signal", "pred_emotions", "pred_certainty",
        "pred_relevance", "pred_toxicity"]
for text in texts:
    print(json.dumps(dict(zip(keys, [text, repo_or_dir, "hold", [], 0.0, 0.5, 2.0])), ensure_ascii=False))
"""
    snippet = _snippet_file(tmp_path, body)

    problems = publishing.check_card_snippet(valid_folder, snippet_path=snippet)

    assert len(problems) == 2
    assert "the scores [0.0, 0.5, 2.0] should be numbers in [0, 1]" in problems[0].message
    assert f"'pred_sentiment_strength': {str(valid_folder)!r}" in problems[0].message


def test_snippet_fallback_runs_card_steps(tmp_path, valid_folder, caplog):
    with caplog.at_level(logging.INFO, logger="lqkbert.publishing"):
        problems = publishing.check_card_snippet(valid_folder, snippet_path=tmp_path / "absent.py")

    assert problems == []
    assert f"The model card snippet is not at {tmp_path / 'absent.py'}" in caplog.text


# Upload


def test_upload_arguments(valid_folder, skip_subprocess_checks, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    api = RecordingHfApi(monkeypatch)

    code, stdout, stderr, logs = run_main([valid_folder, "--repo-id", REPO_ID])

    assert code == publishing.EXIT_OK, stderr
    assert api.names == ["create_repo", "upload_folder"]
    assert api.calls[0] == ("create_repo", REPO_ID, {"private": False, "exist_ok": True})
    _, repo_id, upload_kwargs = api.calls[1]
    assert repo_id == REPO_ID
    assert upload_kwargs == {
        "folder_path": valid_folder,
        "allow_patterns": expected_names(valid_folder),
        "revision": None,
        "create_pr": False,
        "commit_message": publishing.DEFAULT_COMMIT_MESSAGE,
    }
    assert api.tokens == [FAKE_TOKEN]
    assert f"Uploaded {len(expected_names(valid_folder))} files to {REPO_ID}: {COMMIT_URL}" in stdout
    assert_token_absent(stdout, stderr, logs, folder=valid_folder)


def test_upload_to_branch_as_pull_request(valid_folder, skip_subprocess_checks, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    api = RecordingHfApi(monkeypatch, pr_url=PR_URL)

    code, stdout, _, _ = run_main([valid_folder, "--repo-id", REPO_ID, "--revision", "tiny-v2", "--create-pr",
                                   "--private", "--commit-message", "Add the tiny test model"])

    assert code == publishing.EXIT_OK
    assert api.names == ["create_repo", "create_branch", "upload_folder"]
    assert api.calls[0] == ("create_repo", REPO_ID, {"private": True, "exist_ok": True})
    assert api.calls[1] == ("create_branch", REPO_ID, {"branch": "tiny-v2", "exist_ok": True})
    upload_kwargs = api.calls[2][2]
    assert upload_kwargs["revision"] == "tiny-v2"
    assert upload_kwargs["create_pr"] is True
    assert upload_kwargs["commit_message"] == "Add the tiny test model"
    assert f"Pull request: {PR_URL}" in stdout


def test_upload_to_main_creates_no_branch(valid_folder, skip_subprocess_checks, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    api = RecordingHfApi(monkeypatch)

    assert run_main([valid_folder, "--repo-id", REPO_ID, "--revision", "main"])[0] == publishing.EXIT_OK
    assert api.names == ["create_repo", "upload_folder"]


@pytest.mark.parametrize(
    "error",
    [
        make_http_error(f"500 Server Error for token {FAKE_TOKEN}"),
        OSError("Connection reset by peer"),
        ConnectionError("Network is unreachable"),
    ],
    ids=["http", "os", "connection"],
)
def test_failed_upload_prints_retry_command(valid_folder, skip_subprocess_checks, monkeypatch, error):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    RecordingHfApi(monkeypatch, upload_error=error)

    code, stdout, stderr, logs = run_main([valid_folder, "--repo-id", REPO_ID, "--revision", "tiny-v2",
                                           "--commit-message", "Add the tiny model"])

    assert code == publishing.EXIT_UPLOAD_FAILED
    assert f"error: Uploading {valid_folder} to {REPO_ID} failed: " in stderr
    command = f"hf upload {REPO_ID} {shlex.quote(str(valid_folder.resolve()))} . --revision tiny-v2 --commit-message "
    assert f"  {command}'Add the tiny model'\n" in stderr
    assert "huggingface-cli upload" in stderr
    assert "Uploaded" not in stdout
    assert_token_absent(stdout, stderr, logs, folder=valid_folder)


def test_client_transport_error_is_upload_failure(valid_folder, skip_subprocess_checks, monkeypatch):
    client_error = getattr(huggingface_hub.errors, "HTTPError", None)
    if client_error is None or issubclass(client_error, OSError):
        pytest.skip("this huggingface_hub raises OSError subclasses for transport errors (covered above)")
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    RecordingHfApi(monkeypatch, upload_error=client_error("timed out"))

    assert run_main([valid_folder, "--repo-id", REPO_ID])[0] == publishing.EXIT_UPLOAD_FAILED


def test_retry_command_quotes_arguments():
    command = publishing.retry_command(Path("/models/my model"), repo_id=REPO_ID, private=True, revision="v2",
                                       create_pr=True, commit_message="Fix 'labels'")

    assert shlex.split(command) == ["hf", "upload", REPO_ID, "/models/my model", ".", "--revision", "v2", "--private",
                                    "--create-pr", "--commit-message", "Fix 'labels'"]


def test_missing_token_stops_before_checks(valid_folder, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    monkeypatch.setattr(publishing, "validate_folder", lambda *args, **kwargs: pytest.fail("validated without token"))
    api = RecordingHfApi(monkeypatch)

    code, stdout, stderr, _ = run_main([valid_folder, "--repo-id", REPO_ID])

    assert code == publishing.EXIT_USAGE
    assert "error: No Hugging Face token found, so nothing can be uploaded." in stderr
    assert "`hf auth login`" in stderr
    assert "`huggingface-cli login`" in stderr
    assert "HF_TOKEN" in stderr
    assert api.calls == []


def test_validation_failure_uploads_nothing(folder, skip_subprocess_checks, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    api = RecordingHfApi(monkeypatch)
    (folder / "training_args.bin").write_bytes(b"state")

    code, stdout, stderr, logs = run_main([folder, "--repo-id", REPO_ID])

    assert code == publishing.EXIT_VALIDATION_FAILED
    assert api.calls == []
    assert "File 'training_args.bin' is a pickle-based file" in stderr
    assert_token_absent(stdout, stderr, logs, folder=folder)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--repo-id", "lq-kbert"], "Invalid --repo-id 'lq-kbert': use ORG/NAME"),
        (["--repo-id", "acme/lq/kbert"], "Invalid --repo-id 'acme/lq/kbert': use ORG/NAME"),
        (["--repo-id", "acme/lq kbert"], "Invalid --repo-id 'acme/lq kbert': "),
        (["--repo-id", REPO_ID, "--timeout", "0"], "Invalid --timeout 0: use a positive number of seconds."),
    ],
)
def test_usage_error_exit_code(valid_folder, argv, message):
    code, _, stderr, _ = run_main([valid_folder, *argv, "--dry-run"])

    assert code == publishing.EXIT_USAGE
    assert message in stderr


def test_missing_folder_is_usage_error(tmp_path):
    code, _, stderr, _ = run_main([tmp_path / "absent", "--repo-id", REPO_ID, "--dry-run"])

    assert code == publishing.EXIT_USAGE
    assert f"Model folder {tmp_path / 'absent'} does not exist or is not a folder." in stderr


def test_argparse_usage_error_exit_code(valid_folder):
    with pytest.raises(SystemExit) as raised:
        run_main([valid_folder])

    assert raised.value.code == publishing.EXIT_USAGE


def test_card_for_other_repo_warns(folder, skip_subprocess_checks, caplog):
    write_model_card(folder, repo_id="someone/else")

    with caplog.at_level(logging.WARNING, logger="lqkbert.publishing"):
        code, _, _, _ = run_main([folder, "--repo-id", REPO_ID, "--dry-run"])

    assert code == publishing.EXIT_OK
    assert f"README.md never mentions {REPO_ID}" in caplog.text


def test_script_runs_from_clone(valid_folder, tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "push_to_hub.py"), str(valid_folder), "--repo-id", "not-a-repo-id"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )

    assert result.returncode == publishing.EXIT_USAGE
    assert "Invalid --repo-id 'not-a-repo-id'" in result.stderr


def test_sync_code_option_in_dry_run(folder, skip_subprocess_checks):
    stale = (folder / "modeling_lqkbert.py").read_text(encoding="utf-8") + "\n# stale\n"
    (folder / "modeling_lqkbert.py").write_text(stale, encoding="utf-8")

    code, stdout, stderr, _ = run_main([folder, "--repo-id", REPO_ID, "--dry-run", "--sync-code"])

    assert code == publishing.EXIT_OK, stderr
    assert f"bytes  (from {REPO_ROOT / 'modeling_lqkbert.py'}, --sync-code)" in stdout
    assert (folder / "modeling_lqkbert.py").read_text(encoding="utf-8") == stale


def test_sync_code_option_before_upload(folder, skip_subprocess_checks, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    api = RecordingHfApi(monkeypatch)
    (folder / "modeling_lqkbert.py").write_text("# stale\n", encoding="utf-8")

    assert run_main([folder, "--repo-id", REPO_ID])[0] == publishing.EXIT_VALIDATION_FAILED
    assert api.calls == []

    assert run_main([folder, "--repo-id", REPO_ID, "--sync-code"])[0] == publishing.EXIT_OK
    assert (folder / "modeling_lqkbert.py").read_bytes() == (REPO_ROOT / "modeling_lqkbert.py").read_bytes()
    assert api.names == ["create_repo", "upload_folder"]
