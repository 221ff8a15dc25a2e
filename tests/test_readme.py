"""The READMEs: their Python examples run against a saved folder, and their commands parse with today's options."""

import re
import shlex

import pytest

from conftest import REPO_ROOT, json_lines, run_python


READMES = [REPO_ROOT / "README.md", REPO_ROOT / "README.ko.md"]
CARD_KEYS = ["text", "sentiment_strength", "action_signal", "emotions", "certainty", "relevance", "toxicity"]


def code_blocks(path, language):
    text = path.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def commands(path):
    """Return each command of the bash blocks as a list of words, line continuations joined."""
    result = []
    for block in code_blocks(path, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                result.append(shlex.split(line))
    return result


@pytest.mark.parametrize("readme", READMES, ids=lambda path: path.name)
def test_python_examples_run(readme, tiny_model_dir, tmp_path):
    blocks = code_blocks(readme, "python")
    assert len(blocks) == 2

    for block in blocks:
        assert "LangQuant/LQ-Kbert-base" in block
        stdout = run_python(block.replace("LangQuant/LQ-Kbert-base", str(tiny_model_dir)), tmp_path)
        assert stdout.strip()

    results = json_lines(run_python(blocks[0].replace("LangQuant/LQ-Kbert-base", str(tiny_model_dir)), tmp_path))
    assert len(results) == 2
    for result in results:
        assert list(result) == CARD_KEYS


def test_readmes_share_commands():
    english, korean = (commands(path) for path in READMES)

    assert english == korean


def parser_for(module_command):
    """Return a function that parses the arguments of `python -m lqkbert COMMAND` or of `push_to_hub.py`."""
    from lqkbert import data, evaluation, export, inference, publishing, training

    parsers = {
        "data": data.build_parser,
        "evaluate": evaluation.build_parser,
        "predict": inference.build_parser,
        "export": export.build_parser,
        "push_to_hub.py": publishing.build_parser,
    }
    if module_command == "train":
        return training.parse_arguments
    return parsers[module_command]().parse_args


def documented_invocations():
    """Yield `(command, arguments)` for each documented call of our tools, after any `... |` prefix."""
    for words in commands(READMES[0]):
        if "|" in words:
            words = words[words.index("|") + 1:]
        if not words[0].endswith("python") or "..." in words:
            continue
        if words[1:3] == ["-m", "lqkbert"]:
            yield words[3], words[4:]
        elif words[1] == "push_to_hub.py":
            yield "push_to_hub.py", words[2:]


def test_documented_commands_parse():
    invocations = list(documented_invocations())

    assert len(invocations) >= 10
    for command, arguments in invocations:
        parser_for(command)(arguments)


def test_make_targets_exist():
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    for words in commands(READMES[0]):
        if words[0] == "make":
            target = words[1]
            assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), target
