"""Fine-tuning heads on BertModel, with `transformers`' weight names, label maps and losses.

Sequence classification (and regression), multiple choice, token classification, span question
answering. Each holds the encoder as ``self.bert``, so a checkpoint saved here loads in
``transformers.BertFor...`` and back. Label names live in ``config.extra`` the way `transformers`
writes them to config.json: ``id2label`` with string keys, ``label2id``, and no ``num_labels`` key
(the count is ``len(id2label)``, 2 when absent).
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.config import BertConfig
from bertforge.constants import IGNORE_INDEX
from bertforge.errors import CheckpointError
from bertforge.model.bert import BertModel, sentence_positions
from bertforge.model.dropout import Dropout
from bertforge.model.outputs import (MultipleChoiceModelOutput, QuestionAnsweringOutput,
                                     SequenceClassifierOutput, TokenClassifierOutput)
from bertforge.model.pretrained import BertPreTrainedModel
from bertforge.model.unpadded import host_values

PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")

L = TypeVar("L", bound="LabelledModel")


def classifier_dropout(config: BertConfig) -> float:
    """``classifier_dropout`` from config.json when set (transformers writes null), else hidden dropout."""
    p = config.extra.get("classifier_dropout")
    p = config.hidden_dropout_prob if p is None else p
    if not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"config field 'classifier_dropout' must be in [0, 1) or null, got {p!r}")
    return float(p)


def resolve_labels(config: BertConfig) -> int:
    """Number of classes by `transformers`' rules, writing the label maps it expects into ``config.extra``.

    An explicit ``num_labels`` (e.g. ``from_pretrained(path, num_labels=3)``) wins; if it disagrees
    with ``id2label``, the names become LABEL_0..LABEL_{n-1}, as `transformers` does. Without it the
    count is ``len(id2label)``, or 2.
    """
    extra = config.extra
    names: dict[int, str] | None = None
    if extra.get("id2label") is not None:
        raw = extra["id2label"]
        try:
            names = {int(k): str(v) for k, v in raw.items()}
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"config field 'id2label' must map class ids to names, got {raw!r}") from None
        if sorted(names) != list(range(len(names))):
            raise ValueError(f"config field 'id2label' must have keys 0..{len(names) - 1}, "
                             f"got {sorted(names)}")
    n = extra.get("num_labels")
    if n is None:
        n = len(names) if names is not None else 2
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"num_labels must be a positive integer, got {n!r}")
    problem = extra.get("problem_type")
    if problem is not None and problem not in PROBLEM_TYPES:
        raise ValueError(f"config field 'problem_type' is {problem!r}; "
                         f"choose one of {', '.join(PROBLEM_TYPES)}")
    if problem == "single_label_classification" and n == 1:
        raise ValueError("problem_type 'single_label_classification' needs num_labels > 1; use num_labels=2 "
                         "for binary classification, or problem_type 'regression' for one output")

    if names is None or len(names) != n:
        names = {i: f"LABEL_{i}" for i in range(n)}
    extra.pop("num_labels", None)  # transformers derives it from id2label and never writes it
    extra["id2label"] = {str(i): names[i] for i in range(n)}  # JSON keys are strings
    if _inverse(extra.get("label2id")) != names:  # absent, null (transformers may write that) or stale
        extra["label2id"] = {name: i for i, name in names.items()}
    return n


def _inverse(label2id: Any) -> dict[int, str] | None:
    try:
        return {int(i): str(name) for name, i in label2id.items()}
    except (AttributeError, TypeError, ValueError):
        return None


def check_shape(name: str, tensor: torch.Tensor, expected: tuple[int, ...], of: str) -> None:
    if tuple(tensor.shape) != expected:
        raise ValueError(f"{name} has shape {tuple(tensor.shape)} but must be {expected} for {of}")


def check_class_ids(name: str, labels: torch.Tensor, n: int, what: str = "labels") -> None:
    """Integer ids in [0, n), or IGNORE_INDEX; anything else would be a silent or a device-side error."""
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class ids, got dtype {labels.dtype}")
    host = host_values(labels, read=not torch.is_grad_enabled())  # a training step does not wait for the device
    real = None if host is None else host[host != IGNORE_INDEX]
    if real is not None and real.size:
        low, high = int(real.min()), int(real.max())
        if low < 0 or high >= n:
            raise ValueError(f"{name} holds {low if low < 0 else high}, outside [0, {n}) for {n} {what} "
                             f"(use {IGNORE_INDEX} for no loss)")


def sentence_only(config: BertConfig, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                  every_position: bool) -> torch.Tensor | None:
    """``output_positions`` for a head that reads the pooled vector alone: its sentence position (the last
    layer then runs there only), or None when hidden states or attentions are asked for."""
    if every_position or not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        return None  # (a malformed input is refused by BertModel, with its own message)
    return sentence_positions(input_ids, attention_mask, config.is_decoder)


class LabelMaps:
    """The label names a head's config records (``id2label``, ``label2id``), by class id and by name."""

    @property
    def id2label(self) -> dict[int, str]:
        return {int(i): name for i, name in self.config.extra["id2label"].items()}

    @property
    def label2id(self) -> dict[str, int]:
        return {name: int(i) for name, i in self.config.extra["label2id"].items()}


class LabelledModel(LabelMaps, BertPreTrainedModel):
    """What the heads with ``num_labels`` classes share: label maps, and a clear head-size error."""

    num_labels: int

    @classmethod
    def from_pretrained(cls: type[L], path: str | os.PathLike, *, ignore_mismatched_sizes: bool = False,
                        **config_overrides: Any) -> L:
        """As BertPreTrainedModel.from_pretrained; ``num_labels=N`` sizes the head. A checkpoint head
        of another size is an error unless ``ignore_mismatched_sizes=True`` re-initialises it (warning)."""
        try:
            return super().from_pretrained(path, ignore_mismatched_sizes=ignore_mismatched_sizes,
                                           **config_overrides)
        except CheckpointError as e:
            if "classifier.weight" not in e.mismatched:
                raise
            theirs, ours = e.mismatched["classifier.weight"][0][0], e.mismatched["classifier.weight"][1][0]
            raise CheckpointError(
                f"{path}: the checkpoint's classifier head has {theirs} labels and the model {ours}; pass "
                f"ignore_mismatched_sizes=True to re-initialise the head (it then needs training), or "
                f"num_labels={theirs} to keep it", mismatched=e.mismatched) from None


class SequenceLoss:
    """The loss of every family's sequence classifier: the configured ``problem_type``, else transformers' guess,
    then ``sequence_loss``. Mixed in beside the model class (it reads ``config`` and ``num_labels``)."""

    num_labels: int

    def problem_type(self, labels: torch.Tensor) -> str:
        """config's problem_type, else transformers' guess (see ``problem_type``)."""
        return problem_type(self.config.extra.get("problem_type"), self.num_labels, labels)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return sequence_loss(logits, labels, self.problem_type(labels))


class BertForSequenceClassification(SequenceLoss, LabelledModel):
    """pooler_output -> dropout -> Linear(H, num_labels); cross-entropy, MSE (num_labels == 1) or BCE."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = resolve_labels(config)
        self.bert = BertModel(config)
        self.dropout = Dropout(classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, self.num_labels)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False,
                output_attentions: bool = False) -> SequenceClassifierOutput:
        """input_ids etc.: (B, T). labels: (B,) class ids; for regression (B,) floats when num_labels is 1,
        else (B, num_labels); for multi-label (B, num_labels) of 0/1."""
        out = self.bert(input_ids, token_type_ids, attention_mask, output_hidden_states, output_attentions,
                        sentence_only(self.config, input_ids, attention_mask,
                                      output_hidden_states or output_attentions))
        logits = self.classifier(self.dropout(out.pooler_output))  # (B, num_labels)
        loss = None if labels is None else self._loss(logits, labels)
        return SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions)


def problem_type(configured: str | None, num_labels: int, labels: torch.Tensor) -> str:
    """The configured problem type, else transformers' guess: one label -> regression, integer labels ->
    single-label, float labels -> multi-label. (Unlike transformers, the config is not changed.)"""
    if configured is not None:
        return configured
    if num_labels == 1:
        return "regression"
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        return "multi_label_classification"
    return "single_label_classification"


def sequence_loss(logits: torch.Tensor, labels: torch.Tensor, problem: str) -> torch.Tensor:
    """Loss of (B, n) logits: MSE (regression), cross-entropy (single label) or BCE (multi-label)."""
    B, n = logits.shape
    of = f"{problem.replace('_', ' ')} with logits of shape {(B, n)}"
    if problem == "regression":
        check_shape("labels", labels, (B,) if n == 1 else (B, n), of)
        return F.mse_loss(logits.view(labels.shape), labels.to(logits.dtype))
    if problem == "single_label_classification":
        check_shape("labels", labels, (B,), of)
        check_class_ids("labels", labels, n)
        return F.cross_entropy(logits, labels.long())
    check_shape("labels", labels, (B, n), of)
    host = host_values(labels, read=not torch.is_grad_enabled()) if labels.numel() else None
    if host is not None and (float(host.min()) < 0 or float(host.max()) > 1):
        raise ValueError("multi-label classification labels must be in [0, 1] (one 0/1 column per label)")
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, T, n) per-token logits against (B, T) class ids; IGNORE_INDEX adds nothing."""
    shape = tuple(logits.shape[:2])
    check_shape("labels", labels, shape, f"input_ids of shape {shape}")
    check_class_ids("labels", labels, logits.shape[-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).long())


def choice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, C) choice scores against (B,) indices of the right choice."""
    check_shape("labels", labels, tuple(logits.shape[:1]), f"logits of shape {tuple(logits.shape)}")
    check_class_ids("labels", labels, logits.shape[1], what="choices")
    return F.cross_entropy(logits, labels.long())


def choices_shape(input_ids: torch.Tensor) -> tuple[int, int, int]:
    """(B, C, T) of multiple-choice ``input_ids``: one row of T tokens per choice; anything else is an error."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 3:
        raise ValueError(f"input_ids must be a (batch, choices, length) tensor, got shape "
                         f"{tuple(getattr(input_ids, 'shape', ()))}")
    return tuple(input_ids.shape)


def flatten_choices(input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                    attention_mask: torch.Tensor | None) -> tuple[int, int, list[torch.Tensor | None]]:
    """B, C and the (B, C, T) inputs as (B * C, T) rows, each choice encoded as its own sequence (None stays
    None); the shapes are checked first."""
    B, C, T = choices_shape(input_ids)
    for name, tensor in (("token_type_ids", token_type_ids), ("attention_mask", attention_mask)):
        if tensor is not None and tensor.shape != input_ids.shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)} but input_ids has {(B, C, T)}")
    return B, C, [None if t is None else t.reshape(B * C, T) for t in (input_ids, token_type_ids, attention_mask)]


class BertForMultipleChoice(BertPreTrainedModel):
    """Each of (B, C, T) choices encoded as its own sequence; pooler -> dropout -> Linear(H, 1) -> (B, C)."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config)
        self.dropout = Dropout(classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False,
                output_attentions: bool = False) -> MultipleChoiceModelOutput:
        """input_ids, token_type_ids, attention_mask: (B, C, T), one row per choice; labels: (B,) the right
        choice. hidden_states and attentions come per flattened row, (B * C, ...)."""
        B, C, flat = flatten_choices(input_ids, token_type_ids, attention_mask)  # (B * C, T) each
        out = self.bert(*flat, output_hidden_states, output_attentions,
                        sentence_only(self.config, flat[0], flat[2], output_hidden_states or output_attentions))
        logits = self.classifier(self.dropout(out.pooler_output)).view(B, C)  # (B, C)
        loss = None if labels is None else choice_loss(logits, labels)
        return MultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions)


class BertForTokenClassification(LabelledModel):
    """last_hidden_state -> dropout -> Linear(H, num_labels) per token; no pooler, as in transformers."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = resolve_labels(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = Dropout(classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, self.num_labels)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False) -> TokenClassifierOutput:
        """input_ids etc.: (B, T); labels: (B, T) class ids, -100 where no loss is wanted (padding,
        continuation pieces)."""
        out = self.bert(input_ids, token_type_ids, attention_mask, output_hidden_states, output_attentions)
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        loss = None if labels is None else token_loss(logits, labels)
        return TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class BertForQuestionAnswering(BertPreTrainedModel):
    """last_hidden_state -> Linear(H, 2): a start and an end score per token (no pooler, no dropout)."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        # The span loss is a softmax over every position, padding included (as in transformers), so the
        # padding's outputs count: keep the padded path (the unpadded one leaves them zero).
        self.bert.unpad_threshold = float("inf")
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False) -> QuestionAnsweringOutput:
        """input_ids etc.: (B, T); start_positions, end_positions: (B,) token indices of the answer span.

        As in transformers, positions are clamped to [0, T] and T is ignored: an answer cut off by the
        window (position >= T) adds no loss, a negative one counts as position 0 ([CLS], no answer).
        """
        out = self.bert(input_ids, token_type_ids, attention_mask, output_hidden_states, output_attentions)
        logits = self.qa_outputs(out.last_hidden_state)  # (B, T, 2)
        start_logits, end_logits = logits[..., 0].contiguous(), logits[..., 1].contiguous()  # (B, T) each
        loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringOutput(loss, start_logits, end_logits, out.hidden_states, out.attentions)


def span_loss(start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor | None,
              end_positions: torch.Tensor | None) -> torch.Tensor | None:
    """Extractive QA's loss: (CE(start) + CE(end)) / 2 over (B, T) logits, or None without positions.

    As in transformers, positions are clamped to [0, T] and T is ignored: an answer cut off by the
    window (position >= T) adds no loss, a negative one counts as position 0 ([CLS], no answer).
    """
    if (start_positions is None) != (end_positions is None):
        raise ValueError("give both start_positions and end_positions for a loss, or neither")
    if start_positions is None:
        return None
    B, T = start_logits.shape
    for name, positions in (("start_positions", start_positions), ("end_positions", end_positions)):
        check_shape(name, positions, (B,), f"input_ids of shape {(B, T)}")
        if positions.dtype.is_floating_point or positions.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer token indices, got dtype {positions.dtype}")
    start, end = start_positions.long().clamp(0, T), end_positions.long().clamp(0, T)
    return (F.cross_entropy(start_logits, start, ignore_index=T) + F.cross_entropy(end_logits, end, ignore_index=T)) / 2
