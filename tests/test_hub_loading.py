"""Loading through the real Auto classes, in fresh offline subprocesses, as Hub users load the model."""

import json
import os
import re

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertModel

from conftest import KOREAN_SENTENCES, REFERENCE_DIR, TINY_DIMENSIONS, json_lines, make_tiny_config, run_python
from lqkbert.model_folder import load_tokenizer, model_class, save_model_folder


CARD_KEYS = [
    "text",
    "pred_sentiment_strength",
    "pred_action_signal",
    "pred_emotions",
    "pred_certainty",
    "pred_relevance",
    "pred_toxicity",
]
HEAD_PARAMETERS = {f"head_{head}.{kind}" for head in ("senti", "act", "emo", "reg") for kind in ("weight", "bias")}


def test_card_snippet_runs_unchanged(tiny_model_dir, tmp_path):
    snippet_path = REFERENCE_DIR / "model_card_snippet.py"
    if not snippet_path.is_file():
        pytest.skip(f"the model card snippet is not at {snippet_path}")
    snippet = snippet_path.read_text(encoding="utf-8")

    pattern = r'^repo_or_dir = "[^"]*"'
    assert len(re.findall(pattern, snippet, flags=re.M)) == 1
    snippet = re.sub(pattern, f"repo_or_dir = {str(tiny_model_dir)!r}", snippet, flags=re.M)

    results = json_lines(run_python(snippet, tmp_path))

    assert len(results) == 4
    for result in results:
        assert list(result) == CARD_KEYS
        assert result["pred_sentiment_strength"] in ["strong_pos", "weak_pos", "neutral", "weak_neg", "strong_neg"]
        assert result["pred_action_signal"] in ["buy", "hold", "sell", "avoid", "info_only", "ask_info"]
        assert set(result["pred_emotions"]) <= {"greed", "fear", "confidence", "doubt", "anger", "hope", "sarcasm"}
        for key in ("pred_certainty", "pred_relevance", "pred_toxicity"):
            assert 0.0 <= result[key] <= 1.0


def test_offline_load_matches_saving_process(tiny_model_dir, tokenizer, tmp_path):
    model = model_class().from_pretrained(tiny_model_dir).eval()
    texts = KOREAN_SENTENCES[:3]
    with torch.inference_mode():
        expected = model(**tokenizer(texts, return_tensors="pt", padding=True))

    stdout = run_python(
        f"""
        import json, torch
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        config = AutoConfig.from_pretrained({str(tiny_model_dir)!r}, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained({str(tiny_model_dir)!r})
        model = AutoModel.from_pretrained({str(tiny_model_dir)!r}, trust_remote_code=True).eval()
        with torch.inference_mode():
            out = model(**tokenizer({texts!r}, return_tensors="pt", padding=True))
        print(json.dumps({{
            "config_class": type(config).__name__,
            "model_class": type(model).__name__,
            **{{key: out[key].tolist() for key in ("logits_senti", "logits_act", "logits_emo", "pred_reg")}},
        }}))
        """,
        tmp_path,
    )
    (loaded,) = json_lines(stdout)

    assert loaded["config_class"] == "LQKBertConfig"
    assert loaded["model_class"] == "LQKBertModel"
    for key in ("logits_senti", "logits_act", "logits_emo", "pred_reg"):
        torch.testing.assert_close(torch.tensor(loaded[key]), expected[key], atol=1e-6, rtol=0)


def test_resave_keeps_code_and_auto_map(tiny_model_dir, tmp_path):
    previous = tiny_model_dir
    for step in ("b", "c"):
        target = tmp_path / step
        run_python(
            f"""
            from transformers import AutoModel, AutoTokenizer
            model = AutoModel.from_pretrained({str(previous)!r}, trust_remote_code=True)
            model.save_pretrained({str(target)!r})
            AutoTokenizer.from_pretrained({str(previous)!r}).save_pretrained({str(target)!r})
            """,
            tmp_path,
        )

        assert (target / "configuration_lqkbert.py").is_file()
        assert (target / "modeling_lqkbert.py").is_file()
        auto_map = json.loads((target / "config.json").read_text())["auto_map"]
        assert auto_map == {
            "AutoConfig": "configuration_lqkbert.LQKBertConfig",
            "AutoModel": "modeling_lqkbert.LQKBertModel",
        }
        previous = target

    stdout = run_python(
        f"""
        from transformers import AutoModel
        print(type(AutoModel.from_pretrained({str(previous)!r}, trust_remote_code=True)).__name__)
        """,
        tmp_path,
    )
    assert stdout.strip().splitlines()[-1] == "LQKBertModel"


@pytest.fixture(scope="module")
def plain_bert_dir(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("plain_bert")
    torch.manual_seed(1)
    BertModel(BertConfig(vocab_size=len(tokenizer), **TINY_DIMENSIONS)).save_pretrained(folder)
    return folder


def _check_bert_weights_loaded(model, info, plain_bert_dir):
    saved = load_file(str(plain_bert_dir / "model.safetensors"))
    state = model.state_dict()
    for key, value in saved.items():
        torch.testing.assert_close(state[f"bert.{key}"], value, atol=0, rtol=0, msg=f"encoder weight {key} differs")

    assert set(info["missing_keys"]) == HEAD_PARAMETERS
    assert not info["mismatched_keys"]
    assert not info["unexpected_keys"]

    head_weights = torch.cat([getattr(model, f"head_{head}").weight.flatten() for head in ("senti", "act", "emo", "reg")])
    assert torch.isfinite(head_weights).all()
    assert abs(head_weights.std().item() - model.config.initializer_range) < 0.004
    for head in ("senti", "act", "emo", "reg"):
        assert torch.equal(getattr(model, f"head_{head}").bias, torch.zeros_like(getattr(model, f"head_{head}").bias))


def test_plain_bert_loads_into_model_class(plain_bert_dir, tokenizer):
    config = make_tiny_config(len(tokenizer))
    model, info = model_class().from_pretrained(plain_bert_dir, config=config, output_loading_info=True)

    _check_bert_weights_loaded(model, info, plain_bert_dir)


def test_plain_bert_loads_through_auto_classes(plain_bert_dir, tiny_model_dir):
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(tiny_model_dir, trust_remote_code=True)
    # The code lives in our folder, not in the BERT folder, so the references name their folder: "folder--module.Class"
    # is the form transformers uses for a config taken from another repository.
    config.auto_map = {auto_class: f"{tiny_model_dir}--{reference}" for auto_class, reference in config.auto_map.items()}
    model, info = AutoModel.from_pretrained(
        plain_bert_dir, config=config, trust_remote_code=True, output_loading_info=True
    )

    assert type(model).__name__ == "LQKBertModel"
    _check_bert_weights_loaded(model, info, plain_bert_dir)


def test_plain_bert_unaffected_after_loading_ours(plain_bert_dir, tiny_model_dir, tmp_path):
    stdout = run_python(
        f"""
        from transformers import AutoModel
        first = AutoModel.from_pretrained({str(tiny_model_dir)!r}, trust_remote_code=True)
        second = AutoModel.from_pretrained({str(tiny_model_dir)!r}, trust_remote_code=True)
        plain = AutoModel.from_pretrained({str(plain_bert_dir)!r})
        print(type(first).__name__, type(second).__name__, type(plain).__name__)
        """,
        tmp_path,
    )
    assert stdout.strip().splitlines()[-1] == "LQKBertModel LQKBertModel BertModel"


def test_save_model_folder_is_complete(tiny_model_dir):
    names = {path.name for path in tiny_model_dir.iterdir()}

    assert {"config.json", "model.safetensors", "configuration_lqkbert.py", "modeling_lqkbert.py"} <= names
    assert "vocab.txt" in names or "tokenizer.json" in names
    assert not [name for name in names if name.endswith((".bin", ".pt", ".pkl"))]
    assert not [path for path in tiny_model_dir.parent.iterdir() if ".partial-" in path.name]


def test_save_model_folder_permissions(tiny_model_dir):
    umask = os.umask(0)
    os.umask(umask)

    assert tiny_model_dir.stat().st_mode & 0o777 == 0o777 & ~umask


def test_load_tokenizer_asks_nothing(tiny_model_dir, tmp_path):
    stdout = run_python(
        f"""
        import sys
        from lqkbert.model_folder import load_tokenizer
        load_tokenizer({str(tiny_model_dir)!r})
        print("rest of stdin:", sys.stdin.read())
        """,
        tmp_path,
    )
    assert "Do you wish to run the custom code" not in stdout


def test_save_model_folder_keeps_old_folder_on_failure(tiny_model_dir, tokenizer, tmp_path):
    target = tmp_path / "model"
    model = model_class().from_pretrained(tiny_model_dir)
    save_model_folder(model, tokenizer, target)
    before = (target / "model.safetensors").read_bytes()

    class BrokenTokenizer:
        def save_pretrained(self, folder):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_model_folder(model, BrokenTokenizer(), target)

    assert (target / "model.safetensors").read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]


def test_eager_and_sdpa_agree(tiny_model_dir, tokenizer):
    batch = tokenizer(KOREAN_SENTENCES[:4], return_tensors="pt", padding=True)
    eager = model_class().from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    sdpa = model_class().from_pretrained(tiny_model_dir, attn_implementation="sdpa").eval()

    with torch.inference_mode():
        expected, actual = eager(**batch), sdpa(**batch)

    for key in ("logits_senti", "logits_act", "logits_emo", "pred_reg"):
        torch.testing.assert_close(actual[key], expected[key], atol=1e-5, rtol=0)


def test_gradient_checkpointing_same_loss_and_grads(tiny_model_dir, tokenizer):
    batch = tokenizer(KOREAN_SENTENCES[:4], return_tensors="pt", padding=True)
    labels = dict(
        labels_senti=torch.tensor([0, 1, 2, -100]),
        labels_act=torch.tensor([5, -100, 0, 1]),
        labels_emo=torch.tensor([[1, 0, 0, 0, 0, 1, 0]] * 4),
        labels_reg=torch.tensor([[0.5, 0.9, 0.0]] * 4),
    )

    def loss_and_grads(checkpointing):
        model = model_class().from_pretrained(tiny_model_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        if checkpointing:
            model.gradient_checkpointing_enable()
        model.train()
        loss = model(**batch, **labels).loss
        loss.backward()
        return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain_loss, plain_grads = loss_and_grads(False)
    checkpointed_loss, checkpointed_grads = loss_and_grads(True)

    torch.testing.assert_close(checkpointed_loss, plain_loss, atol=1e-6, rtol=0)
    assert checkpointed_grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, atol=1e-6, rtol=1e-5, msg=f"gradient of {name}")


def test_outputs_have_card_shapes(tiny_model_dir, tokenizer):
    # Attention weights exist only in eager attention; SDPA never materializes them.
    model = model_class().from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    batch = tokenizer(KOREAN_SENTENCES[:3], return_tensors="pt", padding=True)

    with torch.inference_mode():
        out = model(**batch, output_hidden_states=True, output_attentions=True)

    assert out.logits_senti.shape == (3, 5)
    assert out.logits_act.shape == (3, 6)
    assert out.logits_emo.shape == (3, 7)
    assert out.pred_reg.shape == (3, 3)
    assert out.loss is None
    assert len(out.hidden_states) == TINY_DIMENSIONS["num_hidden_layers"] + 1
    assert len(out.attentions) == TINY_DIMENSIONS["num_hidden_layers"]


def test_tuple_output_and_inputs_embeds(tiny_model_dir, tokenizer):
    model = model_class().from_pretrained(tiny_model_dir).eval()
    batch = tokenizer(KOREAN_SENTENCES[:2], return_tensors="pt", padding=True)

    with torch.inference_mode():
        by_ids = model(**batch)
        embeds = model.get_input_embeddings()(batch["input_ids"])
        by_embeds = model(
            inputs_embeds=embeds, attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
        )
        as_tuple = model(**batch, return_dict=False)

    torch.testing.assert_close(by_embeds.logits_senti, by_ids.logits_senti)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], by_ids.logits_senti)


def test_tokenizer_folder_loads_with_root_settings(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)

    assert tokenizer.model_max_length == 512
    assert tokenizer.pad_token_id == 0
