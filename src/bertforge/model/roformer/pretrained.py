"""What every RoFormer model shares: BERT's initialisation (transformers' RoFormer initialises as BERT does), and
load/save in the `transformers` layout.

Head models hold the encoder as ``self.roformer``, so their weights are ``roformer.encoder.layer.0...``; a bare
RoFormerModel's have no prefix. Loading adds or strips the prefix as needed (``io.weights.load_into``).
"""

from __future__ import annotations

import torch

from bertforge.model.pretrained import BertPreTrainedModel, EncoderAsBert
from bertforge.model.roformer.config import RoFormerConfig

TABLE = "encoder.embed_positions.weight"  # the sinusoid table (model/roformer/attention.py)


class RoFormerPreTrainedModel(BertPreTrainedModel):
    """Base of RoFormerModel and every RoFormer head model (BERT's init, from_pretrained, save_pretrained and
    num_parameters)."""

    config_class = RoFormerConfig
    base_model_prefix = "roformer"

    def complete_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A checkpoint without the sinusoid table gets the model's own (it is computed, not trained)."""
        return with_table(self, state)


class RoFormerHeadModel(EncoderAsBert, RoFormerPreTrainedModel):
    """Base of the head models. A head whose layers are BERT's inherits its BERT class's forward, which reads the
    encoder as ``self.bert``: here that is ``self.roformer``."""


def with_table(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with the model's sinusoid table added where the checkpoint has none."""
    if any(key.endswith(TABLE) for key in state):
        return state
    return {**state, **{name: tensor for name, tensor in model.state_dict().items() if name.endswith(TABLE)}}
