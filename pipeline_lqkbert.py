"""LQ-KBERT pipeline: raw Korean text in, the model card's JSON out, in one call.

The module also contains the steps that every LQ-KBERT inference path shares: input checks, sentence splitting,
length-sorted batching and the decoding of the four heads into labels. Batch tools built on these functions return
exactly what the pipeline returns for the same logits.
"""

import collections.abc
import re

import torch

from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import ChunkPipeline
from transformers.utils import logging


logger = logging.get_logger(__name__)

TASK = "lqkbert"
LONG_TEXT_MODES = ("truncate", "split")
CONFIG_FIELDS = ("sentiment_labels", "action_labels", "emotion_labels", "regression_targets", "max_text_length")

# C0 and C1 control characters (Unicode category Cc) except tab, line feed and carriage return, which are whitespace
# and end lines (sentence boundaries in split mode).
_CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Python strings decoded from JSON can hold unpaired surrogates, which no tokenizer can encode as UTF-8.
_SURROGATES = re.compile("[\ud800-\udfff]")
# Sentence ends in Korean posts: runs of ASCII and CJK full stops, question and exclamation marks and ellipses.
_SENTENCE_END = re.compile("[.!?\u3002\u2026]+")
_LAST_WHITESPACE = re.compile(r"\s(?=\S*$)")


def _preview(value, limit=60):
    text = repr(value)
    if len(text) <= limit:
        return text
    if isinstance(value, str):
        return f"{text[:limit]}...' ({len(value)} characters)"
    return f"{text[:limit]}..."


def prepare_text(text, index=None):
    """Return `text` ready for the tokenizer, or raise naming the input (and its `index` in a batch) and the fix.

    - A value that is not a `str` (`None`, bytes, numbers, dicts) raises `TypeError`.
    - Control characters other than tab and line breaks are removed; unpaired surrogates become U+FFFD.
    - A text that is then empty or whitespace only raises `ValueError`.
    - Anything else, emoji-only text and texts of any length included, is returned for a normal prediction.
    """
    where = "Invalid input" if index is None else f"Invalid input at index {index}"
    if not isinstance(text, str):
        raise TypeError(
            f"{where}: expected a string, got {type(text).__name__} {_preview(text)}. Pass text, or leave the item out."
        )

    cleaned = _CONTROL_CHARACTERS.sub("", _SURROGATES.sub("\ufffd", text))
    if not cleaned.strip():
        raise ValueError(
            f"{where}: {_preview(text)} is empty or contains only whitespace and control characters, so there is "
            "nothing to classify. Leave the item out."
        )
    return cleaned


def split_text(text, max_chars):
    """Split `text` into sentences of at most `max_chars` characters each, in reading order.

    A sentence ends at a line break or after a run of `.`, `!`, `?`, `。` or `…`, but a `.` between two digits (`2.4`)
    ends nothing. A sentence longer than `max_chars` is cut into chunks of at most `max_chars` characters. Each cut
    falls on the last whitespace of the chunk when that lies in its second half, and mid-word otherwise. Blank pieces
    are dropped.
    """
    segments = []
    for line in text.splitlines():
        for sentence in _split_sentences(line):
            segments.extend(_chunk(sentence, max_chars))
    return segments


def _split_sentences(line):
    start = 0
    for match in _SENTENCE_END.finditer(line):
        end = match.end()
        is_decimal_point = (
            match.group() == "." and 0 < match.start() and end < len(line)
            and line[match.start() - 1].isdigit() and line[end].isdigit()
        )
        if is_decimal_point:
            continue
        sentence = line[start:end].strip()
        if sentence:
            yield sentence
        start = end

    rest = line[start:].strip()
    if rest:
        yield rest


def _chunk(sentence, max_chars):
    chunks = []
    while len(sentence) > max_chars:
        window = sentence[:max_chars]
        space = _LAST_WHITESPACE.search(window)
        cut = space.start() if space is not None and space.start() >= max_chars // 2 else max_chars
        chunks.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    if sentence:
        chunks.append(sentence)
    return chunks


def length_sorted_batches(lengths, batch_size):
    """Group the indices of `lengths` into batches of similar length, longest first, so that padding stays short.

    The batches cover every index once; callers put the results back in input order by index.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Invalid batch_size={batch_size!r}: use a positive integer, such as 64.")
    order = sorted(range(len(lengths)), key=lambda index: lengths[index], reverse=True)
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def count_tokens(tokenizer, text):
    """Return the number of tokens of `text` with special tokens, without truncation (and without its warning)."""
    return len(tokenizer.tokenize(text)) + tokenizer.num_special_tokens_to_add(pair=False)


def is_truncated(tokenizer, text, kept_tokens, max_length):
    """Return whether tokenizing `text` at `max_length` dropped tokens, given the `kept_tokens` that were kept."""
    return kept_tokens >= max_length and count_tokens(tokenizer, text) > max_length


def decode_predictions(
    config,
    logits_senti,
    logits_act,
    logits_emo,
    pred_reg,
    truncated=None,
    segments=None,
    weights=None,
    return_scores=False,
):
    """Decode the four head outputs into one result dict per input, as the model card defines them.

    The head outputs are tensors or arrays of shape `(num_rows, num_labels)` of any float dtype. Probabilities are
    computed in float32 and compared with the thresholds in float64, as the card's code compares Python floats. Each
    row is one input unless `segments` gives the number of consecutive rows (sentences) of each input. Per input:

    - `sentiment_strength` and `action_signal`: the label of the largest logit; for an input of several rows, the
      label of the largest mean softmax probability.
    - `emotions`: the names whose sigmoid probability is >= its threshold in `config.emotion_threshold_list()`; for
      several rows, the mean probability is compared.
    - one key per `config.regression_targets` name: the score clamped to [0, 1]; for several rows, the mean of the
      clamped scores.
    - `truncated`: the given flag (whether the tokenizer dropped tokens), False when `truncated` is None.
    - `segments`: the number of rows, only when `segments` is given.
    - with `return_scores`: `sentiment_scores` and `action_scores` (label -> softmax probability) and
      `emotion_scores` (name -> sigmoid probability).

    The means of several rows are weighted by `weights` (one per row, such as the sentence lengths in characters), or
    equal when `weights` is None.
    """
    logits_senti, logits_act, logits_emo, pred_reg = (
        torch.as_tensor(values).detach().to("cpu", torch.float32) for values in (logits_senti, logits_act, logits_emo, pred_reg)
    )
    num_rows = logits_senti.shape[0]
    probs_senti = logits_senti.softmax(dim=-1)
    probs_act = logits_act.softmax(dim=-1)
    probs_emo = torch.sigmoid(logits_emo)
    scores_reg = pred_reg.clamp(0.0, 1.0)

    if segments is None:
        choice_senti, choice_act = logits_senti, logits_act
        counts = None
    else:
        counts = list(segments)
        if sum(counts) != num_rows or any(count < 1 for count in counts):
            raise ValueError(
                f"Invalid segments={counts!r}: each input needs at least one row and the counts must add up to the "
                f"{num_rows} rows of the head outputs."
            )
        row_weights = torch.ones(num_rows) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        choice_senti = _combine_rows(logits_senti, probs_senti, counts, row_weights)
        choice_act = _combine_rows(logits_act, probs_act, counts, row_weights)
        probs_senti, probs_act, probs_emo, scores_reg = (
            _combine_rows(values, values, counts, row_weights) for values in (probs_senti, probs_act, probs_emo, scores_reg)
        )

    thresholds = torch.tensor(config.emotion_threshold_list(), dtype=torch.float64)
    senti_indices = choice_senti.argmax(dim=-1).tolist()
    act_indices = choice_act.argmax(dim=-1).tolist()
    emotion_flags = (probs_emo.double() >= thresholds).tolist()
    scores = scores_reg.tolist()
    flags = [False] * len(senti_indices) if truncated is None else list(truncated)

    results = []
    for row, senti_index in enumerate(senti_indices):
        result = {
            "sentiment_strength": config.sentiment_labels[senti_index],
            "action_signal": config.action_labels[act_indices[row]],
            "emotions": [name for name, flag in zip(config.emotion_labels, emotion_flags[row]) if flag],
        }
        result.update(zip(config.regression_targets, scores[row]))
        result["truncated"] = bool(flags[row])
        if counts is not None:
            result["segments"] = counts[row]
        if return_scores:
            result["sentiment_scores"] = dict(zip(config.sentiment_labels, probs_senti[row].tolist()))
            result["action_scores"] = dict(zip(config.action_labels, probs_act[row].tolist()))
            result["emotion_scores"] = dict(zip(config.emotion_labels, probs_emo[row].tolist()))
        results.append(result)
    return results


def _combine_rows(single_values, mean_values, counts, weights):
    # An input of one row keeps that row of `single_values` unchanged, so class decisions use its logits as the card
    # does. An input of several rows gets the weighted mean of `mean_values` over its rows.
    combined = []
    start = 0
    for count in counts:
        if count == 1:
            combined.append(single_values[start])
        else:
            block_weights = weights[start:start + count]
            block = mean_values[start:start + count]
            combined.append((block * block_weights[:, None]).sum(dim=0) / block_weights.sum())
        start += count
    return torch.stack(combined)


class LQKBertPipeline(ChunkPipeline):
    r"""
    Pipeline of task `"lqkbert"`: classifies Korean crypto-market sentences with an LQ-KBERT model and returns the
    model card's JSON.

    ```python
    >>> from transformers import pipeline
    >>> classifier = pipeline("lqkbert", model="LangQuant/LQ-Kbert-base", trust_remote_code=True)
    >>> classifier("비트코인 조정 후 반등, 투자심리 개선")  # doctest: +SKIP
    {'sentiment_strength': 'weak_pos', 'action_signal': 'info_only', 'emotions': [], 'certainty': 0.71, ...}
    ```

    One string returns one dict and a list returns a list of dicts in input order, with the keys
    `sentiment_strength`, `action_signal`, `emotions`, one key per regression target (`certainty`, `relevance`,
    `toxicity`) and `truncated`; [`decode_predictions`] defines each value. Label names and emotion thresholds come
    from the model's config. A generator or a dataset returns an iterator of dicts.

    Call parameters (also accepted when the pipeline is created):

    - `return_scores` (`bool`, defaults to `False`): also return `sentiment_scores`, `action_scores` (softmax
      probabilities) and `emotion_scores` (sigmoid probabilities), each a dict label -> probability.
    - `long_text` (`"truncate"` or `"split"`, defaults to `"truncate"`): what to do with a text longer than
      `config.max_text_length` characters (200), the length the model was trained for. `"truncate"` does what the
      model card's code does: the tokenizer keeps the first `config.max_text_length` tokens, the result has
      `truncated: true` when tokens were dropped, and a warning is logged once. `"split"` classifies each sentence
      (see [`split_text`]) and aggregates them. The labels then follow the means of the probabilities and clamped
      scores, weighted by the sentence lengths in characters, and the result also has `segments`, the number of
      sentences. Texts within the limit are never split.
    - `batch_size` (`int`): the number of sentences per forward pass. With a list and `batch_size > 1`, the texts are
      sorted by length before batching, which keeps padding short, and the results are put back in input order.

    Bad input: `None` and other non-strings raise `TypeError`, and a string that is empty or whitespace only after
    removing control characters raises `ValueError`. In a list, every item is checked before any model work and the
    error names the item's index; generators and datasets are checked item by item as they are read. Control
    characters other than tab and line breaks are removed, unpaired surrogates become U+FFFD, and emoji-only text is
    classified like any other text.
    """

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

        missing = [field for field in CONFIG_FIELDS if not hasattr(self.model.config, field)]
        if missing:
            raise ValueError(
                f"The {TASK!r} pipeline needs an LQ-KBERT model, but the config of {type(self.model).__name__} has no "
                f"{missing}. Load a model folder whose config.json has model_type 'lqkbert'."
            )
        if self.tokenizer is None:
            raise ValueError(f"The {TASK!r} pipeline needs a tokenizer: pass tokenizer=..., or use a model folder with one.")

    def _sanitize_parameters(self, return_scores=None, long_text=None, **unknown):
        if unknown:
            raise TypeError(
                f"Invalid parameters {sorted(unknown)} for the {TASK!r} pipeline: it accepts return_scores, long_text, "
                "batch_size and num_workers."
            )

        preprocess_params, postprocess_params = {}, {}
        if long_text is not None:
            if long_text not in LONG_TEXT_MODES:
                raise ValueError(f"Invalid long_text={long_text!r}: use one of {list(LONG_TEXT_MODES)}.")
            preprocess_params["long_text"] = long_text
            postprocess_params["long_text"] = long_text
        if return_scores is not None:
            if not isinstance(return_scores, bool):
                raise ValueError(f"Invalid return_scores={return_scores!r}: use True or False.")
            postprocess_params["return_scores"] = return_scores
        return preprocess_params, {}, postprocess_params

    def __call__(self, inputs, *args, **kwargs):
        if isinstance(inputs, str):
            return super().__call__(prepare_text(inputs), *args, **kwargs)

        if isinstance(inputs, (list, tuple)):
            texts = [prepare_text(text, index) for index, text in enumerate(inputs)]
            if not texts:
                return []
            batch_size = kwargs.get("batch_size") or self._batch_size or 1
            if batch_size == 1:
                return super().__call__(texts, *args, **kwargs)

            batches = length_sorted_batches([len(text) for text in texts], batch_size)
            order = [index for batch in batches for index in batch]
            sorted_results = super().__call__([texts[index] for index in order], *args, **kwargs)
            results = [None] * len(texts)
            for position, index in enumerate(order):
                results[index] = sorted_results[position]
            return results

        if isinstance(inputs, torch.utils.data.Dataset):
            # Items of a dataset are checked one by one in `preprocess`, as they are read.
            return super().__call__(inputs, *args, **kwargs)

        if isinstance(inputs, collections.abc.Iterator):
            checked = (prepare_text(text, index) for index, text in enumerate(inputs))
            return super().__call__(checked, *args, **kwargs)

        raise TypeError(
            f"Invalid input: expected a string, a list or tuple of strings, a generator or a dataset, got "
            f"{type(inputs).__name__} {_preview(inputs)}. Convert other collections with list(...)."
        )

    def preprocess(self, text, long_text="truncate"):
        text = prepare_text(text)
        max_length = self.model.config.max_text_length
        if long_text == "split" and len(text) > max_length:
            segments = split_text(text, max_length)
        else:
            segments = [text]
            if len(text) > max_length:
                logger.warning_once(
                    f"An input is longer than max_text_length={max_length} characters, the length LQ-KBERT was "
                    f"trained for. As the model card's code does, the tokenizer keeps its first {max_length} tokens; "
                    "results whose tokens were dropped have truncated=True. Pass long_text='split' to classify "
                    "long texts sentence by sentence."
                )

        for position, segment in enumerate(segments):
            model_inputs = self.tokenizer(segment, truncation=True, max_length=max_length, return_tensors="pt")
            kept_tokens = model_inputs["input_ids"].shape[-1]
            yield {
                **model_inputs,
                "is_last": position == len(segments) - 1,
                "truncated": is_truncated(self.tokenizer, segment, kept_tokens, max_length),
                "weight": float(len(segment)),
            }

    def _forward(self, model_inputs):
        passed_on = {key: model_inputs.pop(key) for key in ("is_last", "truncated", "weight")}
        outputs = self.model(**model_inputs)
        # `logits_senti` comes first: the batch unpacking of `ChunkPipeline` reads the batch size from the first key.
        return {
            "logits_senti": outputs.logits_senti,
            "logits_act": outputs.logits_act,
            "logits_emo": outputs.logits_emo,
            "pred_reg": outputs.pred_reg,
            **passed_on,
        }

    def postprocess(self, model_outputs, return_scores=False, long_text="truncate"):
        def stacked(key):
            return torch.cat([output[key] for output in model_outputs], dim=0)

        (result,) = decode_predictions(
            self.model.config,
            stacked("logits_senti"),
            stacked("logits_act"),
            stacked("logits_emo"),
            stacked("pred_reg"),
            truncated=[any(bool(output["truncated"]) for output in model_outputs)],
            segments=[len(model_outputs)] if long_text == "split" else None,
            weights=[float(output["weight"]) for output in model_outputs],
            return_scores=return_scores,
        )
        return result


PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=LQKBertPipeline, pt_model=AutoModel, type="text")

__all__ = [
    "LQKBertPipeline",
    "count_tokens",
    "decode_predictions",
    "is_truncated",
    "length_sorted_batches",
    "prepare_text",
    "split_text",
]
