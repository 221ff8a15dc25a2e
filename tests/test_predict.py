"""`python -m lqkbert predict`: input formats, order and ids, invalid lines, dtypes and atomic output."""

import io
import json
import sys

import pytest
import torch

from conftest import KOREAN_SENTENCES, json_lines, run_python
from lqkbert import inference
from lqkbert.model_folder import load_tokenizer, model_class, save_model_folder
from lqkbert.remote_code import import_hub_module


hub = import_hub_module("pipeline_lqkbert")

RESULT_KEYS = ["sentiment_strength", "action_signal", "emotions", "certainty", "relevance", "toxicity", "truncated"]
# Lengths from 9 to 31 characters, in an order that length sorting changes.
TEXTS = [KOREAN_SENTENCES[index] for index in (17, 8, 4, 0, 14, 5, 10, 15, 12)]


def run_predict(argv, capsys, monkeypatch, stdin=None):
    """Run the command in this process; return its exit code, stdout and stderr."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8")), encoding="utf-8"))
    code = inference.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """Results of the float32 model run on one text at a time, decoded by the pipeline's function."""
    model = model_class().from_pretrained(tiny_model_dir).eval()
    tokenizer = load_tokenizer(tiny_model_dir)

    def results(texts):
        expected = []
        with torch.inference_mode():
            for text in texts:
                out = model(**tokenizer(text, return_tensors="pt", truncation=True, max_length=200))
                expected += hub.decode_predictions(model.config, out.logits_senti, out.logits_act, out.logits_emo, out.pred_reg)
        return expected

    return results


@pytest.fixture(scope="module")
def decisive_model_dir(tiny_model_dir, tokenizer, tmp_path_factory):
    """The tiny model with head biases that put every decision far from its boundary.

    Random tiny models give near-uniform probabilities, so any change of precision could flip a decision; with these
    margins, float32, bfloat16 and int8 must agree.
    """
    model = model_class().from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        model.head_senti.bias.copy_(torch.tensor([0.0, 4.0, 0.0, -2.0, 0.0]))
        model.head_act.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 4.0]))
        model.head_emo.bias.copy_(torch.tensor([3.0, -3.0, 3.0, -3.0, -3.0, 3.0, -3.0]))
        model.head_reg.bias.copy_(torch.tensor([0.3, 0.6, 0.1]))
    folder = tmp_path_factory.mktemp("decisive") / "model"
    save_model_folder(model, tokenizer, folder)
    return folder


def _assert_same_result(actual, expected, tolerance=1e-6):
    for key in ("sentiment_strength", "action_signal", "emotions", "truncated"):
        assert actual[key] == expected[key], key
    for key in ("certainty", "relevance", "toxicity"):
        assert actual[key] == pytest.approx(expected[key], abs=tolerance), key


def test_jsonl_order_and_ids(tiny_model_dir, reference, tmp_path, capsys, monkeypatch):
    rows = [{"id": f"post-{index}", "text": text} if index % 3 else {"text": text} for index, text in enumerate(TEXTS)]
    source = write_jsonl(tmp_path / "posts.jsonl", rows)
    # Windows of 2 batches of 2 texts: the texts cross window and batch boundaries in sorted order.
    monkeypatch.setattr(inference, "WINDOW_BATCHES", 2)

    code, stdout, stderr = run_predict(
        [source, "--model", tiny_model_dir, "--dtype", "float32", "--batch-size", 2], capsys, monkeypatch
    )

    assert code == 0
    results = [json.loads(line) for line in stdout.splitlines()]
    assert [result.get("id") for result in results] == [row.get("id") for row in rows]
    assert [result.get("line") for result in results] == [None if "id" in row else number for number, row in enumerate(rows, 1)]
    for result, expected in zip(results, reference(TEXTS), strict=True):
        assert list(result)[1:] == RESULT_KEYS
        _assert_same_result(result, expected)
    assert stderr.splitlines()[-1] == f"Read {len(TEXTS)} inputs, wrote {len(TEXTS)} results, skipped 0 invalid."
    assert "text/s" not in stderr


def test_csv_input(tiny_model_dir, reference, tmp_path, capsys, monkeypatch):
    texts = ["비트코인, 이더리움 동반 상승", "줄바꿈이\n들어간 글", "김프 5% 넘었네 ㄷㄷ"]
    source = tmp_path / "posts.csv"
    source.write_text('id,text\n7,"비트코인, 이더리움 동반 상승"\n8,"줄바꿈이\n들어간 글"\n9,김프 5% 넘었네 ㄷㄷ\n', encoding="utf-8")
    no_ids = tmp_path / "no_ids.csv"
    no_ids.write_text('text,source\n"줄바꿈이\n들어간 글",a\n김프 5% 넘었네 ㄷㄷ,b\n', encoding="utf-8")

    code, stdout, _ = run_predict([source, "--model", tiny_model_dir, "--dtype", "float32"], capsys, monkeypatch)
    results = [json.loads(line) for line in stdout.splitlines()]
    _, stdout, _ = run_predict([no_ids, "--model", tiny_model_dir, "--dtype", "float32"], capsys, monkeypatch)
    results_without_ids = [json.loads(line) for line in stdout.splitlines()]

    assert code == 0
    assert [result["id"] for result in results] == ["7", "8", "9"]
    for result, expected in zip(results, reference(texts), strict=True):
        _assert_same_result(result, expected)
    assert [result["line"] for result in results_without_ids] == [2, 4]


def test_text_input_line_numbers(tiny_model_dir, reference, tmp_path, capsys, monkeypatch):
    source = tmp_path / "posts.txt"
    source.write_text(f"{TEXTS[0]}\n\n{TEXTS[1]}\r\n   \n{TEXTS[2]}", encoding="utf-8")

    code, stdout, stderr = run_predict([source, "--model", tiny_model_dir, "--dtype", "float32"], capsys, monkeypatch)

    results = [json.loads(line) for line in stdout.splitlines()]
    assert code == 0
    assert [result["line"] for result in results] == [1, 3, 5]
    for result, expected in zip(results, reference(TEXTS[:3]), strict=True):
        _assert_same_result(result, expected)
    assert stderr.splitlines()[-1] == "Read 3 inputs, wrote 3 results, skipped 0 invalid."


def test_stdin_input(tiny_model_dir, reference, capsys, monkeypatch):
    stdin = "".join(json.dumps({"id": index, "text": text}, ensure_ascii=False) + "\n" for index, text in enumerate(TEXTS[:4]))

    code, stdout, _ = run_predict(["-", "--format", "jsonl", "--model", tiny_model_dir], capsys, monkeypatch, stdin=stdin)

    results = [json.loads(line) for line in stdout.splitlines()]
    assert code == 0
    assert [result["id"] for result in results] == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-"], "error: Reading stdin needs --format: pass --format jsonl, --format csv or --format text."),
        (["posts.xml"], "error: Cannot tell the format of posts.xml from its extension '.xml'"),
        (["missing.jsonl"], "error: Input file missing.jsonl does not exist."),
        (["posts.txt", "--batch-size", "0"], "error: Invalid --batch-size 0: use a positive integer, such as 64."),
    ],
)
def test_usage_errors(argv, message, tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "posts.xml").write_text("<posts/>", encoding="utf-8")
    (tmp_path / "posts.txt").write_text("비트\n", encoding="utf-8")

    code, stdout, stderr = run_predict(argv + ["--model", tiny_model_dir], capsys, monkeypatch, stdin="")

    assert code == 1
    assert stdout == ""
    assert message in stderr


def test_model_or_onnx_required(tmp_path, capsys, monkeypatch):
    code, _, stderr = run_predict([tmp_path / "posts.txt"], capsys, monkeypatch)

    assert code == 1
    assert "error: Nothing to run: pass --model DIR_OR_REPO, or --onnx PATH" in stderr


INVALID_LINES = [
    '{"id": 1, "text": "비트코인 가즈아"}',
    '{"id": 2, "text": ""}',
    "{not json",
    '["a list"]',
    '{"id": 5}',
    '{"id": 6, "text": 42}',
    '{"id": 7, "text": "리플 떡락 ㅠㅠ"}',
    '{"id": 8, "text": " \\u0000 "}',
    '{"id": 9, "text": "김프 5% 넘었네"}',
]


def test_invalid_lines_stop_before_model(tiny_model_dir, tmp_path, capsys, monkeypatch):
    source = tmp_path / "posts.jsonl"
    source.write_text("\n".join(INVALID_LINES) + "\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"

    def fail_if_loaded(args):
        pytest.fail("the model was loaded although the input has invalid lines")

    monkeypatch.setattr(inference, "_load_predictor", fail_if_loaded)
    code, stdout, stderr = run_predict([source, "--model", tiny_model_dir, "--output", output], capsys, monkeypatch)

    assert code == 1
    assert stdout == ""
    assert not output.exists()
    lines = stderr.splitlines()
    assert lines[0] == "line 2: '' is empty or contains only whitespace and control characters, so there is nothing to classify. Leave the item out."
    assert lines[1].startswith("line 3: invalid JSON (Expecting property name enclosed in double quotes")
    assert lines[2] == "line 4: expected a JSON object with a 'text' field, got list"
    assert lines[3] == "line 5: missing 'text' field (found ['id'])"
    assert lines[4] == "line 6: expected a string, got int 42. Pass text, or leave the item out."
    assert lines[5].startswith("line 8: ' \\x00 ' is empty")
    assert lines[6] == "Stopped before loading the model: 6 of 9 inputs are invalid. Fix them, or pass --skip-invalid to skip them."


def test_skip_invalid_counts(tiny_model_dir, tmp_path, capsys, monkeypatch):
    source = tmp_path / "posts.jsonl"
    source.write_text("\n".join(INVALID_LINES) + "\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"

    code, stdout, stderr = run_predict(
        [source, "--model", tiny_model_dir, "--output", output, "--skip-invalid"], capsys, monkeypatch
    )

    assert code == 0
    assert stdout == ""
    assert [json.loads(line)["id"] for line in output.read_text(encoding="utf-8").splitlines()] == [1, 7, 9]
    assert len([line for line in stderr.splitlines() if line.startswith("line ")]) == 6
    assert stderr.splitlines()[-1] == "Read 9 inputs, wrote 3 results, skipped 6 invalid."


def test_csv_without_text_column(tiny_model_dir, tmp_path, capsys, monkeypatch):
    source = tmp_path / "posts.csv"
    source.write_text("id,body\n1,비트\n", encoding="utf-8")

    code, _, stderr = run_predict([source, "--model", tiny_model_dir], capsys, monkeypatch)

    assert code == 1
    assert f"error: The CSV input {source} has no 'text' column in its header ['id', 'body']" in stderr


def test_float32_and_default_agree(decisive_model_dir, tokenizer):
    config = inference.config_class().from_pretrained(decisive_model_dir)
    texts = KOREAN_SENTENCES

    def predict(dtype):
        runner = inference.TorchRunner.from_folder(decisive_model_dir, inference.resolve_dtype(dtype))
        return runner.dtype, inference.BatchPredictor(runner, config, tokenizer, batch_size=8, return_scores=True).predict(texts)

    float32_dtype, float32_results = predict("float32")
    default_dtype, default_results = predict("auto")

    assert float32_dtype == "float32"
    assert default_dtype == ("bfloat16" if inference.cpu_supports_bf16() else "float32")
    for default, exact in zip(default_results, float32_results, strict=True):
        _assert_same_result(default, exact, tolerance=2e-2)
        assert default["emotion_scores"] == pytest.approx(exact["emotion_scores"], abs=2e-2)


def test_int8_runs(decisive_model_dir, tmp_path, capsys, monkeypatch):
    source = write_jsonl(tmp_path / "posts.jsonl", [{"id": index, "text": text} for index, text in enumerate(TEXTS)])

    _, float32_out, _ = run_predict([source, "--model", decisive_model_dir, "--dtype", "float32"], capsys, monkeypatch)
    code, int8_out, _ = run_predict([source, "--model", decisive_model_dir, "--dtype", "int8"], capsys, monkeypatch)

    assert code == 0
    for int8, exact in zip(json_lines(int8_out), json_lines(float32_out), strict=True):
        assert int8["id"] == exact["id"]
        _assert_same_result(int8, exact, tolerance=5e-2)


def test_resolve_dtype(monkeypatch):
    monkeypatch.setattr(inference, "cpu_supports_bf16", lambda: False)
    assert inference.resolve_dtype("auto") == "float32"
    monkeypatch.setattr(inference, "cpu_supports_bf16", lambda: True)
    assert inference.resolve_dtype("auto") == "bfloat16"
    assert inference.resolve_dtype("int8") == "int8"
    with pytest.raises(ValueError, match=r"Invalid dtype 'float16': use one of \['auto', 'float32', 'bfloat16', 'int8'\]"):
        inference.resolve_dtype("float16")


def test_long_text_truncated_or_split(tiny_model_dir, tmp_path, capsys, monkeypatch, caplog):
    long_text = " ".join(KOREAN_SENTENCES * 2)
    source = write_jsonl(tmp_path / "posts.jsonl", [{"id": "short", "text": TEXTS[0]}, {"id": "long", "text": long_text}])

    _, truncated_out, _ = run_predict([source, "--model", tiny_model_dir, "--dtype", "float32"], capsys, monkeypatch)
    _, split_out, _ = run_predict(
        [source, "--model", tiny_model_dir, "--dtype", "float32", "--long-text", "split"], capsys, monkeypatch
    )

    short, long = json_lines(truncated_out)
    assert (short["truncated"], long["truncated"]) == (False, True)
    assert "1 texts are longer than max_text_length=200 characters" in caplog.text
    short, long = json_lines(split_out)
    assert (short["segments"], long["segments"]) == (1, len(hub.split_text(long_text, 200)))
    assert long["truncated"] is False


def test_failed_run_keeps_old_output(tiny_model_dir, tmp_path, capsys, monkeypatch):
    source = write_jsonl(tmp_path / "posts.jsonl", [{"text": text} for text in TEXTS])
    output = tmp_path / "out" / "results.jsonl"
    output.parent.mkdir()
    output.write_text("old results\n", encoding="utf-8")
    calls = []
    original_call = inference.TorchRunner.__call__

    def fail_on_third_batch(self, batch):
        calls.append(len(batch["input_ids"]))
        if len(calls) == 3:
            raise RuntimeError("simulated failure in the third batch")
        return original_call(self, batch)

    monkeypatch.setattr(inference.TorchRunner, "__call__", fail_on_third_batch)
    # One batch per window, so the first two windows are written before the third batch fails.
    monkeypatch.setattr(inference, "WINDOW_BATCHES", 1)
    with pytest.raises(RuntimeError, match="simulated failure"):
        run_predict([source, "--model", tiny_model_dir, "--output", output, "--batch-size", 2], capsys, monkeypatch)

    assert len(calls) == 3
    assert output.read_text(encoding="utf-8") == "old results\n"
    assert sorted(path.name for path in output.parent.iterdir()) == ["results.jsonl"]


def test_predict_matches_pipeline(tiny_model_dir, tmp_path, capsys, monkeypatch):
    source = write_jsonl(tmp_path / "posts.jsonl", [{"text": text} for text in TEXTS])
    _, stdout, _ = run_predict(
        [source, "--model", tiny_model_dir, "--dtype", "float32", "--batch-size", 1, "--return-scores"], capsys, monkeypatch
    )

    pipeline_stdout = run_python(
        f"""
        import json
        from transformers import pipeline
        pipe = pipeline("lqkbert", model={str(tiny_model_dir)!r}, trust_remote_code=True)
        for result in pipe({TEXTS!r}, return_scores=True):
            print(json.dumps(result, ensure_ascii=False))
        """,
        tmp_path,
    )

    # With batches of one text, both run the same float32 forward pass on the same ids and decode the same logits.
    predicted = [{key: value for key, value in result.items() if key != "line"} for result in json_lines(stdout)]
    assert predicted == json_lines(pipeline_stdout)
