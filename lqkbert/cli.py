"""Command line: `python -m lqkbert COMMAND ...` (or `lqkbert COMMAND ...` once the package is installed).

Each command lives in the module of its concept and exposes `main(argv) -> int`; modules are imported only when their
command runs, so `--help` and the data commands start without loading torch.
"""

import importlib
import logging
import sys


COMMANDS = {
    "data": ("lqkbert.data", "validate, summarize and split labeled JSONL or CSV files"),
    "train": ("lqkbert.training", "fine-tune a BERT checkpoint into an LQ-KBERT model folder"),
    "evaluate": ("lqkbert.evaluation", "score a model folder on a labeled file, per head"),
    "predict": ("lqkbert.inference", "batch inference from JSONL, CSV or text to JSONL"),
    "export": ("lqkbert.export", "export a model folder to ONNX"),
}


def _usage():
    lines = ["usage: python -m lqkbert COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10}{summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "Run `python -m lqkbert COMMAND --help` for the options of one command."]
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2

    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"Unknown command {command!r}; choose one of {sorted(COMMANDS)}.\n\n{_usage()}", file=sys.stderr)
        return 2

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(rest)
