"""The `lqkbert` pipeline: loaded as Hub users load it, in fresh offline processes, and its shared decoding steps."""

import json

import pytest
import torch

from conftest import KOREAN_SENTENCES, json_lines, run_python
from lqkbert.model_folder import config_class, load_tokenizer, model_class, save_model_folder
from lqkbert.remote_code import import_hub_module


hub = import_hub_module("pipeline_lqkbert")

CARD_KEYS = ["sentiment_strength", "action_signal", "emotions", "certainty", "relevance", "toxicity", "truncated"]
SCORE_KEYS = ["sentiment_scores", "action_scores", "emotion_scores"]
TEXTS = KOREAN_SENTENCES[:6]
# Over 200 characters and, with the test vocabulary, over 200 tokens: the default truncates it.
LONG_TEXT = " ".join(KOREAN_SENTENCES * 2)
TEN_THOUSAND = ("비트코인 가즈아 ㅋㅋ. 이더리움 존버 중!\n" * 400)[:10000]
BAD_INPUTS = {
    "empty": "",
    "whitespace": " \t\n ",
    "none": None,
    "number": 5,
    "bytes": b"\xeb\xb9\x84",
    "dict": {"text": "비트"},
    "controls_only": "\x00\x07\x1b",
}


@pytest.fixture(scope="module")
def pipeline_outputs(tiny_model_dir, tmp_path_factory):
    """Results of one fresh offline process that builds the pipeline from the folder and calls it in every way."""
    code = f"""
        import json, logging
        from transformers import pipeline

        warnings = []
        class Collect(logging.Handler):
            def emit(self, record):
                warnings.append(record.getMessage())
        logging.getLogger().addHandler(Collect(level=logging.WARNING))

        pipe = pipeline("lqkbert", model={str(tiny_model_dir)!r}, trust_remote_code=True)
        texts = {TEXTS!r}
        long_text = {LONG_TEXT!r}
        ten_thousand = {TEN_THOUSAND!r}
        out = {{"class": type(pipe).__name__}}
        out["single"] = pipe(texts[0])
        out["list"] = pipe(texts)
        out["tuple"] = pipe(tuple(texts[:2]))
        out["batched"] = pipe(texts, batch_size=4)
        out["generator"] = list(pipe(text for text in texts))
        out["empty_list"] = pipe([])
        out["scores"] = pipe(texts[:2], return_scores=True)
        out["long_default"] = pipe(long_text)
        out["long_default_again"] = pipe(long_text)
        out["long_split"] = pipe(long_text, long_text="split", return_scores=True)
        out["ten_thousand"] = pipe(ten_thousand)
        out["ten_thousand_split"] = pipe(ten_thousand, long_text="split", batch_size=16)
        out["controls"] = pipe("비트\\x00코인\\x07 가즈아\\x1b", return_scores=True)
        out["controls_removed"] = pipe("비트코인 가즈아", return_scores=True)
        out["emoji_only"] = pipe("🚀🚀🚀")
        out["surrogate"] = pipe("비트 \\ud83d 가즈아")

        errors = {{}}
        for name, value in {BAD_INPUTS!r}.items():
            try:
                pipe(value)
                errors[name] = None
            except (TypeError, ValueError) as error:
                errors[name] = [type(error).__name__, str(error)]
        for name, value in {{"list_none": ["비트", None], "list_blank": ["비트", "이더", "  "]}}.items():
            try:
                pipe(value, batch_size=2)
                errors[name] = None
            except (TypeError, ValueError) as error:
                errors[name] = [type(error).__name__, str(error)]
        for name, kwargs in {{"bad_mode": {{"long_text": "cut"}}, "bad_parameter": {{"top_k": 3}}}}.items():
            try:
                pipe("비트", **kwargs)
                errors[name] = None
            except (TypeError, ValueError) as error:
                errors[name] = [type(error).__name__, str(error)]
        out["errors"] = errors
        out["warnings"] = warnings
        print(json.dumps(out, ensure_ascii=False))
    """
    (outputs,) = json_lines(run_python(code, tmp_path_factory.mktemp("pipeline")))
    return outputs


@pytest.fixture(scope="module")
def reference_model(tiny_model_dir):
    return model_class().from_pretrained(tiny_model_dir).eval(), load_tokenizer(tiny_model_dir)


def _logits(reference_model, text):
    model, tokenizer = reference_model
    with torch.inference_mode():
        return model(**tokenizer(text, return_tensors="pt", truncation=True, max_length=200))


def test_pipeline_class_and_keys(pipeline_outputs):
    assert pipeline_outputs["class"] == "LQKBertPipeline"
    assert list(pipeline_outputs["single"]) == CARD_KEYS
    assert len(pipeline_outputs["list"]) == len(TEXTS)
    for result in pipeline_outputs["list"]:
        assert list(result) == CARD_KEYS


def test_labels_follow_logits(pipeline_outputs, reference_model):
    config = reference_model[0].config
    for text, result in zip(TEXTS, pipeline_outputs["list"]):
        out = _logits(reference_model, text)
        emotion_probs = torch.sigmoid(out.logits_emo[0]).tolist()

        assert result["sentiment_strength"] == config.sentiment_labels[int(out.logits_senti[0].argmax())]
        assert result["action_signal"] == config.action_labels[int(out.logits_act[0].argmax())]
        assert result["emotions"] == [name for name, p in zip(config.emotion_labels, emotion_probs) if p >= 0.5]
        for position, name in enumerate(config.regression_targets):
            expected = min(max(out.pred_reg[0, position].item(), 0.0), 1.0)
            assert result[name] == pytest.approx(expected, abs=1e-6)
        assert result["truncated"] is False


def test_single_list_tuple_generator_agree(pipeline_outputs):
    assert pipeline_outputs["single"] == pipeline_outputs["list"][0]
    assert pipeline_outputs["tuple"] == pipeline_outputs["list"][:2]
    assert pipeline_outputs["generator"] == pipeline_outputs["list"]
    assert pipeline_outputs["empty_list"] == []


def test_batched_results_in_input_order(pipeline_outputs):
    for batched, alone in zip(pipeline_outputs["batched"], pipeline_outputs["list"], strict=True):
        assert batched["sentiment_strength"] == alone["sentiment_strength"]
        assert batched["action_signal"] == alone["action_signal"]
        assert batched["emotions"] == alone["emotions"]
        assert batched["relevance"] == pytest.approx(alone["relevance"], abs=1e-5)


def test_return_scores_are_probabilities(pipeline_outputs, reference_model):
    config = reference_model[0].config
    for text, result in zip(TEXTS, pipeline_outputs["scores"]):
        out = _logits(reference_model, text)

        assert list(result) == CARD_KEYS + SCORE_KEYS
        assert list(result["sentiment_scores"]) == config.sentiment_labels
        assert list(result["action_scores"]) == config.action_labels
        assert list(result["emotion_scores"]) == config.emotion_labels
        assert sum(result["sentiment_scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert list(result["sentiment_scores"].values()) == pytest.approx(out.logits_senti[0].softmax(-1).tolist(), abs=1e-6)
        assert list(result["emotion_scores"].values()) == pytest.approx(torch.sigmoid(out.logits_emo[0]).tolist(), abs=1e-6)


def test_long_text_default_truncates_and_warns_once(pipeline_outputs, tokenizer):
    assert len(LONG_TEXT) > 200
    assert hub.count_tokens(tokenizer, LONG_TEXT) > 200

    assert pipeline_outputs["long_default"]["truncated"] is True
    assert pipeline_outputs["long_default_again"] == pipeline_outputs["long_default"]
    assert pipeline_outputs["ten_thousand"]["truncated"] is True
    warnings = [message for message in pipeline_outputs["warnings"] if "max_text_length=200" in message]
    assert len(warnings) == 1
    assert "long_text='split'" in warnings[0]


def test_long_text_split_averages_sentences(pipeline_outputs, reference_model):
    model, tokenizer = reference_model
    result = pipeline_outputs["long_split"]
    sentences = hub.split_text(LONG_TEXT, 200)
    weights = torch.tensor([float(len(sentence)) for sentence in sentences])

    with torch.inference_mode():
        rows = [model(**tokenizer(sentence, return_tensors="pt")) for sentence in sentences]
    sentiment = torch.cat([row.logits_senti.softmax(-1) for row in rows])
    emotions = torch.cat([torch.sigmoid(row.logits_emo) for row in rows])
    mean_sentiment = (sentiment * weights[:, None]).sum(0) / weights.sum()
    mean_emotions = (emotions * weights[:, None]).sum(0) / weights.sum()

    assert result["segments"] == len(sentences) > 1
    assert result["truncated"] is False
    assert list(result["sentiment_scores"].values()) == pytest.approx(mean_sentiment.tolist(), abs=1e-6)
    assert list(result["emotion_scores"].values()) == pytest.approx(mean_emotions.tolist(), abs=1e-6)
    assert result["sentiment_strength"] == model.config.sentiment_labels[int(mean_sentiment.argmax())]
    assert result["emotions"] == [name for name, p in zip(model.config.emotion_labels, mean_emotions) if p >= 0.5]


def test_ten_thousand_characters_split(pipeline_outputs):
    result = pipeline_outputs["ten_thousand_split"]

    assert result["segments"] == len(hub.split_text(TEN_THOUSAND, 200)) == 800
    assert list(result)[:len(CARD_KEYS)] == CARD_KEYS


def test_control_characters_removed(pipeline_outputs):
    assert pipeline_outputs["controls"] == pipeline_outputs["controls_removed"]


def test_emoji_and_surrogates_classified(pipeline_outputs):
    for key in ("emoji_only", "surrogate"):
        assert list(pipeline_outputs[key]) == CARD_KEYS


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("empty", "ValueError", "Invalid input: '' is empty or contains only whitespace and control characters"),
        ("whitespace", "ValueError", r"Invalid input: ' \t\n ' is empty"),
        ("controls_only", "ValueError", r"Invalid input: '\x00\x07\x1b' is empty"),
        ("none", "TypeError", "Invalid input: expected a string, a list or tuple of strings, a generator or a dataset, got NoneType None"),
        ("number", "TypeError", "got int 5"),
        ("bytes", "TypeError", r"got bytes b'\xeb\xb9\x84'"),
        ("dict", "TypeError", "got dict {'text': '비트'}"),
        ("list_none", "TypeError", "Invalid input at index 1: expected a string, got NoneType None"),
        ("list_blank", "ValueError", "Invalid input at index 2: '  ' is empty"),
        ("bad_mode", "ValueError", "Invalid long_text='cut': use one of ['truncate', 'split']"),
        ("bad_parameter", "TypeError", "Invalid parameters ['top_k'] for the 'lqkbert' pipeline"),
    ],
)
def test_bad_input_errors(pipeline_outputs, name, error, message):
    assert pipeline_outputs["errors"][name] is not None, f"{name} was accepted"
    error_type, error_message = pipeline_outputs["errors"][name]
    assert error_type == error
    assert message in error_message


def test_folder_config_records_pipeline(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text(encoding="utf-8"))

    assert config["custom_pipelines"] == {
        "lqkbert": {"impl": "pipeline_lqkbert.LQKBertPipeline", "pt": ["AutoModel"], "type": "text"}
    }
    assert (tiny_model_dir / "pipeline_lqkbert.py").is_file()


def test_thresholds_and_save_round_trip(tiny_model_dir, tokenizer, tmp_path):
    text = TEXTS[0]
    model = model_class().from_pretrained(tiny_model_dir).eval()
    with torch.inference_mode():
        probabilities = torch.sigmoid(model(**tokenizer(text, return_tensors="pt")).logits_emo[0]).tolist()
    by_name = dict(zip(model.config.emotion_labels, probabilities))
    below = min((name for name, p in by_name.items() if p < 0.5), key=lambda name: 0.5 - by_name[name])
    above = min((name for name, p in by_name.items() if p >= 0.5), key=lambda name: by_name[name] - 0.5)
    # Thresholds just past each probability flip both emotions: `below` joins the result and `above` leaves it.
    thresholds = {below: by_name[below] - 1e-4, above: by_name[above] + 1e-4}
    folder = tmp_path / "thresholds"
    save_model_folder(model_class().from_pretrained(tiny_model_dir, emotion_thresholds=thresholds), tokenizer, folder)

    stdout = run_python(
        f"""
        import json
        from transformers import pipeline
        pipe = pipeline("lqkbert", model={str(folder)!r}, trust_remote_code=True)
        first = pipe({text!r})
        pipe.save_pretrained({str(tmp_path / "resaved")!r})
        again = pipeline("lqkbert", model={str(tmp_path / "resaved")!r}, trust_remote_code=True)({text!r})
        print(json.dumps({{"first": first, "again": again}}, ensure_ascii=False))
        """,
        tmp_path,
    )
    (outputs,) = json_lines(stdout)

    default_emotions = [name for name, p in by_name.items() if p >= 0.5]
    assert below in outputs["first"]["emotions"]
    assert above not in outputs["first"]["emotions"]
    assert sorted(outputs["first"]["emotions"]) == sorted(set(default_emotions) - {above} | {below})
    assert outputs["again"] == outputs["first"]


# Shared steps, imported from the Hub file in this process.


@pytest.mark.parametrize(
    ("text", "index", "error", "message"),
    [
        (None, 3, TypeError, "Invalid input at index 3: expected a string, got NoneType None. Pass text"),
        (1.5, None, TypeError, "Invalid input: expected a string, got float 1.5."),
        ("", 0, ValueError, "Invalid input at index 0: '' is empty or contains only whitespace and control characters"),
        ("\u3000 \n", None, ValueError, "Invalid input: '\\u3000 \\n' is empty"),
        ("\x85\x9f", 7, ValueError, "Invalid input at index 7: '\\x85\\x9f' is empty"),
    ],
)
def test_prepare_text_rejects(text, index, error, message):
    with pytest.raises(error) as raised:
        hub.prepare_text(text, index)
    assert message in str(raised.value)


def test_prepare_text_error_shortens_long_values():
    with pytest.raises(ValueError) as raised:
        hub.prepare_text(" " * 10000, 1)
    assert "(10000 characters)" in str(raised.value)
    assert len(str(raised.value)) < 250


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("비트\x00코인\x7f 가즈아", "비트코인 가즈아"),
        ("줄\n바꿈\t탭\r", "줄\n바꿈\t탭\r"),
        ("짝 없는 \ud83d 서로게이트", "짝 없는 \ufffd 서로게이트"),
        ("🚀🚀", "🚀🚀"),
        ("가" * 10000, "가" * 10000),
    ],
)
def test_prepare_text_cleans(text, expected):
    assert hub.prepare_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("비트 간다. 이더도 간다! 리플은? 몰라…", ["비트 간다.", "이더도 간다!", "리플은?", "몰라…"]),
        ("첫 줄\n\n둘째 줄", ["첫 줄", "둘째 줄"]),
        ("비율 2.4 기록. 다음", ["비율 2.4 기록.", "다음"]),
        ("진짜..?! 대박。끝", ["진짜..?!", "대박。", "끝"]),
        ("   ", []),
    ],
)
def test_split_text_sentences(text, expected):
    assert hub.split_text(text, 200) == expected


def test_split_text_chunks_long_sentence():
    sentence = " ".join(["비트코인가즈아"] * 60)
    chunks = hub.split_text(sentence, 50)

    assert all(0 < len(chunk) <= 50 for chunk in chunks)
    assert " ".join(chunks) == sentence
    assert "".join(hub.split_text("가" * 120, 50)) == "가" * 120
    assert [len(chunk) for chunk in hub.split_text("가" * 120, 50)] == [50, 50, 20]


def test_length_sorted_batches():
    lengths = [5, 1, 9, 3, 7, 2, 8]
    batches = hub.length_sorted_batches(lengths, 3)

    assert batches == [[2, 6, 4], [0, 3, 5], [1]]
    assert sorted(index for batch in batches for index in batch) == list(range(len(lengths)))
    with pytest.raises(ValueError, match=r"Invalid batch_size=0: use a positive integer"):
        hub.length_sorted_batches(lengths, 0)


def _card_decisions(logits_senti, logits_act, logits_emo, pred_reg, config):
    # The model card's post-processing, with label names and thresholds from the config.
    results = []
    thresholds = config.emotion_threshold_list()
    for row in range(logits_senti.shape[0]):
        emotion_probs = torch.sigmoid(logits_emo[row]).tolist()
        scores = torch.clamp(pred_reg[row], 0, 1).tolist()
        results.append({
            "sentiment_strength": config.sentiment_labels[int(logits_senti[row].argmax().item())],
            "action_signal": config.action_labels[int(logits_act[row].argmax().item())],
            "emotions": [name for name, p, t in zip(config.emotion_labels, emotion_probs, thresholds) if p >= t],
            **{name: float(value) for name, value in zip(config.regression_targets, scores)},
        })
    return results


def test_decode_matches_card_code():
    config = config_class()(emotion_thresholds={"fear": 0.3, "hope": 0.7, "sarcasm": 0.5000001})
    generator = torch.Generator().manual_seed(0)
    logits = [torch.randn(256, size, generator=generator) * 3 for size in (5, 6, 7, 3)]
    # Rows on the boundaries: a tie between two classes, and emotion probabilities exactly at the thresholds.
    logits[0][0] = torch.tensor([1.0, 1.0, 0.0, -1.0, 0.5])
    logits[2][1] = torch.logit(torch.tensor([0.5, 0.3, 0.5, 0.5, 0.5, 0.7, 0.5000001], dtype=torch.float64)).float()

    results = hub.decode_predictions(config, *logits)

    expected = _card_decisions(*logits, config)
    for result, reference in zip(results, expected, strict=True):
        assert {key: result[key] for key in reference} == reference
        assert result["truncated"] is False


def test_decode_uses_config_label_names():
    config = config_class()(
        sentiment_labels=["up", "down"], action_labels=["in", "out"], emotion_labels=["joy"], regression_targets=["heat"]
    )
    results = hub.decode_predictions(
        config,
        torch.tensor([[0.0, 1.0]]),
        torch.tensor([[2.0, 1.0]]),
        torch.tensor([[3.0]]),
        torch.tensor([[1.7]]),
        truncated=[True],
        return_scores=True,
    )

    assert results == [{
        "sentiment_strength": "down",
        "action_signal": "in",
        "emotions": ["joy"],
        "heat": 1.0,
        "truncated": True,
        "sentiment_scores": pytest.approx({"up": 0.2689414, "down": 0.7310586}),
        "action_scores": pytest.approx({"in": 0.7310586, "out": 0.2689414}),
        "emotion_scores": pytest.approx({"joy": 0.9525741}),
    }]


def test_decode_weighted_mean_of_segments():
    config = config_class()(
        sentiment_labels=["pos", "neg"], action_labels=["buy", "sell"], emotion_labels=["fear"], regression_targets=["score"]
    )
    # Input 0 has one row; input 1 has two rows with weights 1 and 3.
    results = hub.decode_predictions(
        config,
        torch.tensor([[0.0, 0.1], [4.0, 0.0], [0.0, 1.0]]),
        torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]),
        torch.tensor([[-1.0], [3.0], [-3.0]]),
        torch.tensor([[0.5], [2.0], [-1.0]]),
        segments=[1, 2],
        weights=[9.0, 1.0, 3.0],
        return_scores=True,
    )
    sentiment_neg = (torch.tensor([4.0, 0.0]).softmax(-1)[1] + 3 * torch.tensor([0.0, 1.0]).softmax(-1)[1]) / 4
    fear = (torch.sigmoid(torch.tensor(3.0)) + 3 * torch.sigmoid(torch.tensor(-3.0))) / 4

    assert [result["segments"] for result in results] == [1, 2]
    assert results[0]["sentiment_strength"] == "neg"
    assert results[0]["emotions"] == []
    assert results[0]["score"] == 0.5
    assert results[1]["sentiment_scores"]["neg"] == pytest.approx(sentiment_neg.item())
    assert results[1]["sentiment_strength"] == "neg"
    assert results[1]["action_signal"] == "sell"
    assert results[1]["emotion_scores"]["fear"] == pytest.approx(fear.item())
    assert results[1]["emotions"] == []
    assert results[1]["score"] == pytest.approx(0.25)


def test_decode_rejects_bad_segments():
    config = config_class()()
    outputs = [torch.zeros(3, size) for size in (5, 6, 7, 3)]

    with pytest.raises(ValueError, match=r"Invalid segments=\[1, 1\]: .* add up to the 3 rows"):
        hub.decode_predictions(config, *outputs, segments=[1, 1])
