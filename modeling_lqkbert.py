"""LQ-KBERT: a BERT encoder with four heads that read one Korean crypto-market sentence.

The heads predict sentiment strength (softmax), action signal (softmax), emotions (independent sigmoids) and three
scores in [0, 1] (linear outputs that the caller clamps). The output names and label orders are a public contract:
the published model card reads `logits_senti`, `logits_act`, `logits_emo` and `pred_reg` by name.
"""

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from transformers import BertModel, BertPreTrainedModel
from transformers.utils import ModelOutput, logging

from .configuration_lqkbert import LQKBertConfig


logger = logging.get_logger(__name__)


@dataclass
class LQKBertOutput(ModelOutput):
    r"""
    Output of [`LQKBertModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when any label is given):
            Weighted sum of the four head losses, with the weights of `config.loss_weights`.
        loss_senti, loss_act, loss_emo, loss_reg (`torch.FloatTensor` of shape `()`, *optional*):
            Unweighted loss of each head over the rows (or, for `loss_reg`, the entries) that carry a label. A head
            with no label in the batch has a loss of exactly zero.
        logits_senti (`torch.FloatTensor` of shape `(batch_size, config.num_sentiment_labels)`):
            Sentiment-strength logits, in the order of `config.sentiment_labels`.
        logits_act (`torch.FloatTensor` of shape `(batch_size, config.num_action_labels)`):
            Action-signal logits, in the order of `config.action_labels`.
        logits_emo (`torch.FloatTensor` of shape `(batch_size, config.num_emotion_labels)`):
            Emotion logits, one independent sigmoid each, in the order of `config.emotion_labels`.
        pred_reg (`torch.FloatTensor` of shape `(batch_size, config.num_regression_targets)`):
            Unclamped scores in the order of `config.regression_targets`; clamp them to [0, 1] for use.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            The embedding output and the output of each layer, each of shape `(batch_size, sequence_length,
            hidden_size)`.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            Attention weights of each layer, each of shape `(batch_size, num_heads, sequence_length,
            sequence_length)`.
    """

    loss: Optional[torch.FloatTensor] = None
    loss_senti: Optional[torch.FloatTensor] = None
    loss_act: Optional[torch.FloatTensor] = None
    loss_emo: Optional[torch.FloatTensor] = None
    loss_reg: Optional[torch.FloatTensor] = None
    logits_senti: Optional[torch.FloatTensor] = None
    logits_act: Optional[torch.FloatTensor] = None
    logits_emo: Optional[torch.FloatTensor] = None
    pred_reg: Optional[torch.FloatTensor] = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None


class LQKBertPreTrainedModel(BertPreTrainedModel):
    """Base class that ties LQ-KBERT models to their config and to BERT's weight init and checkpoint layout."""

    config_class = LQKBertConfig
    base_model_prefix = "bert"


class LQKBertModel(LQKBertPreTrainedModel):
    """
    BERT encoder with four heads on the pooled `[CLS]` output: sentiment strength, action signal, emotions and the
    regression scores (certainty, relevance, toxicity).

    Loading a plain BERT checkpoint (such as klue/bert-base) with `from_pretrained` fills the encoder and pooler from
    it and initializes the heads from `config.initializer_range`.
    """

    # Each head's loss is a mean over its own labeled rows, so Trainer must scale it for gradient accumulation itself
    # rather than pass `num_items_in_batch`, which counts rows, not labels per head.
    accepts_loss_kwargs = False

    def __init__(self, config: LQKBertConfig):
        super().__init__(config)

        self.bert = BertModel(config, add_pooling_layer=True)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)

        self.head_senti = nn.Linear(config.hidden_size, config.num_sentiment_labels)
        self.head_act = nn.Linear(config.hidden_size, config.num_action_labels)
        self.head_emo = nn.Linear(config.hidden_size, config.num_emotion_labels)
        self.head_reg = nn.Linear(config.hidden_size, config.num_regression_targets)

        self.post_init()

    def get_input_embeddings(self):
        return self.bert.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.bert.set_input_embeddings(value)

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        labels_senti: Optional[torch.Tensor] = None,
        labels_act: Optional[torch.Tensor] = None,
        labels_emo: Optional[torch.Tensor] = None,
        labels_reg: Optional[torch.Tensor] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs,
    ):
        r"""
        labels_senti (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Sentiment class index per row; -100 marks a row without a sentiment label.
        labels_act (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Action class index per row; -100 marks a row without an action label.
        labels_emo (`torch.Tensor` of shape `(batch_size, num_emotion_labels)`, *optional*):
            Multi-hot emotion targets in [0, 1] of any dtype; a row with any negative entry has no emotion label.
        labels_reg (`torch.FloatTensor` of shape `(batch_size, num_regression_targets)`, *optional*):
            Regression targets; NaN marks a missing target in that row.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if output_attentions and self.config._attn_implementation != "eager":
            logger.warning_once(
                f"output_attentions=True needs attn_implementation='eager', but this model uses "
                f"{self.config._attn_implementation!r}, which computes no attention weights. Load the model with "
                "attn_implementation='eager' to get them."
            )

        encoder_outputs = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        pooled = self.dropout(encoder_outputs.pooler_output)

        logits_senti = self.head_senti(pooled)
        logits_act = self.head_act(pooled)
        logits_emo = self.head_emo(pooled)
        pred_reg = self.head_reg(pooled)

        loss = loss_senti = loss_act = loss_emo = loss_reg = None
        if any(labels is not None for labels in (labels_senti, labels_act, labels_emo, labels_reg)):
            loss_senti = _class_loss("labels_senti", logits_senti, labels_senti)
            loss_act = _class_loss("labels_act", logits_act, labels_act)
            loss_emo = _emotion_loss(logits_emo, labels_emo)
            loss_reg = _regression_loss(pred_reg, labels_reg, self.config.regression_loss)

            weights = self.config.loss_weights
            loss = (
                weights["senti"] * loss_senti
                + weights["act"] * loss_act
                + weights["emo"] * loss_emo
                + weights["reg"] * loss_reg
            )

        output = LQKBertOutput(
            loss=loss,
            loss_senti=loss_senti,
            loss_act=loss_act,
            loss_emo=loss_emo,
            loss_reg=loss_reg,
            logits_senti=logits_senti,
            logits_act=logits_act,
            logits_emo=logits_emo,
            pred_reg=pred_reg,
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


def _zero_loss(logits):
    # Multiplying keeps the zero in the autograd graph, so every parameter still receives a (zero) gradient, as
    # DistributedDataParallel expects.
    return logits.sum() * 0.0


def _check_batch(name, labels, logits, expected_shape):
    if tuple(labels.shape) != expected_shape:
        raise ValueError(
            f"Invalid {name} of shape {tuple(labels.shape)}: expected {expected_shape} for a batch of "
            f"{logits.shape[0]} rows."
        )


def _class_loss(name, logits, labels):
    if labels is None:
        return _zero_loss(logits)

    labels = labels.to(logits.device)
    if labels.dim() == 2 and labels.shape[-1] == 1:
        labels = labels.squeeze(-1)
    _check_batch(name, labels, logits, (logits.shape[0],))
    if labels.is_floating_point():
        if not torch.all((labels == labels.round()) | torch.isnan(labels)):
            raise ValueError(f"Invalid {name}: class indices must be whole numbers, got {labels.tolist()}.")
        labels = torch.nan_to_num(labels, nan=-100.0)
    labels = labels.long()

    present = labels != -100
    num_classes = logits.shape[-1]
    out_of_range = present & ((labels < 0) | (labels >= num_classes))
    if out_of_range.any():
        raise ValueError(
            f"Invalid {name} values {labels[out_of_range].tolist()}: use a class index in [0, {num_classes - 1}], "
            "or -100 for a missing label."
        )

    if not present.any():
        return _zero_loss(logits)
    return F.cross_entropy(logits[present].float(), labels[present])


def _emotion_loss(logits, labels):
    if labels is None:
        return _zero_loss(logits)

    labels = labels.to(device=logits.device, dtype=torch.float32)
    _check_batch("labels_emo", labels, logits, tuple(logits.shape))

    present = ~(labels < 0).any(dim=-1)
    if (labels[present] > 1).any() or torch.isnan(labels[present]).any():
        raise ValueError(
            "Invalid labels_emo: targets must lie in [0, 1] (multi-hot), with a negative entry marking a row "
            f"without emotion labels; got {labels.tolist()}."
        )

    if not present.any():
        return _zero_loss(logits)
    return F.binary_cross_entropy_with_logits(logits[present].float(), labels[present])


def _regression_loss(predictions, labels, kind):
    if labels is None:
        return _zero_loss(predictions)

    labels = labels.to(device=predictions.device, dtype=torch.float32)
    _check_batch("labels_reg", labels, predictions, tuple(predictions.shape))

    present = ~torch.isnan(labels)
    if not present.any():
        return _zero_loss(predictions)

    predicted = predictions[present].float()
    target = labels[present]
    if kind == "mse":
        return F.mse_loss(predicted, target)
    if kind == "l1":
        return F.l1_loss(predicted, target)
    return F.smooth_l1_loss(predicted, target)


LQKBertModel.register_for_auto_class("AutoModel")

__all__ = ["LQKBertOutput", "LQKBertPreTrainedModel", "LQKBertModel"]
