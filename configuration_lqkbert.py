"""LQ-KBERT configuration: a BERT encoder config plus the description of the four task heads."""

import math

from transformers import BertConfig


SENTIMENT_LABELS = ["strong_pos", "weak_pos", "neutral", "weak_neg", "strong_neg"]
ACTION_LABELS = ["buy", "hold", "sell", "avoid", "info_only", "ask_info"]
EMOTION_LABELS = ["greed", "fear", "confidence", "doubt", "anger", "hope", "sarcasm"]
REGRESSION_TARGETS = ["certainty", "relevance", "toxicity"]

# Keys of `loss_weights`, one per head, matching the suffixes of the output names (`logits_senti`, ...).
LOSS_WEIGHT_KEYS = ["senti", "act", "emo", "reg"]
REGRESSION_LOSSES = ["mse", "l1", "smooth_l1"]


class LQKBertConfig(BertConfig):
    r"""
    Configuration of [`LQKBertModel`]: every [`BertConfig`] field, plus the label names, decision thresholds, loss
    settings and input limit of the multi-task heads. The defaults describe the published LQ-KBERT-Base checkpoint
    (klue/bert-base dimensions and the model card's label orders).

    Args:
        sentiment_labels (`list[str]`, *optional*):
            Names of the `sentiment_strength` classes, in the order of `logits_senti`. Defaults to
            `["strong_pos", "weak_pos", "neutral", "weak_neg", "strong_neg"]`.
        action_labels (`list[str]`, *optional*):
            Names of the `action_signal` classes, in the order of `logits_act`. Defaults to
            `["buy", "hold", "sell", "avoid", "info_only", "ask_info"]`.
        emotion_labels (`list[str]`, *optional*):
            Names of the multi-label emotions, in the order of `logits_emo`. Defaults to
            `["greed", "fear", "confidence", "doubt", "anger", "hope", "sarcasm"]`.
        regression_targets (`list[str]`, *optional*):
            Names of the scores in `pred_reg`, each meant to lie in [0, 1]. Defaults to
            `["certainty", "relevance", "toxicity"]`.
        emotion_thresholds (`dict[str, float]`, *optional*):
            Decision threshold on the sigmoid probability of each emotion, strictly between 0 and 1. Emotions missing
            from the mapping use 0.5, the model card's threshold.
        classifier_dropout (`float`, *optional*):
            Dropout before the four heads. `None` uses `hidden_dropout_prob`, as BERT's classifiers do.
        loss_weights (`dict[str, float]`, *optional*):
            Non-negative weight of each head's loss in the total loss, keyed by `senti`, `act`, `emo` and `reg`.
            Missing keys weigh 1.0.
        regression_loss (`str`, *optional*, defaults to `"mse"`):
            Loss of the regression head: `"mse"`, `"l1"` or `"smooth_l1"`.
        max_text_length (`int`, *optional*, defaults to 200):
            Maximum input length in characters that the model was trained for. The card's code truncates at
            `max_length=200` tokens; the pipeline reports longer texts instead of cutting them silently.
        num_sentiment_labels, num_action_labels, num_emotion_labels, num_regression_targets (`int`, *optional*):
            Head sizes. They are derived from the label lists; when given, they must agree with them.
        kwargs:
            Any [`BertConfig`] argument (`vocab_size`, `hidden_size`, `num_hidden_layers`, ...).

    Example:

    ```python
    >>> from configuration_lqkbert import LQKBertConfig
    >>> config = LQKBertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    >>> config.num_action_labels
    6
    ```
    """

    model_type = "lqkbert"

    # Outputs that `Trainer.predict` leaves out, so that predictions are exactly the four heads in a fixed order.
    keys_to_ignore_at_inference = ["loss_senti", "loss_act", "loss_emo", "loss_reg", "hidden_states", "attentions"]

    def __init__(
        self,
        vocab_size=32000,
        sentiment_labels=None,
        action_labels=None,
        emotion_labels=None,
        regression_targets=None,
        emotion_thresholds=None,
        classifier_dropout=None,
        loss_weights=None,
        regression_loss="mse",
        max_text_length=200,
        num_sentiment_labels=None,
        num_action_labels=None,
        num_emotion_labels=None,
        num_regression_targets=None,
        **kwargs,
    ):
        self.sentiment_labels = _check_labels("sentiment_labels", sentiment_labels, SENTIMENT_LABELS)
        self.action_labels = _check_labels("action_labels", action_labels, ACTION_LABELS)
        self.emotion_labels = _check_labels("emotion_labels", emotion_labels, EMOTION_LABELS)
        self.regression_targets = _check_labels("regression_targets", regression_targets, REGRESSION_TARGETS)

        _check_head_size("num_sentiment_labels", num_sentiment_labels, "sentiment_labels", self.sentiment_labels)
        _check_head_size("num_action_labels", num_action_labels, "action_labels", self.action_labels)
        _check_head_size("num_emotion_labels", num_emotion_labels, "emotion_labels", self.emotion_labels)
        _check_head_size("num_regression_targets", num_regression_targets, "regression_targets", self.regression_targets)

        self.emotion_thresholds = _check_thresholds(emotion_thresholds, self.emotion_labels)
        self.loss_weights = _check_loss_weights(loss_weights)

        if regression_loss not in REGRESSION_LOSSES:
            raise ValueError(f"Invalid regression_loss={regression_loss!r}: use one of {REGRESSION_LOSSES}.")
        self.regression_loss = regression_loss

        if isinstance(max_text_length, bool) or not isinstance(max_text_length, int) or max_text_length < 1:
            raise ValueError(f"Invalid max_text_length={max_text_length!r}: use a positive number of characters.")
        self.max_text_length = max_text_length

        if classifier_dropout is not None and not 0.0 <= classifier_dropout < 1.0:
            raise ValueError(
                f"Invalid classifier_dropout={classifier_dropout!r}: use a probability in [0, 1), "
                "or None to use hidden_dropout_prob."
            )

        super().__init__(vocab_size=vocab_size, classifier_dropout=classifier_dropout, **kwargs)

    @property
    def num_sentiment_labels(self):
        return len(self.sentiment_labels)

    @property
    def num_action_labels(self):
        return len(self.action_labels)

    @property
    def num_emotion_labels(self):
        return len(self.emotion_labels)

    @property
    def num_regression_targets(self):
        return len(self.regression_targets)

    def emotion_threshold_list(self):
        """Return the decision thresholds in the order of `emotion_labels`."""
        return [self.emotion_thresholds[name] for name in self.emotion_labels]


def _check_labels(field, labels, default):
    if labels is None:
        return list(default)

    if isinstance(labels, str) or not all(isinstance(name, str) and name for name in labels):
        raise ValueError(f"Invalid {field}={labels!r}: use a list of non-empty label names, such as {default}.")
    labels = list(labels)
    if not labels:
        raise ValueError(f"Invalid {field}=[]: the list is empty; give at least one label name, such as {default}.")

    duplicates = sorted({name for name in labels if labels.count(name) > 1})
    if duplicates:
        raise ValueError(f"Invalid {field}={labels!r}: duplicate names {duplicates}; each label must appear once.")
    return labels


def _check_head_size(field, size, labels_field, labels):
    if size is not None and size != len(labels):
        raise ValueError(
            f"Invalid {field}={size!r}: {labels_field} has {len(labels)} names {labels}, so the head size must be "
            f"{len(labels)}. Change the label list, not the size."
        )


def _check_thresholds(thresholds, emotion_labels):
    thresholds = dict(thresholds or {})

    unknown = sorted(set(thresholds) - set(emotion_labels))
    if unknown:
        raise ValueError(
            f"Invalid emotion_thresholds: unknown emotions {unknown}; the keys must be among {emotion_labels}."
        )

    for name, value in thresholds.items():
        valid = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 < value < 1.0
        if not valid:
            raise ValueError(
                f"Invalid emotion_thresholds[{name!r}]={value!r}: a threshold must lie strictly between 0 and 1."
            )
    return {name: float(thresholds.get(name, 0.5)) for name in emotion_labels}


def _check_loss_weights(weights):
    weights = dict(weights or {})

    unknown = sorted(set(weights) - set(LOSS_WEIGHT_KEYS))
    if unknown:
        raise ValueError(f"Invalid loss_weights: unknown keys {unknown}; the keys must be among {LOSS_WEIGHT_KEYS}.")

    for key, value in weights.items():
        valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
        if not valid:
            raise ValueError(f"Invalid loss_weights[{key!r}]={value!r}: a loss weight must be a finite number >= 0.")
    return {key: float(weights.get(key, 1.0)) for key in LOSS_WEIGHT_KEYS}


LQKBertConfig.register_for_auto_class("AutoConfig")

__all__ = ["LQKBertConfig"]
