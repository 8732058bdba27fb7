"""Fine-tuning heads on XLNetModel, with `transformers`' weight names, label maps and losses.

Fine-tuning runs only the content stream, with full attention over the real tokens (no perm_mask, no
target_mapping, no memory). Label maps live in ``config.extra`` as for the BERT heads (``id2label``
with string keys, ``label2id``; the count is ``len(id2label)``, 2 when absent).

One deliberate difference from transformers: bertforge pads batches on the right, and transformers'
summary ``"last"`` (XLNet's default: the final <cls>) reads position -1, a padding token in a padded
row. Here ``"last"`` (and ``"cls_index"`` without indices) reads the last *real* token of each row
(from attention_mask) and ``"mean"`` averages the real tokens only. Without padding both are identical
to transformers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.errors import UsageError
from bertforge.model.dropout import Dropout
from bertforge.model.heads import LabelMaps, SequenceLoss, check_class_ids, resolve_labels
from bertforge.model.outputs import (MultipleChoiceModelOutput, QuestionAnsweringOutput,
                                     SequenceClassifierOutput, TokenClassifierOutput)
from bertforge.model.xlnet.config import XLNetConfig
from bertforge.model.xlnet.model import ACTIVATIONS, XLNetModel, require_shape
from bertforge.model.xlnet.pretrained import XLNetPreTrainedModel


def last_real(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T, H) -> (B, H): the state of each row's last token that attention_mask marks real."""
    B, T, _ = hidden.shape
    if attention_mask is None:
        return hidden[:, -1]
    last = (attention_mask.ne(0).long() * torch.arange(T, device=hidden.device)).amax(dim=1)  # (B,)
    return hidden[torch.arange(B, device=hidden.device), last]


class XLNetSequenceSummary(nn.Module):
    """One vector per sequence (config.summary_type), then Linear(H, H) -> activation -> dropout."""

    def __init__(self, config: XLNetConfig):
        super().__init__()
        self.summary_type = config.summary_type
        self.summary = nn.Linear(config.d_model, config.d_model) if config.summary_use_proj else nn.Identity()
        act = config.summary_activation
        self.activation = (torch.tanh if act == "tanh" else
                           ACTIVATIONS[act] if act in ACTIVATIONS else nn.Identity())  # None, "", "linear"
        first = float(config.extra.get("summary_first_dropout") or 0.0)
        self.first_dropout = Dropout(first) if first > 0 else nn.Identity()
        last = config.summary_last_dropout
        self.last_dropout = Dropout(last) if last > 0 else nn.Identity()

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        # hidden: (B, T, H); attention_mask: (B, T) or None -> (B, H)
        if self.summary_type == "first":
            x = hidden[:, 0]
        elif self.summary_type == "mean":
            if attention_mask is None:
                x = hidden.mean(dim=1)
            else:
                w = attention_mask.ne(0).to(hidden.dtype)[..., None]  # (B, T, 1)
                x = (hidden * w).sum(dim=1) / w.sum(dim=1).clamp(min=1)
        else:  # "last", "cls_index"
            x = last_real(hidden, attention_mask)
        return self.last_dropout(self.activation(self.summary(self.first_dropout(x))))


class XLNetLabelledModel(LabelMaps, XLNetPreTrainedModel):
    """What the heads with ``num_labels`` classes share: the label maps."""

    num_labels: int


class XLNetForSequenceClassification(SequenceLoss, XLNetLabelledModel):
    """sequence_summary -> logits_proj; cross-entropy, MSE (num_labels == 1) or BCE, as for BERT."""

    def __init__(self, config: XLNetConfig):
        super().__init__(config)
        self.num_labels = resolve_labels(config)
        self.transformer = XLNetModel(config)
        self.sequence_summary = XLNetSequenceSummary(config)
        self.logits_proj = nn.Linear(config.d_model, self.num_labels)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        """input_ids etc.: (B, T). labels: (B,) class ids; (B,) floats for regression (num_labels 1)."""
        out = self.transformer(input_ids, token_type_ids, attention_mask, use_mems=False)
        logits = self.logits_proj(self.sequence_summary(out.last_hidden_state, attention_mask))  # (B, n)
        return SequenceClassifierOutput(None if labels is None else self._loss(logits, labels), logits)


class XLNetForTokenClassification(XLNetLabelledModel):
    """last_hidden_state -> classifier, one score per token and label."""

    def __init__(self, config: XLNetConfig):
        super().__init__(config)
        self.num_labels = resolve_labels(config)
        self.transformer = XLNetModel(config)
        self.classifier = nn.Linear(config.d_model, self.num_labels)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> TokenClassifierOutput:
        """input_ids etc.: (B, T); labels: (B, T) class ids, -100 where no loss is wanted."""
        out = self.transformer(input_ids, token_type_ids, attention_mask, use_mems=False)
        logits = self.classifier(out.last_hidden_state)  # (B, T, num_labels)
        loss = None
        if labels is not None:
            shape = tuple(input_ids.shape)
            require_shape("labels", labels, shape, f"input_ids of shape {shape}")
            check_class_ids("labels", labels, self.num_labels)
            loss = F.cross_entropy(logits.reshape(-1, self.num_labels), labels.reshape(-1).long())
        return TokenClassifierOutput(loss, logits)


class XLNetForMultipleChoice(XLNetPreTrainedModel):
    """Each of (B, C, T) choices encoded alone; sequence_summary -> logits_proj (one score) -> (B, C)."""

    def __init__(self, config: XLNetConfig):
        super().__init__(config)
        self.transformer = XLNetModel(config)
        self.sequence_summary = XLNetSequenceSummary(config)
        self.logits_proj = nn.Linear(config.d_model, 1)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> MultipleChoiceModelOutput:
        """input_ids, token_type_ids, attention_mask: (B, C, T); labels: (B,) the right choice."""
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 3:
            raise UsageError(f"input_ids must be a (batch, choices, length) tensor, got shape "
                             f"{tuple(getattr(input_ids, 'shape', ()))}")
        B, C, T = input_ids.shape
        for name, t in (("token_type_ids", token_type_ids), ("attention_mask", attention_mask)):
            if t is not None:
                require_shape(name, t, (B, C, T), f"input_ids of shape {(B, C, T)}")
        ids, types, mask = (None if t is None else t.reshape(B * C, T)
                            for t in (input_ids, token_type_ids, attention_mask))
        out = self.transformer(ids, types, mask, use_mems=False)
        logits = self.logits_proj(self.sequence_summary(out.last_hidden_state, mask)).view(B, C)  # (B, C)
        loss = None
        if labels is not None:
            require_shape("labels", labels, (B,), f"logits of shape {(B, C)}")
            check_class_ids("labels", labels, C, what="choices")
            loss = F.cross_entropy(logits, labels.long())
        return MultipleChoiceModelOutput(loss, logits)


class XLNetForQuestionAnsweringSimple(XLNetPreTrainedModel):
    """last_hidden_state -> qa_outputs: a start and an end score per token."""

    def __init__(self, config: XLNetConfig):
        super().__init__(config)
        self.transformer = XLNetModel(config)
        self.qa_outputs = nn.Linear(config.d_model, 2)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None) -> QuestionAnsweringOutput:
        """input_ids etc.: (B, T); start/end_positions: (B,) answer span. As in transformers (and the
        BERT head) positions are clamped to [0, T] and T adds no loss."""
        out = self.transformer(input_ids, token_type_ids, attention_mask, use_mems=False)
        logits = self.qa_outputs(out.last_hidden_state)  # (B, T, 2)
        start_logits, end_logits = logits[..., 0].contiguous(), logits[..., 1].contiguous()  # (B, T)
        if (start_positions is None) != (end_positions is None):
            raise UsageError("give both start_positions and end_positions for a loss, or neither")
        loss = None
        if start_positions is not None:
            B, T = start_logits.shape
            for name, p in (("start_positions", start_positions), ("end_positions", end_positions)):
                require_shape(name, p, (B,), f"input_ids of shape {(B, T)}")
            start, end = start_positions.long().clamp(0, T), end_positions.long().clamp(0, T)
            loss = (F.cross_entropy(start_logits, start, ignore_index=T)
                    + F.cross_entropy(end_logits, end, ignore_index=T)) / 2
        return QuestionAnsweringOutput(loss, start_logits, end_logits)
