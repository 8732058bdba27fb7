"""Fine-tuning heads on ElectraModel, with `transformers`' weight names, label maps and losses.

Each holds the encoder as ``self.electra``, so a checkpoint saved here loads in ``transformers.ElectraFor...``
and back. Labels, problem types and losses are the BERT heads' (``model/heads.py``); only the layers on top of
the encoder are ELECTRA's: its sequence classifier reads [CLS] through dense -> GELU -> out_proj (no pooler), and
its multiple-choice head through transformers' sequence summary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.model.dropout import Dropout
from bertforge.model.electra.config import ElectraConfig
from bertforge.model.electra.model import ElectraModel
from bertforge.model.electra.pretrained import ElectraPreTrainedModel
from bertforge.model.encoder import ACTIVATIONS
from bertforge.model.heads import (LabelMaps, choice_loss, classifier_dropout, problem_type, resolve_labels,
                                   sequence_loss, sentence_only, span_loss, token_loss)
from bertforge.model.outputs import (MultipleChoiceModelOutput, QuestionAnsweringOutput, SequenceClassifierOutput,
                                     TokenClassifierOutput)


class ElectraLabelledModel(LabelMaps, ElectraPreTrainedModel):
    """What the heads with ``num_labels`` classes share: the label maps."""

    num_labels: int


class ElectraClassificationHead(nn.Module):
    """[CLS] -> dropout -> dense -> GELU -> dropout -> out_proj (transformers' ElectraClassificationHead)."""

    def __init__(self, config: ElectraConfig, num_labels: int):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = Dropout(classifier_dropout(config))
        self.out_proj = nn.Linear(config.hidden_size, num_labels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.dropout(hidden[:, 0])  # (B, H): [CLS]
        return self.out_proj(self.dropout(F.gelu(self.dense(x))))  # (B, num_labels)


class ElectraForSequenceClassification(ElectraLabelledModel):
    """ELECTRA's classifier head on [CLS]; cross-entropy, MSE (num_labels == 1) or BCE, as for BERT."""

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.num_labels = resolve_labels(config)
        self.electra = ElectraModel(config)
        self.classifier = ElectraClassificationHead(config, self.num_labels)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False) -> SequenceClassifierOutput:
        """input_ids etc.: (B, T). labels: (B,) class ids; for regression (B,) floats when num_labels is 1,
        else (B, num_labels); for multi-label (B, num_labels) of 0/1."""
        every = output_hidden_states or output_attentions
        out = self.electra(input_ids, token_type_ids, attention_mask, output_hidden_states, output_attentions,
                           sentence_only(self.config, input_ids, attention_mask, every))  # the last layer at [CLS]
        logits = self.classifier(out.last_hidden_state)  # (B, num_labels)
        loss = None
        if labels is not None:
            loss = sequence_loss(logits, labels, problem_type(self.config.extra.get("problem_type"), self.num_labels,
                                                              labels))
        return SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class ElectraForTokenClassification(ElectraLabelledModel):
    """last_hidden_state -> dropout -> Linear(H, num_labels) per token."""

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.num_labels = resolve_labels(config)
        self.electra = ElectraModel(config)
        self.dropout = Dropout(classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, self.num_labels)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False) -> TokenClassifierOutput:
        """input_ids etc.: (B, T); labels: (B, T) class ids, -100 where no loss is wanted."""
        out = self.electra(input_ids, token_type_ids, attention_mask, output_hidden_states, output_attentions)
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        loss = None if labels is None else token_loss(logits, labels)
        return TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class ElectraSequenceSummary(nn.Module):
    """transformers' SequenceSummary as ELECTRA configures it: one vector per sequence (``summary_type``), then
    summary (Linear(H, H)) -> activation -> dropout.

    As XLNet's heads here (``model/xlnet/heads.py``), "last" and "cls_index" read each row's last *real* token and
    "mean" averages the real tokens only (bertforge pads on the right); "first", ELECTRA's default, is identical.
    """

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.summary_type = config.summary_type
        self.summary = nn.Linear(config.hidden_size, config.hidden_size) if config.summary_use_proj else nn.Identity()
        act = config.summary_activation
        self.activation = torch.tanh if act == "tanh" else ACTIVATIONS.get(act, nn.Identity())  # None, "", "linear"
        first = float(config.extra.get("summary_first_dropout") or 0.0)
        self.first_dropout = Dropout(first) if first > 0 else nn.Identity()
        last = config.summary_last_dropout
        self.last_dropout = Dropout(last) if last > 0 else nn.Identity()

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        # hidden: (B, T, H); attention_mask: (B, T) or None -> (B, H)
        if self.summary_type == "first":
            x = hidden[:, 0]
        else:
            real = (torch.ones_like(hidden[..., 0]) if attention_mask is None
                    else attention_mask.ne(0).to(hidden.dtype))  # (B, T)
            if self.summary_type == "mean":
                x = (hidden * real[..., None]).sum(1) / real.sum(1, keepdim=True).clamp(min=1)
            else:  # "last", "cls_index": the last real token
                last = (real.long() * torch.arange(hidden.shape[1], device=hidden.device)).amax(dim=1)  # (B,)
                x = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return self.last_dropout(self.activation(self.summary(self.first_dropout(x))))


class ElectraForMultipleChoice(ElectraPreTrainedModel):
    """Each of (B, C, T) choices encoded as its own sequence; sequence_summary -> Linear(H, 1) -> (B, C)."""

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.electra = ElectraModel(config)
        self.sequence_summary = ElectraSequenceSummary(config)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False) -> MultipleChoiceModelOutput:
        """input_ids, token_type_ids, attention_mask: (B, C, T), one row per choice; labels: (B,) the right choice.
        hidden_states and attentions come per flattened row, (B * C, ...)."""
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 3:
            raise ValueError(f"input_ids must be a (batch, choices, length) tensor, got shape "
                             f"{tuple(getattr(input_ids, 'shape', ()))}")
        B, C, T = input_ids.shape
        for name, tensor in (("token_type_ids", token_type_ids), ("attention_mask", attention_mask)):
            if tensor is not None and tensor.shape != input_ids.shape:
                raise ValueError(f"{name} has shape {tuple(tensor.shape)} but input_ids has {(B, C, T)}")
        ids, types, mask = (None if t is None else t.reshape(B * C, T)  # (B * C, T)
                            for t in (input_ids, token_type_ids, attention_mask))
        out = self.electra(ids, types, mask, output_hidden_states, output_attentions)
        logits = self.classifier(self.sequence_summary(out.last_hidden_state, mask)).view(B, C)  # (B, C)
        loss = None if labels is None else choice_loss(logits, labels)
        return MultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions)


class ElectraForQuestionAnswering(ElectraPreTrainedModel):
    """last_hidden_state -> qa_outputs: a start and an end score per token; the BERT head's span loss."""

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.electra = ElectraModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False) -> QuestionAnsweringOutput:
        """input_ids etc.: (B, T); start_positions, end_positions: (B,) token indices of the answer span (clamped
        to [0, T], T adding no loss, as in transformers)."""
        out = self.electra(input_ids, token_type_ids, attention_mask, output_hidden_states, output_attentions)
        logits = self.qa_outputs(out.last_hidden_state)  # (B, T, 2)
        start_logits, end_logits = logits[..., 0].contiguous(), logits[..., 1].contiguous()  # (B, T) each
        loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringOutput(loss, start_logits, end_logits, out.hidden_states, out.attentions)
