"""Steps of `make demo` that have no command of their own: building a small base encoder offline, and showing the
model card's examples.

klue/bert-base cannot be downloaded on a machine without network access, so the demo trains a cased WordPiece
vocabulary on the corpus and pre-trains a small BERT encoder from scratch with masked-language modelling (MLM) on the
training texts. The result is a plain BERT folder, the same kind of input as klue/bert-base, for `lqkbert train`.

    python -m lqkbert.demo base --output-dir build/demo-base
    python -m lqkbert.demo examples --model build/demo-model
"""

import argparse
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

from .data import load_valid_rows
from .model_folder import replace_folder


logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"


def build_base(output_dir, train_files, vocab_size=6000, hidden_size=192, num_layers=3, num_heads=3,
               mlm_epochs=15, batch_size=64, learning_rate=5e-4, seed=0):
    """Train a WordPiece vocabulary and an MLM-pre-trained BERT encoder on the texts of `train_files`.

    The loop computes the vocabulary projection only at masked positions (15% of tokens), which is most of the cost
    of a small encoder's MLM step, so pre-training stays within a few minutes on a 2-core CPU.
    """
    import tempfile

    import torch
    from tqdm.auto import tqdm
    from transformers import BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling, set_seed
    from transformers import get_linear_schedule_with_warmup

    from .tokenizer import train_wordpiece

    texts = [record["text"] for record in load_valid_rows(train_files)]
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    set_seed(seed)

    with tempfile.TemporaryDirectory(prefix=f".{output_dir.name}.partial-", dir=output_dir.parent) as staging:
        staging = Path(staging)
        tokenizer = train_wordpiece(texts, staging, vocab_size=vocab_size, min_frequency=2)
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=4 * hidden_size,
            max_position_embeddings=512,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = BertForMaskedLM(config).train()

        encoded = [{"input_ids": ids} for ids in tokenizer(texts, truncation=True, max_length=128)["input_ids"]]
        collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, return_tensors="pt")
        loader = torch.utils.data.DataLoader(encoded, batch_size=batch_size, shuffle=True, collate_fn=collator,
                                             generator=torch.Generator().manual_seed(seed))
        total_steps = int(mlm_epochs * len(loader))
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
        schedule = get_linear_schedule_with_warmup(optimizer, int(0.06 * total_steps), total_steps)

        progress = tqdm(total=total_steps, desc="MLM pre-training", unit="step")
        step = 0
        while step < total_steps:
            for batch in loader:
                if step == total_steps:
                    break
                hidden = model.bert(input_ids=batch["input_ids"],
                                    attention_mask=(batch["input_ids"] != tokenizer.pad_token_id).long())[0]
                masked = batch["labels"] != -100
                logits = model.cls(hidden[masked])
                loss = torch.nn.functional.cross_entropy(logits, batch["labels"][masked])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                step += 1
                progress.update(1)
                progress.set_postfix(loss=f"{loss.item():.3f}")
        progress.close()

        model.save_pretrained(staging / "base")
        tokenizer.save_pretrained(staging / "base")
        replace_folder(staging / "base", output_dir)
    logger.info("Base encoder ready: %s (%d texts, vocabulary %d, %d MLM steps)", output_dir, len(texts),
                len(tokenizer), total_steps)
    return output_dir


def run_card_snippet(model_dir):
    """Run the model card's usage code against `model_dir`, changing only `repo_or_dir`; return its exit code."""
    snippet_path = REFERENCE_DIR / "model_card_snippet.py"
    if snippet_path.is_file():
        snippet = snippet_path.read_text(encoding="utf-8")
        source = str(snippet_path)
    else:
        snippet = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
        snippet = re.search(r"```python\n(import torch, json.*?)```", snippet, flags=re.S).group(1)
        source = "README.md"
    snippet, count = re.subn(r'^repo_or_dir = "[^"]*"', f"repo_or_dir = {str(model_dir)!r}", snippet, flags=re.M)
    if count != 1:
        raise ValueError(f"Expected one `repo_or_dir = \"...\"` line in {source}, found {count}.")

    print(f"# {source}, with repo_or_dir = {str(model_dir)!r}", flush=True)
    # Closed stdin: transformers 5.x asks whether to run custom code when AutoTokenizer reads config.json.
    result = subprocess.run([sys.executable, "-c", snippet], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            text=True)
    for line in result.stdout.splitlines():
        if "{" in line:
            print(line[line.index("{"):])
    return result.returncode


def show_card_examples(model_dir):
    """Print the card's five table examples with predicted and expected labels side by side."""
    from transformers import pipeline

    path = REFERENCE_DIR / "card_examples.jsonl"
    if not path.is_file():
        print(f"# {path} not found: skipping the card's table examples")
        return 0
    examples = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    classify = pipeline("lqkbert", model=str(model_dir), trust_remote_code=True)
    predictions = classify([example["text"] for example in examples])
    print("\n# The model card's table examples: predicted (expected)")
    print("| text | sentiment_strength | action_signal |")
    print("|---|---|---|")
    matches = 0
    for example, predicted in zip(examples, predictions):
        sentiment_ok = predicted["sentiment_strength"] == example["sentiment_strength"]
        action_ok = predicted["action_signal"] == example["action_signal"]
        matches += sentiment_ok + action_ok
        print(f"| {example['text']} | {predicted['sentiment_strength']} ({example['sentiment_strength']}) "
              f"{'ok' if sentiment_ok else 'x'} | {predicted['action_signal']} ({example['action_signal']}) "
              f"{'ok' if action_ok else 'x'} |")
    print(f"{matches} of {2 * len(examples)} labels match the card.")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lqkbert.demo", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    base = commands.add_parser("base", help="build the small MLM-pre-trained BERT encoder used by the demo")
    base.add_argument("--output-dir", required=True, help="folder for the base encoder and its tokenizer")
    base.add_argument("--train-file", nargs="+", default=["data/train.jsonl"], help="texts for vocabulary and MLM")
    base.add_argument("--mlm-epochs", type=float, default=15, help="MLM pre-training epochs (default: %(default)s)")
    base.add_argument("--hidden-size", type=int, default=192, help="encoder width (default: %(default)s)")
    base.add_argument("--num-layers", type=int, default=3, help="encoder layers (default: %(default)s)")

    examples = commands.add_parser("examples", help="run the card's snippet and table examples against a model")
    examples.add_argument("--model", required=True, help="model folder")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "base":
        build_base(args.output_dir, args.train_file, hidden_size=args.hidden_size, num_layers=args.num_layers,
                   num_heads=max(1, args.hidden_size // 64), mlm_epochs=args.mlm_epochs)
        return 0

    code = run_card_snippet(Path(args.model))
    if code != 0:
        print(f"error: the card's snippet exited with {code}", file=sys.stderr)
        return code
    return show_card_examples(Path(args.model))


if __name__ == "__main__":
    sys.exit(main())
