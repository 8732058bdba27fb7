"""Fine-tuning heads on RoFormerModel, with `transformers`' weight names, label maps and losses.

Token classification and span QA are BERT's heads on RoFormer's encoder (their forward passes are inherited). The
sequence classifier reads [CLS] through dense -> activation -> out_proj (transformers' RoFormerClassificationHead,
no pooler), and the multiple-choice head through transformers' sequence summary, which for RoFormer is the last
position. Dropout is ``hidden_dropout_prob`` throughout, as in transformers (no ``classifier_dropout``).
"""

from __future__ import annotations

import torch
from torch import nn

from bertforge.errors import ConfigError
from bertforge.model.bert import sentence_vector
from bertforge.model.dropout import Dropout
from bertforge.model.encoder import ACTIVATIONS
from bertforge.model.heads import (BertForQuestionAnswering, BertForTokenClassification, LabelMaps, SequenceLoss,
                                   choice_loss, flatten_choices, resolve_labels, sentence_only)
from bertforge.model.outputs import MultipleChoiceModelOutput, SequenceClassifierOutput
from bertforge.model.pretrained import BertPreTrainedModel
from bertforge.model.roformer.config import RoFormerConfig
from bertforge.model.roformer.model import RoFormerModel
from bertforge.model.roformer.pretrained import RoFormerHeadModel

SUMMARY_TYPES = ("last", "first", "mean")


class RoFormerClassificationHead(nn.Module):
    """sentence vector -> dropout -> dense -> activation -> dropout -> out_proj (transformers' class, which reads
    [CLS])."""

    def __init__(self, config: RoFormerConfig, num_labels: int):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACTIVATIONS[config.hidden_act]
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.out_proj = nn.Linear(config.hidden_size, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(self.act(self.dense(self.dropout(x)))))  # (B, H) -> (B, num_labels)


class RoFormerForSequenceClassification(SequenceLoss, LabelMaps, RoFormerHeadModel):
    """RoFormer's classification head on [CLS] (a left-to-right model's: the last real token, as bertforge's BERT
    reads it); cross-entropy, MSE (num_labels == 1) or BCE, as for BERT."""

    def __init__(self, config: RoFormerConfig):
        BertPreTrainedModel.__init__(self, config)
        self.num_labels = resolve_labels(config)
        self.roformer = RoFormerModel(config)
        self.classifier = RoFormerClassificationHead(config, self.num_labels)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False) -> SequenceClassifierOutput:
        """input_ids etc.: (B, T). labels: (B,) class ids; for regression (B,) floats when num_labels is 1,
        else (B, num_labels); for multi-label (B, num_labels) of 0/1."""
        at = sentence_only(self.config, input_ids, attention_mask, output_hidden_states or output_attentions)
        out = self.roformer(input_ids, token_type_ids, attention_mask, output_hidden_states, output_attentions, at)
        hidden = out.last_hidden_state  # (B, 1, H) at the sentence position, or (B, T, H)
        x = sentence_vector(hidden, None if at is not None else attention_mask, self.config.is_decoder)  # (B, H)
        logits = self.classifier(x)  # (B, num_labels)
        loss = None if labels is None else self._loss(logits, labels)
        return SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class RoFormerForTokenClassification(RoFormerHeadModel, BertForTokenClassification):
    """last_hidden_state -> dropout -> Linear(H, num_labels) per token (BERT's forward)."""

    def __init__(self, config: RoFormerConfig):
        BertPreTrainedModel.__init__(self, config)
        self.num_labels = resolve_labels(config)
        self.roformer = RoFormerModel(config)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, self.num_labels)
        self.init_weights()


class RoFormerForQuestionAnswering(RoFormerHeadModel, BertForQuestionAnswering):
    """last_hidden_state -> qa_outputs: a start and an end score per token (BERT's forward and span loss)."""

    def __init__(self, config: RoFormerConfig):
        BertPreTrainedModel.__init__(self, config)
        self.roformer = RoFormerModel(config)
        # The span loss is a softmax over every position, padding included (as in transformers): keep the padded
        # path, whose outputs at the padding are transformers' (the unpadded one leaves them zero).
        self.roformer.unpad_threshold = float("inf")
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.init_weights()


class RoFormerSequenceSummary(nn.Module):
    """transformers' sequence summary as a RoFormer config leaves it (none of its ``summary_*`` keys are RoFormer
    fields; config.json may add them): one vector per sequence by ``summary_type``, then an optional
    ``summary_use_proj`` Linear(H, H) and ``summary_activation``, with optional dropouts before and after.

    The default, "last", is the last position of the padded row, padding or not: what transformers reads."""

    def __init__(self, config: RoFormerConfig):
        super().__init__()
        extra = config.extra
        self.summary_type = extra.get("summary_type", "last")
        if self.summary_type not in SUMMARY_TYPES:
            raise ConfigError(f"config field 'summary_type' is {self.summary_type!r}; supported: "
                             f"{', '.join(SUMMARY_TYPES)}")
        self.summary = nn.Linear(config.hidden_size, config.hidden_size) if extra.get("summary_use_proj") \
            else nn.Identity()
        act = extra.get("summary_activation")
        self.activation = torch.tanh if act == "tanh" else ACTIVATIONS.get(act, nn.Identity())  # None, "linear"
        first, last = (float(extra.get(f"summary_{name}_dropout") or 0.0) for name in ("first", "last"))
        self.first_dropout = Dropout(first) if first > 0 else nn.Identity()
        self.last_dropout = Dropout(last) if last > 0 else nn.Identity()

    def positions(self, input_ids: torch.Tensor) -> torch.Tensor | None:
        """(B, 1): the one position the summary reads of (B, T) rows, or None when it reads them all."""
        if self.summary_type == "mean":
            return None
        return torch.full_like(input_ids[:, :1], input_ids.shape[1] - 1 if self.summary_type == "last" else 0)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # hidden: (B, T, H), or (B, 1, H) at ``positions`` -> (B, H)
        if self.summary_type == "mean":
            x = hidden.mean(dim=1)
        else:
            x = hidden[:, -1] if self.summary_type == "last" else hidden[:, 0]
        return self.last_dropout(self.activation(self.summary(self.first_dropout(x))))


class RoFormerForMultipleChoice(RoFormerHeadModel):
    """Each of (B, C, T) choices encoded as its own sequence; sequence_summary -> Linear(H, 1) -> (B, C)."""

    def __init__(self, config: RoFormerConfig):
        BertPreTrainedModel.__init__(self, config)
        self.roformer = RoFormerModel(config)
        self.roformer.unpad_threshold = float("inf")  # the summary reads the padding's outputs (see above)
        self.sequence_summary = RoFormerSequenceSummary(config)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False) -> MultipleChoiceModelOutput:
        """input_ids, token_type_ids, attention_mask: (B, C, T), one row per choice; labels: (B,) the right choice.
        hidden_states and attentions come per flattened row, (B * C, ...)."""
        B, C, (ids, types, mask) = flatten_choices(input_ids, token_type_ids, attention_mask)  # (B * C, T) each
        at = None if output_hidden_states or output_attentions else self.sequence_summary.positions(ids)
        out = self.roformer(ids, types, mask, output_hidden_states, output_attentions, at)
        logits = self.classifier(self.sequence_summary(out.last_hidden_state)).view(B, C)  # (B, C)
        loss = None if labels is None else choice_loss(logits, labels)
        return MultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions)
