"""Export an LQ-KBERT model folder to ONNX: `python -m lqkbert export --model DIR --format onnx --output DIR [--int8]`.

The output folder contains `model.onnx` (and `model_int8.onnx` with `--int8`), the tokenizer, `config.json` and the
configuration code, so `python -m lqkbert predict --onnx DIR` needs nothing else.

The graph has the inputs `input_ids` and `attention_mask` (int64, shape `(batch, sequence)`) and the optional input
`token_type_ids`: it is a graph input with an initializer of zeros, shape `(1, 1)`, as its default value (ONNX IR >= 4),
broadcast to the shape of `input_ids`. Feed it or leave it out; onnxruntime lists it under
`get_overridable_initializers()` instead of `get_inputs()`. The outputs are exactly `logits_senti`, `logits_act`,
`logits_emo` and `pred_reg`, with dynamic batch and sequence axes.

The graph comes from the `torch.export` based exporter (`dynamo=True`). The TorchScript exporter (`dynamo=False`)
traces the Python branches of transformers' attention-mask code as constants and gave outputs off by about 1e-2 on
padded batches with torch 2.13 and transformers 4.57 and 5.25, so it is not used.
"""

import argparse
import logging
import os
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .inference import OUTPUT_NAMES, OnnxRunner, load_folder_tokenizer
from .model_folder import model_class, replace_folder
from .remote_code import HUB_CODE_DIR


logger = logging.getLogger(__name__)

ONNX_FILE_NAME = "model.onnx"
INT8_FILE_NAME = "model_int8.onnx"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
DEFAULT_OPSET = 18
TOLERANCE = 1e-4
# Sentences of different lengths for the export check; padded batches of 1 and 3 are built from them.
CHECK_TEXTS = [
    "비트코인 가즈아 ㅋㅋㅋ 🚀",
    "금리 인상 우려로 코인 시장 하락, 알트코인 대부분 10% 넘게 빠짐",
    "이거 지금 들어가도 돼요?",
]
_TOKEN_TYPE_IDS_FULL = "token_type_ids_broadcast"


class ExportCheckError(RuntimeError):
    """The exported graph disagrees with the PyTorch model beyond the tolerance."""


class _HeadOutputs(nn.Module):
    # The ONNX graph returns the four head outputs as a tuple, in the order of OUTPUT_NAMES.
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return tuple(outputs[name] for name in OUTPUT_NAMES)


def export_onnx(model_dir, output_dir, int8=False, opset=DEFAULT_OPSET):
    """Export `model_dir` to `output_dir/model.onnx`, check it against PyTorch, and copy the tokenizer and config.

    With `int8`, also write `model_int8.onnx`, quantized by `onnxruntime.quantization.quantize_dynamic`. The output
    folder is assembled under a temporary name and renamed into place only after the checks pass. Returns the folder.
    """
    model = model_class().from_pretrained(model_dir, attn_implementation="sdpa").eval()
    config = model.config
    tokenizer = load_folder_tokenizer(model_dir, config)

    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    # os.mkdir applies the umask, so the export gets the permissions of any new folder (mkdtemp would make it 0700).
    staging = output_dir.parent / f".{output_dir.name}.partial-{uuid.uuid4().hex}"
    os.mkdir(staging)
    try:
        onnx_path = staging / ONNX_FILE_NAME
        _export_graph(model, tokenizer, onnx_path, opset)
        make_token_type_ids_optional(onnx_path)
        difference = check_against_torch(onnx_path, model, tokenizer)
        logger.info("ONNX outputs match PyTorch: largest difference %.2e <= %.0e", difference, TOLERANCE)

        if int8:
            int8_path = staging / INT8_FILE_NAME
            quantize_int8(onnx_path, int8_path)
            difference = _largest_difference(OnnxRunner(int8_path), model, tokenizer, CHECK_TEXTS, token_type_ids=True)
            logger.info("Wrote %s; its largest difference from PyTorch float32 is %.2e", INT8_FILE_NAME, difference)

        tokenizer.save_pretrained(staging)
        config.save_pretrained(staging)
        shutil.copyfile(HUB_CODE_DIR / "configuration_lqkbert.py", staging / "configuration_lqkbert.py")
        replace_folder(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    logger.info("Exported %s to %s", model_dir, output_dir)
    return output_dir


def _export_graph(model, tokenizer, onnx_path, opset):
    example = tokenizer(CHECK_TEXTS[:2], padding=True, return_tensors="pt")
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence")
    dynamic_shapes = {name: {0: batch, 1: sequence} for name in INPUT_NAMES}

    program = torch.onnx.export(
        _HeadOutputs(model).eval(),
        tuple(example[name] for name in INPUT_NAMES),
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        dynamic_shapes=dynamic_shapes,
        opset_version=opset,
        dynamo=True,
        verbose=False,
    )
    program.save(str(onnx_path))


def make_token_type_ids_optional(onnx_path):
    """Rewrite the graph at `onnx_path` so that `token_type_ids` may be left out and then defaults to zeros.

    The input gets an initializer of zeros with shape `(1, 1)` as its default value, and an `Expand` to the shape of
    `input_ids` feeds the nodes that read it, so a fed tensor of shape `(batch, sequence)` passes through unchanged.
    """
    import onnx
    from onnx import helper, numpy_helper

    # NOTE: onnx.load and onnx.save keep the weights inside the file, which protobuf limits to 2 GB. LQ-KBERT-Base's
    # graph is 0.44 GB; a larger model would need `save_as_external_data=True` here and in the export.
    model = onnx.load(str(onnx_path))
    graph = model.graph
    (token_type_input,) = [item for item in graph.input if item.name == "token_type_ids"]

    for node in graph.node:
        for position, name in enumerate(node.input):
            if name == "token_type_ids":
                node.input[position] = _TOKEN_TYPE_IDS_FULL
    broadcast = [
        helper.make_node("Shape", ["input_ids"], ["input_ids_shape"], name="token_type_ids_shape"),
        helper.make_node("Expand", ["token_type_ids", "input_ids_shape"], [_TOKEN_TYPE_IDS_FULL], name="token_type_ids_expand"),
    ]
    nodes = broadcast + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)

    graph.initializer.append(numpy_helper.from_array(np.zeros((1, 1), dtype=np.int64), name="token_type_ids"))
    # The default has shape (1, 1), so the input's axes get their own names instead of "batch" and "sequence".
    for dim, name in zip(token_type_input.type.tensor_type.shape.dim, ("token_type_batch", "token_type_sequence")):
        dim.Clear()
        dim.dim_param = name

    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(onnx_path))


def quantize_int8(onnx_path, int8_path):
    """Write an int8 copy of `onnx_path`: int8 weights for MatMul and Gemm, activations quantized at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # onnxruntime's quantizer logs a line per tensor at INFO on the root logger and warns that `quant_pre_process`
    # should run first. That step cannot run here: its symbolic shape inference fails on this graph (onnxruntime 1.32).
    root_logger = logging.getLogger()
    previous_level = root_logger.level
    root_logger.setLevel(max(previous_level, logging.ERROR))
    try:
        quantize_dynamic(str(onnx_path), str(int8_path), weight_type=QuantType.QInt8)
    finally:
        root_logger.setLevel(previous_level)


def check_against_torch(onnx_path, model, tokenizer, tolerance=TOLERANCE):
    """Raise `ExportCheckError` unless the ONNX outputs match `model` within `tolerance`; return the largest difference.

    The batches are padded: a batch of 3 sentences of different lengths, and a batch of 1 padded past its length. Each
    runs with and without `token_type_ids`.
    """
    runner = OnnxRunner(onnx_path)
    checks = [
        ("a padded batch of 3", CHECK_TEXTS, {"padding": True}),
        ("a padded batch of 1", CHECK_TEXTS[:1], {"padding": "max_length", "max_length": 24}),
    ]

    largest = 0.0
    for description, texts, padding in checks:
        for token_type_ids in (True, False):
            difference = _largest_difference(runner, model, tokenizer, texts, token_type_ids, **padding)
            if not difference <= tolerance:
                raise ExportCheckError(
                    f"The ONNX model {onnx_path} differs from PyTorch by up to {difference:.3e} (tolerance "
                    f"{tolerance:.0e}) on {description}, {'with' if token_type_ids else 'without'} token_type_ids. "
                    "Report this with your torch, transformers and onnxruntime versions."
                )
            largest = max(largest, difference)
    return largest


def _largest_difference(runner, model, tokenizer, texts, token_type_ids, **padding_options):
    encoded = tokenizer(texts, return_tensors="np", **(padding_options or {"padding": True}))
    batch = {name: encoded[name].astype(np.int64) for name in INPUT_NAMES if name in encoded}
    if not token_type_ids:
        batch.pop("token_type_ids", None)

    with torch.inference_mode():
        expected = model(**{name: torch.from_numpy(values) for name, values in batch.items()})
    actual = runner(batch)
    return max(
        float(np.abs(values - expected[name].numpy()).max()) for name, values in zip(OUTPUT_NAMES, actual)
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m lqkbert export",
        description="Export an LQ-KBERT model folder to ONNX, checked against PyTorch, with its tokenizer and config.",
    )
    parser.add_argument("--model", required=True, help="model folder or Hub repository id")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="export format (only onnx)")
    parser.add_argument("--output", required=True, help="output folder; replaced only once the export has passed its checks")
    parser.add_argument("--int8", action="store_true", help=f"also write {INT8_FILE_NAME}, dynamically quantized to int8")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset version (default: {DEFAULT_OPSET})")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    # The exporter's graph passes log every rewrite at INFO.
    for name in ("onnxscript", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        export_onnx(args.model, args.output, int8=args.int8, opset=args.opset)
    except (FileNotFoundError, ValueError, ExportCheckError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
