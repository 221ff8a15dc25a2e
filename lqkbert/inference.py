"""Batch inference: `python -m lqkbert predict` turns JSONL, CSV or plain text into one JSON result per input.

Every input is read and checked before the model loads, so a bad line stops the run before any model work (or is
skipped with `--skip-invalid`). Texts are then tokenized, sorted by token count into batches, run through PyTorch
(bfloat16 autocast where the CPU supports it natively, float32 or dynamic int8) or an exported ONNX model, and the
results are written in input order. Input checks, sentence splitting, batching and decoding come from
`pipeline_lqkbert.py`, so each result is what `pipeline("lqkbert", ...)` returns for the same logits.
"""

import argparse
import contextlib
import csv
import io
import json
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from .model_folder import TOKENIZER_SETTINGS, config_class, model_class
from .remote_code import import_hub_module


logger = logging.getLogger(__name__)

FORMATS = ("jsonl", "csv", "text")
FORMAT_BY_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".txt": "text", ".text": "text"}
DTYPES = ("auto", "float32", "bfloat16", "int8")
OUTPUT_NAMES = ("logits_senti", "logits_act", "logits_emo", "pred_reg")
ONNX_FILE_NAME = "model.onnx"
DEFAULT_BATCH_SIZE = 64
# Batches per window: the texts of a window are tokenized, sorted by length and run together. Sorting windows instead
# of the whole input keeps memory bounded on inputs of millions of lines.
WINDOW_BATCHES = 64
MAX_REPORTED_INVALID = 20


@dataclass
class InputRecord:
    """One valid input: its 1-based line number, its `id` (None when the input has none) and its checked text."""

    line: int
    id: Any
    text: str


@dataclass
class InvalidLine:
    """One input line that cannot be classified, with the reason."""

    line: int
    reason: str


def detect_format(path, requested_format=None):
    """Return the input format: `requested_format` when set, otherwise the one of the file extension of `path`."""
    if requested_format is not None:
        return requested_format
    if path == "-":
        raise ValueError("Reading stdin needs --format: pass --format jsonl, --format csv or --format text.")

    suffix = Path(path).suffix.lower()
    if suffix not in FORMAT_BY_SUFFIX:
        raise ValueError(
            f"Cannot tell the format of {path} from its extension {suffix!r}: use one of "
            f"{sorted(FORMAT_BY_SUFFIX)} or pass --format jsonl, csv or text."
        )
    return FORMAT_BY_SUFFIX[suffix]


def read_inputs(path, input_format, text_field="text", id_field="id"):
    """Read and check every input of `path` (`"-"` for stdin); return `(records, invalid_lines)`.

    JSONL lines are objects with a string `text_field` and an optional `id_field`. CSV files have a header with a
    `text_field` column and an optional `id_field` column. Text files contain one text a line. Blank lines are not
    inputs. Each text goes through `prepare_text`, so the records carry the text that the model reads.
    """
    prepare_text = import_hub_module("pipeline_lqkbert").prepare_text
    with _open_binary(path) as stream:
        if input_format == "csv":
            rows = _csv_rows(stream, path, text_field, id_field)
        elif input_format == "jsonl":
            rows = _jsonl_rows(stream, text_field, id_field)
        elif input_format == "text":
            rows = _text_rows(stream)
        else:
            raise ValueError(f"Invalid input format {input_format!r}: use one of {list(FORMATS)}.")

        records, invalid = [], []
        for line, record_id, text, reason in rows:
            if reason is None:
                try:
                    text = prepare_text(text)
                except (TypeError, ValueError) as error:
                    reason = _short_reason(error)
            if reason is None:
                records.append(InputRecord(line, record_id, text))
            else:
                invalid.append(InvalidLine(line, reason))
    return records, invalid


@contextlib.contextmanager
def _open_binary(path):
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        stream = open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"Input file {path} does not exist.") from None
    with stream:
        yield stream


def _short_reason(error):
    # `prepare_text` messages start with "Invalid input: "; the line number replaces that prefix in reports.
    return str(error).removeprefix("Invalid input: ")


def _decoded_lines(stream):
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            yield number, None, f"not valid UTF-8 ({error})"
            continue
        if number == 1:
            line = line.removeprefix("\ufeff")
        yield number, line.rstrip("\r\n"), None


def _jsonl_rows(stream, text_field, id_field):
    for number, line, reason in _decoded_lines(stream):
        if reason is not None:
            yield number, None, None, reason
            continue
        if not line.strip():
            continue

        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            yield number, None, None, f"invalid JSON ({error})"
            continue
        if not isinstance(value, dict):
            yield number, None, None, f"expected a JSON object with a {text_field!r} field, got {type(value).__name__}"
            continue
        if text_field not in value:
            yield number, value.get(id_field), None, f"missing {text_field!r} field (found {sorted(value)[:10]})"
            continue
        yield number, value.get(id_field), value[text_field], None


def _text_rows(stream):
    for number, line, reason in _decoded_lines(stream):
        if reason is not None:
            yield number, None, None, reason
        elif line.strip():
            yield number, None, line, None


def _csv_rows(stream, path, text_field, id_field):
    text_stream = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        reader = csv.DictReader(text_stream)
        if reader.fieldnames is None or text_field not in reader.fieldnames:
            raise ValueError(
                f"The CSV input {path} has no {text_field!r} column in its header {reader.fieldnames}; add one or "
                "name the text column with --text-field."
            )
        last_line = 1
        for row in reader:
            first_line, last_line = last_line + 1, reader.line_num
            if None in row:
                num_fields = len(reader.fieldnames) + len(row[None])
                yield first_line, row.get(id_field), None, f"{num_fields} fields, but the header has {len(reader.fieldnames)}"
                continue
            text = row.get(text_field)
            if text is None:
                yield first_line, row.get(id_field), None, f"missing {text_field!r} value"
                continue
            yield first_line, row.get(id_field), text, None
    except UnicodeDecodeError as error:
        raise ValueError(f"The CSV input {path} is not valid UTF-8 ({error}); convert it to UTF-8 first.") from None
    finally:
        # The wrapper would close the stream it wraps, which may be stdin.
        text_stream.detach()


def cpu_supports_bf16():
    """Return whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), so autocast to it is faster."""
    for check_name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, check_name, None)
        if check is not None and check():
            return True

    # NOTE: the checks above are private torch functions; the Linux CPU flags are the fallback where they are missing.
    try:
        cpu_info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in cpu_info.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_dtype(requested):
    """Return the compute dtype for `requested` (one of `DTYPES`); `"auto"` picks bfloat16 only where it is native."""
    if requested not in DTYPES:
        raise ValueError(f"Invalid dtype {requested!r}: use one of {list(DTYPES)}.")
    if requested != "auto":
        if requested == "bfloat16" and not cpu_supports_bf16():
            logger.warning("This CPU has no native bfloat16 (AVX512-BF16 or AMX); bfloat16 runs emulated and slower.")
        return requested

    if cpu_supports_bf16():
        logger.info("Using bfloat16 autocast: this CPU computes bfloat16 natively. Pass --dtype float32 to turn it off.")
        return "bfloat16"
    logger.info("Using float32: this CPU has no native bfloat16 (AVX512-BF16 or AMX).")
    return "float32"


class TorchRunner:
    """Run batches through a PyTorch LQ-KBERT model with SDPA attention in float32, bfloat16 autocast or int8.

    For bfloat16 and int8 the given model is converted in place.
    """

    def __init__(self, model, dtype="float32"):
        if dtype not in ("float32", "bfloat16", "int8"):
            raise ValueError(f"Invalid dtype {dtype!r} for PyTorch: use float32, bfloat16 or int8.")
        model = model.eval()
        if dtype == "int8":
            # Dynamic quantization: int8 weights for every nn.Linear, activations quantized per batch at run time.
            # NOTE: torch 2.13 warns that torch.ao.quantization is deprecated in favour of torchao's `quantize_`;
            # moving there needs torchao as a dependency.
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            _release_memory_map(model)
        elif dtype == "bfloat16":
            _cast_linear_layers_to_bf16(model)
            _release_memory_map(model)
        self.model = model
        self.dtype = dtype
        self.config = model.config

    @classmethod
    def from_folder(cls, name_or_path, dtype="float32", attn_implementation="sdpa"):
        """Load a model folder or Hub repository with this repository's model code, not the copy stored with it."""
        model = model_class().from_pretrained(name_or_path, attn_implementation=attn_implementation)
        return cls(model, dtype)

    def run_context(self):
        """Return the context for a window of batches: inference mode, and bfloat16 autocast when selected."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.dtype == "bfloat16":
            stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
        return stack

    def __call__(self, batch):
        inputs = {name: torch.from_numpy(values) for name, values in batch.items()}
        outputs = self.model(**inputs)
        return tuple(outputs[name].float().numpy() for name in OUTPUT_NAMES)


def _cast_linear_layers_to_bf16(model):
    # Autocast runs every nn.Linear in bfloat16 but recasts its float32 weights on every call, because torch 2.13
    # keeps no cached copy under inference mode. Casting them once gives the same outputs, bit for bit, about 5% faster
    # on the benchmark's CPU, with half the memory for these weights. Embeddings and LayerNorm stay float32.
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(torch.bfloat16)


def _release_memory_map(model):
    # transformers 5.x maps the safetensors file into memory, and the float32 tensors left after a conversion are views
    # of that map, which keeps the pages of the replaced float32 weights resident. Copies of them let the map go.
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.dtype == torch.float32:
                tensor.data = tensor.data.clone()


class OnnxRunner:
    """Run batches through an ONNX model written by `python -m lqkbert export`, with onnxruntime on the CPU."""

    def __init__(self, onnx_path, threads=None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        # Warnings stay off: onnxruntime warns on every load that the optional `token_type_ids` input (a graph input
        # with a zero initializer as its default) is not folded as a constant, which is what the export intends.
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_names = {item.name for item in self.session.get_inputs()}
        self.input_names |= {item.name for item in self.session.get_overridable_initializers()}

    def run_context(self):
        return contextlib.nullcontext()

    def __call__(self, batch):
        feeds = {name: values for name, values in batch.items() if name in self.input_names}
        return tuple(self.session.run(list(OUTPUT_NAMES), feeds))


def load_onnx(path, threads=None):
    """Return `(runner, config, tokenizer)` for an exported ONNX file, or a folder holding `model.onnx`."""
    path = Path(path)
    onnx_path = path / ONNX_FILE_NAME if path.is_dir() else path
    if not onnx_path.is_file():
        raise FileNotFoundError(f"No ONNX model at {onnx_path}: pass a file or folder written by `python -m lqkbert export`.")
    folder = onnx_path.parent
    config = config_class().from_pretrained(folder)
    return OnnxRunner(onnx_path, threads), config, load_folder_tokenizer(folder, config)


def load_folder_tokenizer(name_or_path, config):
    """Load the tokenizer of a model folder or repository without running its custom code.

    Passing the config keeps `AutoTokenizer` from reading `config.json`, whose `auto_map` would otherwise make
    transformers 5.x ask on stdin whether to run the custom code, and consume input lines read from stdin.
    """
    return AutoTokenizer.from_pretrained(name_or_path, config=config, **TOKENIZER_SETTINGS)


class BatchPredictor:
    """Classify prepared texts in length-sorted batches and return the pipeline's result dicts in input order.

    `runner` turns a batch (a dict of int64 arrays `input_ids`, `attention_mask`, `token_type_ids`) into the four head
    outputs; `TorchRunner` and `OnnxRunner` do. `long_text` and `return_scores` mean what they mean in the pipeline.
    """

    def __init__(self, runner, config, tokenizer, batch_size=DEFAULT_BATCH_SIZE, long_text="truncate", return_scores=False):
        self.hub = import_hub_module("pipeline_lqkbert")
        if long_text not in self.hub.LONG_TEXT_MODES:
            raise ValueError(f"Invalid long_text={long_text!r}: use one of {list(self.hub.LONG_TEXT_MODES)}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Invalid batch_size={batch_size!r}: use a positive integer, such as {DEFAULT_BATCH_SIZE}.")
        self.runner = runner
        self.config = config
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.long_text = long_text
        self.return_scores = return_scores
        self.max_length = config.max_text_length
        self.num_long_texts = 0
        self.num_truncated = 0

    def predict(self, texts, progress=None):
        """Return one result dict per text of `texts` (already checked by `prepare_text`), in the same order."""
        return list(self.iter_predictions(texts, progress))

    def iter_predictions(self, texts, progress=None):
        """Yield one result dict per text of `texts`, in order, one window of texts at a time.

        Each window of `batch_size * WINDOW_BATCHES` texts is sorted and run as a whole, so memory stays bounded and
        the caller can write results while later windows run. `progress` (a tqdm bar) advances by finished texts.
        """
        window = self.batch_size * WINDOW_BATCHES
        for start in range(0, len(texts), window):
            # The context closes before the results are yielded, so the caller's code never runs under autocast.
            with self.runner.run_context():
                results = self._predict_window(texts[start:start + window], progress)
            yield from results

    def _predict_window(self, texts, progress):
        segments, counts = self._segments(texts)
        encodings = self.tokenizer(segments, truncation=True, max_length=self.max_length)
        input_ids = encodings["input_ids"]
        token_type_ids = encodings.get("token_type_ids")
        truncated = [
            self.hub.is_truncated(self.tokenizer, segment, len(ids), self.max_length)
            for segment, ids in zip(segments, input_ids)
        ]

        rows = [None] * len(segments)
        for batch_indices in self.hub.length_sorted_batches([len(ids) for ids in input_ids], self.batch_size):
            batch = self._pad([input_ids[index] for index in batch_indices], token_type_ids, batch_indices)
            outputs = [np.asarray(values) for values in self.runner(batch)]
            for position, index in enumerate(batch_indices):
                rows[index] = [values[position] for values in outputs]
            if progress is not None:
                progress.update(sum(1 for index in batch_indices if index in counts.last_segments))

        head_outputs = [np.stack([row[head] for row in rows]) for head in range(len(OUTPUT_NAMES))]
        truncated_per_text = [any(truncated[index] for index in indices) for indices in counts.segment_indices]
        self.num_truncated += sum(truncated_per_text)
        return self.hub.decode_predictions(
            self.config,
            *head_outputs,
            truncated=truncated_per_text,
            segments=counts.per_text if self.long_text == "split" else None,
            weights=[float(len(segment)) for segment in segments],
            return_scores=self.return_scores,
        )

    def _segments(self, texts):
        segments, per_text, segment_indices = [], [], []
        for text in texts:
            if len(text) > self.max_length:
                self.num_long_texts += 1
            if self.long_text == "split" and len(text) > self.max_length:
                pieces = self.hub.split_text(text, self.max_length)
            else:
                pieces = [text]
            segment_indices.append(range(len(segments), len(segments) + len(pieces)))
            segments.extend(pieces)
            per_text.append(len(pieces))
        return segments, _SegmentCounts(per_text, segment_indices)

    def _pad(self, sequences, token_type_ids, batch_indices):
        length = max(len(ids) for ids in sequences)
        input_ids = np.full((len(sequences), length), self.tokenizer.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(sequences), length), dtype=np.int64)
        token_types = np.zeros((len(sequences), length), dtype=np.int64)
        for row, ids in enumerate(sequences):
            input_ids[row, :len(ids)] = ids
            attention_mask[row, :len(ids)] = 1
            if token_type_ids is not None:
                token_types[row, :len(ids)] = token_type_ids[batch_indices[row]]
        return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_types}


class _SegmentCounts:
    def __init__(self, per_text, segment_indices):
        self.per_text = per_text
        self.segment_indices = segment_indices
        # A text counts as done for the progress bar when its last segment has run.
        self.last_segments = {indices[-1] for indices in segment_indices}


@contextlib.contextmanager
def open_output(path):
    """Yield a text stream for the results: stdout for None or `"-"`, else a temporary file renamed to `path` only
    when the block completes, so that a failed or interrupted run leaves no partial file (and keeps an old one)."""
    if path is None or str(path) == "-":
        yield sys.stdout
        sys.stdout.flush()
        return

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            yield stream
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def format_result(record, result):
    """Return the output line of one input: its `id` (or its 1-based `line` when it has none) and the result."""
    key = {"line": record.line} if record.id is None else {"id": record.id}
    return json.dumps({**key, **result}, ensure_ascii=False)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m lqkbert predict",
        description=(
            "Classify texts with an LQ-KBERT model and write one JSON line per input: its id (or line number) and "
            "the pipeline's fields. All input is checked before the model loads."
        ),
    )
    parser.add_argument("input", help="input file, or - for stdin")
    parser.add_argument("--model", help="model folder or Hub repository id (not needed with --onnx)")
    parser.add_argument("--onnx", help="ONNX file or folder written by `python -m lqkbert export`; runs onnxruntime")
    parser.add_argument("--format", choices=FORMATS, help="input format (default: from the file extension)")
    parser.add_argument("--output", help="output JSONL file (default: stdout); written atomically")
    parser.add_argument("--text-field", default="text", help="JSON field or CSV column of the text (default: text)")
    parser.add_argument("--id-field", default="id", help="JSON field or CSV column of the id (default: id)")
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
        help=f"sentences per forward pass, sorted by length (default: {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--dtype", choices=DTYPES, default="auto",
        help="PyTorch compute: auto (bfloat16 autocast on CPUs with native bfloat16, else float32), float32, "
        "bfloat16, or int8 (dynamic quantization of the linear layers)",
    )
    parser.add_argument("--threads", type=int, help="CPU threads for torch or onnxruntime (default: their own)")
    parser.add_argument(
        "--long-text", choices=("truncate", "split"), default="truncate",
        help="texts over the config's max_text_length (200 characters): truncate at 200 tokens as the model card "
        "does and mark truncated=true, or split into sentences and average their predictions",
    )
    parser.add_argument("--return-scores", action="store_true", help="also write the probabilities of every label")
    parser.add_argument(
        "--skip-invalid", action="store_true",
        help="skip invalid lines (reported on stderr) instead of stopping before the model loads",
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _run(args):
    if args.model is None and args.onnx is None:
        raise ValueError("Nothing to run: pass --model DIR_OR_REPO, or --onnx PATH for an exported model.")
    if args.batch_size < 1:
        raise ValueError(f"Invalid --batch-size {args.batch_size}: use a positive integer, such as {DEFAULT_BATCH_SIZE}.")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"Invalid --threads {args.threads}: use a positive number of threads.")

    input_format = detect_format(args.input, args.format)
    records, invalid = read_inputs(args.input, input_format, args.text_field, args.id_field)
    num_read = len(records) + len(invalid)
    _report_invalid(invalid)
    if invalid and not args.skip_invalid:
        print(
            f"Stopped before loading the model: {len(invalid)} of {num_read} inputs are invalid. Fix them, or pass "
            "--skip-invalid to skip them.",
            file=sys.stderr,
        )
        return 1

    predictor = _load_predictor(args)
    texts = [record.text for record in records]
    num_written = 0
    with tqdm(total=len(records), unit="text", disable=not sys.stderr.isatty()) as progress:
        with open_output(args.output) as stream:
            for record, result in zip(records, predictor.iter_predictions(texts, progress)):
                stream.write(format_result(record, result) + "\n")
                num_written += 1

    if predictor.num_long_texts:
        logger.warning(
            "%d texts are longer than max_text_length=%d characters, the length the model was trained for; "
            "%d of them had tokens cut off (truncated=true). --long-text split classifies them sentence by sentence.",
            predictor.num_long_texts, predictor.max_length, predictor.num_truncated,
        )
    print(f"Read {num_read} inputs, wrote {num_written} results, skipped {len(invalid)} invalid.", file=sys.stderr)
    return 0


def _report_invalid(invalid):
    for item in invalid[:MAX_REPORTED_INVALID]:
        print(f"line {item.line}: {item.reason}", file=sys.stderr)
    if len(invalid) > MAX_REPORTED_INVALID:
        print(f"... and {len(invalid) - MAX_REPORTED_INVALID} more invalid lines.", file=sys.stderr)


def _load_predictor(args):
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    if args.onnx is not None:
        if args.model is not None:
            logger.warning("Both --model and --onnx are given; running the ONNX model %s.", args.onnx)
        if args.dtype != "auto":
            logger.warning("--dtype %s applies to PyTorch only; the ONNX model runs as exported.", args.dtype)
        runner, config, tokenizer = load_onnx(args.onnx, args.threads)
    else:
        config = config_class().from_pretrained(args.model)
        runner = TorchRunner.from_folder(args.model, resolve_dtype(args.dtype))
        tokenizer = load_folder_tokenizer(args.model, config)

    return BatchPredictor(runner, config, tokenizer, args.batch_size, args.long_text, args.return_scores)
