"""Output records of the models, with the field names users know from `transformers`."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class BertOutput:
    last_hidden_state: torch.Tensor  # (B, T, H)
    pooler_output: torch.Tensor | None = None  # (B, H): tanh(dense([CLS]))
    hidden_states: tuple[torch.Tensor, ...] | None = None  # L + 1 of (B, T, H), embeddings first
    attentions: tuple[torch.Tensor, ...] | None = None  # L of (B, A, T, T)


@dataclass
class PreTrainingOutput:
    loss: torch.Tensor | None = None  # mlm_loss + nsp_loss (either alone when only one label is given)
    mlm_loss: torch.Tensor | None = None
    nsp_loss: torch.Tensor | None = None
    # (B, T, V) without labels; with labels, (N, V) for the N labelled positions in row-major order.
    prediction_logits: torch.Tensor | None = None
    seq_relationship_logits: torch.Tensor | None = None  # (B, 2): 0 = IsNext, 1 = NotNext
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class MaskedLMOutput:
    """A masked LM alone (RoFormer's, ModernBERT's, ELECTRA's generator), with `transformers`' field names."""

    loss: torch.Tensor | None = None  # mean cross-entropy over the labelled positions
    # (B, T, V) without labels; (N, V) at the N labelled positions, in row-major order, where only those are decoded
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None

    # BertForPreTraining's names for the same two, which the masked-LM objective and fill-mask read.
    @property
    def mlm_loss(self) -> torch.Tensor | None:
        return self.loss

    @property
    def prediction_logits(self) -> torch.Tensor | None:
        return self.logits


@dataclass
class CausalLMOutput:
    loss: torch.Tensor | None = None  # mean next-token cross-entropy
    logits: torch.Tensor | None = None  # (B, T, V) without labels, (N, V) at the N scored positions with
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class SequenceClassifierOutput:
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, num_labels)
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class MultipleChoiceModelOutput:
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, C): one score per choice
    hidden_states: tuple[torch.Tensor, ...] | None = None  # of (B * C, T, H)
    attentions: tuple[torch.Tensor, ...] | None = None  # of (B * C, A, T, T)


@dataclass
class TokenClassifierOutput:
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, T, num_labels)
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class QuestionAnsweringOutput:
    loss: torch.Tensor | None = None  # (CE(start) + CE(end)) / 2
    start_logits: torch.Tensor | None = None  # (B, T)
    end_logits: torch.Tensor | None = None  # (B, T)
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
