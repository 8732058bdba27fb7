"""Heads on ModernBertModel, with `transformers`' weight names and losses: the masked LM (prediction head and a
decoder tied to the token embedding), sequence classification (``classifier_pooling`` cls or mean), token
classification, extractive QA and multiple choice. Every head but the masked LM's decoder reads through the
prediction head (dense -> act -> norm), then dropout and ``classifier``.

Label maps live in ``config.extra`` as for the BERT heads (``id2label`` with string keys, ``label2id``; the
count is ``len(id2label)``, 2 when absent). The losses are the BERT heads' (``model/heads.py``), which are
transformers'.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.constants import IGNORE_INDEX
from bertforge.model.dropout import Dropout
from bertforge.model.heads import (LabelMaps, SequenceLoss, check_class_ids, check_shape, choice_loss, choices_shape,
                                   resolve_labels, span_loss, token_loss)
from bertforge.model.modernbert.config import ModernBertConfig
from bertforge.model.modernbert.model import ACTIVATIONS, ModernBertModel
from bertforge.model.modernbert.pretrained import ModernBertPreTrainedModel
from bertforge.model.outputs import (MaskedLMOutput, MultipleChoiceModelOutput, QuestionAnsweringOutput,
                                     SequenceClassifierOutput, TokenClassifierOutput)


class ModernBertPredictionHead(nn.Module):
    """dense -> activation -> LayerNorm, before the decoder or a classifier."""

    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=config.classifier_bias)
        self.act = ACTIVATIONS[config.classifier_activation]
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(x)))


class ModernBertForMaskedLM(ModernBertPreTrainedModel):
    """ModernBertModel -> head -> decoder, a Linear whose matrix is the token embedding (tie_word_embeddings)."""

    def __init__(self, config: ModernBertConfig):
        super().__init__(config)
        self.model = ModernBertModel(config)
        self.head = ModernBertPredictionHead(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=config.decoder_bias)
        self.init_weights()
        if config.tie_word_embeddings:
            self.decoder.weight = self.model.embeddings.tok_embeddings.weight

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False, *,
                token_type_ids: torch.Tensor | None = None) -> MaskedLMOutput:
        """input_ids, attention_mask: (B, T); labels: (B, T) token ids, sparse_pred_ignore_index (-100) where no
        loss is wanted. With config.sparse_prediction and labels, only the labelled positions are decoded."""
        out = self.model(input_ids, attention_mask, position_ids, output_hidden_states, output_attentions)
        hidden = out.last_hidden_state  # (B, T, H)
        ignore = self.config.sparse_pred_ignore_index
        if labels is not None:
            check_shape("labels", labels, tuple(input_ids.shape), f"input_ids of shape {tuple(input_ids.shape)}")
            if self.config.sparse_prediction:
                keep = labels.reshape(-1) != ignore
                hidden, labels = hidden.reshape(-1, hidden.shape[-1])[keep], labels.reshape(-1)[keep]  # (N, H), (N,)
        logits = self.decoder(self.head(hidden))  # (B, T, V) or (N, V)
        loss = None
        if labels is not None:
            V = self.config.vocab_size
            check_class_ids("labels", labels.masked_fill(labels == ignore, IGNORE_INDEX), V, what="token ids")
            loss = F.cross_entropy(logits.reshape(-1, V).float(), labels.reshape(-1).long(), ignore_index=ignore)
        return MaskedLMOutput(loss, logits, out.hidden_states, out.attentions)


class ModernBertClassifierBase(ModernBertPreTrainedModel):
    """The parts every classifier head shares: encoder, prediction head, dropout and ``classifier``."""

    def __init__(self, config: ModernBertConfig, outputs: int):
        super().__init__(config)
        self.model = ModernBertModel(config)
        self.head = ModernBertPredictionHead(config)
        self.drop = Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, outputs)
        self.init_weights()

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """(..., H) -> (..., outputs): head -> dropout -> classifier."""
        return self.classifier(self.drop(self.head(x)))

    def pooled(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None, first_real: bool = False
               ) -> torch.Tensor:
        """(B, T, H) -> (B, H) by ``classifier_pooling``: the mean of the real tokens (``mean``), or the first
        position (``cls``); with ``first_real`` the first real one, as transformers' choice head reads it (the
        same for right-padded rows)."""
        if self.config.classifier_pooling == "mean":
            if attention_mask is None:
                return hidden.mean(dim=1)
            w = attention_mask.to(hidden.dtype)[..., None]  # (B, T, 1)
            return (hidden * w).sum(dim=1) / w.sum(dim=1)
        if attention_mask is None or not first_real:
            return hidden[:, 0]
        first = attention_mask.argmax(dim=-1)  # (B,)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]


class ModernBertLabelledModel(LabelMaps, ModernBertClassifierBase):
    """A classifier with ``num_labels`` outputs, sized by the config's label maps."""

    def __init__(self, config: ModernBertConfig):
        num_labels = resolve_labels(config)
        super().__init__(config, num_labels)
        self.num_labels = num_labels


class ModernBertForSequenceClassification(SequenceLoss, ModernBertLabelledModel):
    """Pooled vector -> head -> dropout -> classifier; cross-entropy, MSE (num_labels == 1) or BCE."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False, *,
                token_type_ids: torch.Tensor | None = None) -> SequenceClassifierOutput:
        """input_ids etc.: (B, T). labels: (B,) class ids; for regression (B,) floats when num_labels is 1, else
        (B, num_labels); for multi-label (B, num_labels) of 0/1."""
        out = self.model(input_ids, attention_mask, position_ids, output_hidden_states, output_attentions)
        logits = self.scores(self.pooled(out.last_hidden_state, attention_mask))  # (B, num_labels)
        loss = None if labels is None else self._loss(logits, labels)
        return SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class ModernBertForTokenClassification(ModernBertLabelledModel):
    """last_hidden_state -> head -> dropout -> classifier, one score per token and label."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False, *,
                token_type_ids: torch.Tensor | None = None) -> TokenClassifierOutput:
        """input_ids etc.: (B, T); labels: (B, T) class ids, -100 where no loss is wanted."""
        out = self.model(input_ids, attention_mask, position_ids, output_hidden_states, output_attentions)
        logits = self.scores(out.last_hidden_state)  # (B, T, num_labels)
        loss = None if labels is None else token_loss(logits, labels)
        return TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class ModernBertForQuestionAnswering(ModernBertClassifierBase):
    """last_hidden_state -> head -> dropout -> classifier (2): a start and an end score per token.

    The span softmax runs over every position, as in transformers; the padding's states are zero (see
    ModernBertModel), so its scores are the same on the padded and the unpadded path."""

    def __init__(self, config: ModernBertConfig):
        super().__init__(config, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False, *,
                token_type_ids: torch.Tensor | None = None) -> QuestionAnsweringOutput:
        """input_ids etc.: (B, T); start/end_positions: (B,) the answer span, clamped to [0, T] with T adding
        no loss (as transformers and the BERT head)."""
        out = self.model(input_ids, attention_mask, position_ids, output_hidden_states, output_attentions)
        logits = self.scores(out.last_hidden_state)  # (B, T, 2)
        start_logits, end_logits = logits[..., 0].contiguous(), logits[..., 1].contiguous()  # (B, T) each
        loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringOutput(loss, start_logits, end_logits, out.hidden_states, out.attentions)


class ModernBertForMultipleChoice(ModernBertClassifierBase):
    """Each of (B, C, T) choices encoded alone; pooled -> head -> dropout -> classifier (1) -> (B, C)."""

    def __init__(self, config: ModernBertConfig):
        super().__init__(config, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False, *,
                token_type_ids: torch.Tensor | None = None) -> MultipleChoiceModelOutput:
        """input_ids, attention_mask: (B, C, T), one row per choice; labels: (B,) the right choice."""
        B, C, T = choices_shape(input_ids)
        if attention_mask is not None:
            check_shape("attention_mask", attention_mask, (B, C, T), f"input_ids of shape {(B, C, T)}")
        ids, mask = (None if t is None else t.reshape(B * C, T) for t in (input_ids, attention_mask))
        positions = None if position_ids is None else position_ids.reshape(-1, T)
        out = self.model(ids, mask, positions, output_hidden_states, output_attentions)
        logits = self.scores(self.pooled(out.last_hidden_state, mask, first_real=True)).view(B, C)  # (B, C)
        loss = None if labels is None else choice_loss(logits, labels)
        return MultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions)
