"""Fine-tuning heads on ElectraModel, with `transformers`' weight names, label maps and losses.

Each holds the encoder as ``self.electra``, so a checkpoint saved here loads in ``transformers.ElectraFor...``
and back. Labels, problem types and losses are the BERT heads' (``model/heads.py``), and so are the token
classification and span QA heads, on ELECTRA's encoder (their forward passes are inherited). Only the other layers
on top of the encoder are ELECTRA's: its sequence classifier reads [CLS] through dense -> GELU -> out_proj (no
pooler), and its multiple-choice head through transformers' sequence summary.
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
from bertforge.model.heads import (BertForQuestionAnswering, BertForTokenClassification, LabelMaps, SequenceLoss,
                                   choice_loss, classifier_dropout, flatten_choices, resolve_labels, sentence_only)
from bertforge.model.outputs import MultipleChoiceModelOutput, SequenceClassifierOutput
from bertforge.model.pretrained import BertPreTrainedModel, EncoderAsBert


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


class ElectraForSequenceClassification(SequenceLoss, LabelMaps, ElectraPreTrainedModel):
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
        loss = None if labels is None else self._loss(logits, labels)
        return SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class ElectraForTokenClassification(EncoderAsBert, ElectraPreTrainedModel, BertForTokenClassification):
    """last_hidden_state -> dropout -> Linear(H, num_labels) per token (BERT's forward)."""

    def __init__(self, config: ElectraConfig):
        BertPreTrainedModel.__init__(self, config)
        self.num_labels = resolve_labels(config)
        self.electra = ElectraModel(config)
        self.dropout = Dropout(classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, self.num_labels)
        self.init_weights()


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
        B, C, (ids, types, mask) = flatten_choices(input_ids, token_type_ids, attention_mask)  # (B * C, T) each
        out = self.electra(ids, types, mask, output_hidden_states, output_attentions)
        logits = self.classifier(self.sequence_summary(out.last_hidden_state, mask)).view(B, C)  # (B, C)
        loss = None if labels is None else choice_loss(logits, labels)
        return MultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions)


class ElectraForQuestionAnswering(EncoderAsBert, ElectraPreTrainedModel, BertForQuestionAnswering):
    """last_hidden_state -> qa_outputs: a start and an end score per token (BERT's forward and span loss)."""

    def __init__(self, config: ElectraConfig):
        BertPreTrainedModel.__init__(self, config)
        self.electra = ElectraModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.init_weights()
