"""Output records of the ELECTRA pre-training models, with `transformers`' field names (the generator's is the
shared ``MaskedLMOutput``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bertforge.model.outputs import MaskedLMOutput  # the generator's

__all__ = ["ElectraForPreTrainingOutput", "MaskedLMOutput", "ElectraPairOutput"]


@dataclass
class ElectraForPreTrainingOutput:
    loss: torch.Tensor | None = None  # replaced-token detection: mean BCE over the real tokens
    logits: torch.Tensor | None = None  # (B, T): > 0 says "replaced"; not meaningful at padding
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class ElectraPairOutput:
    """One ELECTRA training step's forward: the generator's MLM and the discriminator's replaced-token detection."""

    mlm_loss: torch.Tensor  # generator: mean cross-entropy at the masked positions
    rtd_loss: torch.Tensor  # discriminator: mean BCE over the real tokens (not yet weighted by lambda)
    prediction_logits: torch.Tensor  # (N, V): the generator at the N masked positions, in row-major order
    rtd_logits: torch.Tensor  # (B, T)
    rtd_labels: torch.Tensor  # (B, T) int64: 1 where the discriminator's input differs from the original
    discriminator_input_ids: torch.Tensor  # (B, T): the original with the generator's samples at the masked positions
