"""`python -m lqkbert export`: the ONNX graph's names and axes, its match with PyTorch, and `predict --onnx`."""

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from conftest import KOREAN_SENTENCES, json_lines
from lqkbert import export, inference
from lqkbert.model_folder import load_tokenizer, model_class


OUTPUT_NAMES = ["logits_senti", "logits_act", "logits_emo", "pred_reg"]
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def onnx_dir(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export") / "onnx"
    code = export.main(["--model", str(tiny_model_dir), "--format", "onnx", "--output", str(folder), "--int8"])
    assert code == 0
    return folder


@pytest.fixture(scope="module")
def torch_model(tiny_model_dir):
    return model_class().from_pretrained(tiny_model_dir).eval(), load_tokenizer(tiny_model_dir)


def _session(path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_export_folder_contents(onnx_dir):
    names = {path.name for path in onnx_dir.iterdir()}

    assert {"config.json", "configuration_lqkbert.py", "model.onnx", "model_int8.onnx", "tokenizer_config.json"} <= names
    # transformers 5.x writes tokenizer.json; 4.57 also writes vocab.txt and special_tokens_map.json.
    assert "tokenizer.json" in names
    assert not [name for name in names if name.endswith((".safetensors", ".bin", ".partial"))]
    assert json.loads((onnx_dir / "config.json").read_text(encoding="utf-8"))["model_type"] == "lqkbert"
    assert not [path for path in onnx_dir.parent.iterdir() if ".partial-" in path.name]


def test_graph_names_and_axes(onnx_dir):
    graph = onnx.load(str(onnx_dir / "model.onnx")).graph

    def dims(value):
        return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]

    assert [output.name for output in graph.output] == OUTPUT_NAMES
    assert {output.name: dims(output) for output in graph.output} == {
        "logits_senti": ["batch", 5], "logits_act": ["batch", 6], "logits_emo": ["batch", 7], "pred_reg": ["batch", 3],
    }
    assert {value.name: dims(value) for value in graph.input} == {
        "input_ids": ["batch", "sequence"],
        "attention_mask": ["batch", "sequence"],
        "token_type_ids": ["token_type_batch", "token_type_sequence"],
    }
    (default,) = [tensor for tensor in graph.initializer if tensor.name == "token_type_ids"]
    assert onnx.numpy_helper.to_array(default).tolist() == [[0]]


@pytest.mark.parametrize("with_token_type_ids", [True, False])
@pytest.mark.parametrize(
    ("texts", "padding"),
    [
        (KOREAN_SENTENCES[:1], {"padding": True}),
        (KOREAN_SENTENCES[:1], {"padding": "max_length", "max_length": 30}),
        (KOREAN_SENTENCES[2:5], {"padding": True}),
        (KOREAN_SENTENCES[10:13], {"padding": "max_length", "max_length": 40}),
    ],
)
def test_onnx_matches_torch(onnx_dir, torch_model, texts, padding, with_token_type_ids):
    model, tokenizer = torch_model
    encoded = tokenizer(texts, return_tensors="np", **padding)
    feeds = {name: encoded[name].astype(np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
    if not with_token_type_ids:
        del feeds["token_type_ids"]

    actual = _session(onnx_dir / "model.onnx").run(OUTPUT_NAMES, feeds)
    with torch.inference_mode():
        expected = model(**{name: torch.from_numpy(values) for name, values in feeds.items()})

    for name, values in zip(OUTPUT_NAMES, actual):
        assert values.shape == tuple(expected[name].shape)
        np.testing.assert_allclose(values, expected[name].numpy(), atol=TOLERANCE, rtol=0, err_msg=name)


def test_token_type_ids_are_read(onnx_dir):
    session = _session(onnx_dir / "model.onnx")
    feeds = {"input_ids": np.array([[2, 10, 11, 3]], dtype=np.int64), "attention_mask": np.ones((1, 4), dtype=np.int64)}

    zeros = session.run(OUTPUT_NAMES, {**feeds, "token_type_ids": np.zeros((1, 4), dtype=np.int64)})
    left_out = session.run(OUTPUT_NAMES, feeds)
    ones = session.run(OUTPUT_NAMES, {**feeds, "token_type_ids": np.ones((1, 4), dtype=np.int64)})

    np.testing.assert_array_equal(left_out[0], zeros[0])
    assert np.abs(ones[0] - zeros[0]).max() > 1e-4


def test_int8_copy_runs(onnx_dir, torch_model):
    model, tokenizer = torch_model
    encoded = tokenizer(KOREAN_SENTENCES[:3], return_tensors="np", padding=True)
    feeds = {name: encoded[name].astype(np.int64) for name in ("input_ids", "attention_mask")}

    actual = _session(onnx_dir / "model_int8.onnx").run(OUTPUT_NAMES, feeds)
    with torch.inference_mode():
        expected = model(**{name: torch.from_numpy(values) for name, values in feeds.items()})

    for name, values in zip(OUTPUT_NAMES, actual):
        assert values.shape == tuple(expected[name].shape)
        np.testing.assert_allclose(values, expected[name].numpy(), atol=5e-2, rtol=0, err_msg=name)


def test_predict_onnx_same_decisions(onnx_dir, tiny_model_dir, tmp_path, capsys):
    source = tmp_path / "posts.txt"
    source.write_text("\n".join(KOREAN_SENTENCES) + "\n", encoding="utf-8")

    assert inference.main([str(source), "--onnx", str(onnx_dir)]) == 0
    onnx_results = json_lines(capsys.readouterr().out)
    assert inference.main([str(source), "--model", str(tiny_model_dir), "--dtype", "float32"]) == 0
    torch_results = json_lines(capsys.readouterr().out)

    assert len(onnx_results) == len(torch_results) == len(KOREAN_SENTENCES)
    for onnx_result, torch_result in zip(onnx_results, torch_results, strict=True):
        for key in ("line", "sentiment_strength", "action_signal", "emotions", "truncated"):
            assert onnx_result[key] == torch_result[key], key
        for key in ("certainty", "relevance", "toxicity"):
            assert onnx_result[key] == pytest.approx(torch_result[key], abs=TOLERANCE)


def test_predict_onnx_int8_file(onnx_dir, tiny_model_dir, tmp_path, capsys):
    source = tmp_path / "posts.txt"
    source.write_text("\n".join(KOREAN_SENTENCES) + "\n", encoding="utf-8")

    assert inference.main([str(source), "--onnx", str(onnx_dir / "model_int8.onnx"), "--return-scores"]) == 0
    int8_results = json_lines(capsys.readouterr().out)
    assert inference.main([str(source), "--model", str(tiny_model_dir), "--dtype", "float32", "--return-scores"]) == 0
    torch_results = json_lines(capsys.readouterr().out)

    # Decisions of the random tiny model sit on near-uniform boundaries, so only the scores are compared.
    for int8_result, torch_result in zip(int8_results, torch_results, strict=True):
        assert int8_result["line"] == torch_result["line"]
        for key in ("sentiment_scores", "action_scores", "emotion_scores"):
            assert int8_result[key] == pytest.approx(torch_result[key], abs=5e-2), key


def test_check_reports_largest_difference(onnx_dir, tiny_model_dir, torch_model):
    _, tokenizer = torch_model
    other = model_class().from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        other.head_reg.bias.add_(0.01)

    assert export.check_against_torch(onnx_dir / "model.onnx", torch_model[0], tokenizer) <= TOLERANCE
    with pytest.raises(export.ExportCheckError, match=r"differs from PyTorch by up to 1\.000e-02 \(tolerance 1e-04\) on a padded batch of 3, with token_type_ids"):
        export.check_against_torch(onnx_dir / "model.onnx", other, tokenizer)


def test_failed_export_keeps_old_folder(tiny_model_dir, tmp_path, monkeypatch, capsys):
    output = tmp_path / "onnx"
    output.mkdir()
    (output / "model.onnx").write_bytes(b"old")

    def fail(*args, **kwargs):
        raise export.ExportCheckError("simulated mismatch")

    monkeypatch.setattr(export, "check_against_torch", fail)
    monkeypatch.setattr(export, "_export_graph", lambda model, tokenizer, path, opset: path.write_bytes(b"graph"))
    monkeypatch.setattr(export, "make_token_type_ids_optional", lambda path: None)

    assert export.main(["--model", str(tiny_model_dir), "--output", str(output)]) == 1
    assert "error: simulated mismatch" in capsys.readouterr().err
    assert (output / "model.onnx").read_bytes() == b"old"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["onnx"]


def test_threads_option_reaches_runtimes(onnx_dir, tmp_path, monkeypatch, capsys):
    source = tmp_path / "posts.txt"
    source.write_text("비트코인 가즈아\n", encoding="utf-8")
    torch_threads = []
    sessions = []
    monkeypatch.setattr(inference.torch, "set_num_threads", torch_threads.append)
    original_init = inference.OnnxRunner.__init__

    def record_session(self, onnx_path, threads=None):
        original_init(self, onnx_path, threads)
        sessions.append(self.session)

    monkeypatch.setattr(inference.OnnxRunner, "__init__", record_session)

    assert inference.main([str(source), "--onnx", str(onnx_dir), "--threads", "1"]) == 0
    assert torch_threads == [1]
    assert sessions[0].get_session_options().intra_op_num_threads == 1
    assert len(json_lines(capsys.readouterr().out)) == 1
