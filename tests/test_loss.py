"""The multi-task loss: masking of missing labels, label dtypes and weights, against hand computations."""

import math

import pytest
import torch
from torch.nn import functional as F

from conftest import make_tiny_model


VOCAB_SIZE = 50
NAN = float("nan")


@pytest.fixture(scope="module")
def model():
    return make_tiny_model(VOCAB_SIZE, seed=3)


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(4)
    return {"input_ids": torch.randint(5, VOCAB_SIZE, (4, 9)), "attention_mask": torch.ones(4, 9, dtype=torch.long)}


def forward(model, batch, **labels):
    with torch.no_grad():
        return model(**batch, **labels)


def test_partial_labels_match_hand_computation(model, batch):
    labels_senti = torch.tensor([0, -100, 4, 2])
    labels_act = torch.tensor([-100, -100, 5, 1])
    labels_emo = torch.tensor([[1, 0, 0, 0, 0, 1, 0], [-1] * 7, [0, 1, 0, 0, 1, 0, 0], [0] * 7])
    labels_reg = torch.tensor([[0.9, NAN, 0.0], [NAN, NAN, NAN], [0.3, 0.8, NAN], [0.5, 0.5, 0.5]])

    out = forward(model, batch, labels_senti=labels_senti, labels_act=labels_act, labels_emo=labels_emo,
                  labels_reg=labels_reg)

    expected_senti = F.cross_entropy(out.logits_senti[[0, 2, 3]], torch.tensor([0, 4, 2]))
    expected_act = F.cross_entropy(out.logits_act[[2, 3]], torch.tensor([5, 1]))
    expected_emo = F.binary_cross_entropy_with_logits(out.logits_emo[[0, 2, 3]], labels_emo[[0, 2, 3]].float())
    present = ~torch.isnan(labels_reg)
    expected_reg = ((out.pred_reg[present] - labels_reg[present]) ** 2).mean()

    torch.testing.assert_close(out.loss_senti, expected_senti)
    torch.testing.assert_close(out.loss_act, expected_act)
    torch.testing.assert_close(out.loss_emo, expected_emo)
    torch.testing.assert_close(out.loss_reg, expected_reg)
    torch.testing.assert_close(out.loss, expected_senti + expected_act + expected_emo + expected_reg)


def test_head_without_labels_adds_exact_zero(model, batch):
    out = forward(
        model,
        batch,
        labels_senti=torch.tensor([-100] * 4),
        labels_act=torch.tensor([1, 2, 3, 4]),
        labels_emo=torch.full((4, 7), -1),
        labels_reg=torch.full((4, 3), NAN),
    )

    assert out.loss_senti.item() == 0.0
    assert out.loss_emo.item() == 0.0
    assert out.loss_reg.item() == 0.0
    assert math.isfinite(out.loss.item())
    torch.testing.assert_close(out.loss, out.loss_act)


def test_missing_label_arguments_count_as_zero(model, batch):
    out = forward(model, batch, labels_act=torch.tensor([0, 1, 2, 3]))

    assert out.loss_senti.item() == 0.0
    assert out.loss_emo.item() == 0.0
    assert out.loss_reg.item() == 0.0
    torch.testing.assert_close(out.loss, out.loss_act)


def test_no_labels_no_loss(model, batch):
    out = forward(model, batch)

    assert out.loss is None
    assert out.loss_senti is None


def test_zero_loss_still_reaches_every_head(batch):
    model = make_tiny_model(VOCAB_SIZE, seed=3)
    model(**batch, labels_senti=torch.tensor([-100] * 4), labels_act=torch.tensor([0, 1, 2, 3])).loss.backward()

    assert model.head_senti.weight.grad is not None
    assert torch.count_nonzero(model.head_senti.weight.grad) == 0
    assert torch.count_nonzero(model.head_act.weight.grad) > 0


def test_integer_labels_are_cast(model, batch):
    as_int = forward(
        model, batch, labels_senti=torch.tensor([0, 1, 2, 3], dtype=torch.int32),
        labels_emo=torch.tensor([[1, 0, 0, 0, 0, 1, 0]] * 4, dtype=torch.int64),
        labels_reg=torch.tensor([[1, 0, 1]] * 4, dtype=torch.int64),
    )
    as_float = forward(
        model, batch, labels_senti=torch.tensor([0, 1, 2, 3]),
        labels_emo=torch.tensor([[1.0, 0, 0, 0, 0, 1, 0]] * 4),
        labels_reg=torch.tensor([[1.0, 0.0, 1.0]] * 4),
    )

    torch.testing.assert_close(as_int.loss, as_float.loss)
    assert math.isfinite(as_int.loss.item())


def test_emotion_labels_bool_and_float16(model, batch):
    multi_hot = torch.tensor([[1, 0, 0, 1, 0, 0, 0]] * 4)
    reference = forward(model, batch, labels_emo=multi_hot.float()).loss_emo

    for dtype in (torch.bool, torch.float16, torch.uint8):
        torch.testing.assert_close(forward(model, batch, labels_emo=multi_hot.to(dtype)).loss_emo, reference)


def test_loss_weights_scale_parts(batch):
    model = make_tiny_model(VOCAB_SIZE, seed=3, loss_weights={"senti": 2.0, "act": 0.0, "emo": 0.5})
    model.eval()

    out = forward(
        model, batch,
        labels_senti=torch.tensor([0, 1, 2, 3]),
        labels_act=torch.tensor([0, 1, 2, 3]),
        labels_emo=torch.zeros(4, 7),
        labels_reg=torch.full((4, 3), 0.5),
    )

    torch.testing.assert_close(out.loss, 2.0 * out.loss_senti + 0.5 * out.loss_emo + out.loss_reg)


@pytest.mark.parametrize(
    ("kind", "function"), [("l1", F.l1_loss), ("smooth_l1", F.smooth_l1_loss), ("mse", F.mse_loss)]
)
def test_regression_loss_kinds(batch, kind, function):
    model = make_tiny_model(VOCAB_SIZE, seed=3, regression_loss=kind).eval()
    labels_reg = torch.tensor([[0.1, NAN, 0.9]] * 4)

    out = forward(model, batch, labels_reg=labels_reg)

    present = ~torch.isnan(labels_reg)
    torch.testing.assert_close(out.loss_reg, function(out.pred_reg[present], labels_reg[present]))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"labels_senti": torch.tensor([0, 1, 5, 2])}, r"Invalid labels_senti values \[5\]: use a class index in \[0, 4\]"),
        ({"labels_act": torch.tensor([0, 1, -3, 2])}, r"Invalid labels_act values \[-3\]: use a class index in \[0, 5\]"),
        ({"labels_senti": torch.tensor([0, 1])}, r"Invalid labels_senti of shape \(2,\): expected \(4,\)"),
        ({"labels_emo": torch.zeros(4, 6)}, r"Invalid labels_emo of shape \(4, 6\): expected \(4, 7\)"),
        ({"labels_emo": torch.full((4, 7), 2.0)}, r"Invalid labels_emo: targets must lie in \[0, 1\]"),
        ({"labels_reg": torch.zeros(4)}, r"Invalid labels_reg of shape \(4,\): expected \(4, 3\)"),
        ({"labels_senti": torch.tensor([0.5, 1.0, 2.0, 3.0])}, r"Invalid labels_senti: class indices must be whole"),
    ],
)
def test_invalid_labels_raise(model, batch, labels, message):
    with pytest.raises(ValueError, match=message):
        forward(model, batch, **labels)
