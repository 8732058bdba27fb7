"""What every RoFormer model shares: BERT's initialisation (transformers' RoFormer initialises as BERT does), and
load/save in the `transformers` layout.

Head models hold the encoder as ``self.roformer``, so their weights are ``roformer.encoder.layer.0...``; a bare
RoFormerModel's have no prefix. Loading adds or strips the prefix as needed (``io.weights.load_into``).
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import torch

from bertforge.errors import ConfigError, require_dir
from bertforge.io import weights
from bertforge.model.pretrained import BertPreTrainedModel
from bertforge.model.roformer.config import RoFormerConfig

M = TypeVar("M", bound="RoFormerPreTrainedModel")
TABLE = "encoder.embed_positions.weight"  # the sinusoid table (model/roformer/attention.py)


class RoFormerPreTrainedModel(BertPreTrainedModel):
    """Base of RoFormerModel and every RoFormer head model (BERT's init, save_pretrained and num_parameters)."""

    base_model_prefix = "roformer"

    @classmethod
    def from_pretrained(cls: type[M], path: str | os.PathLike, *, ignore_mismatched_sizes: bool = False,
                        **config_overrides: Any) -> M:
        """Load ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``) from a directory.

        ``config_overrides`` set config fields (or extra keys such as ``num_labels``). Weights missing from the
        checkpoint (a head on an encoder checkpoint) keep their fresh initialisation and are listed in a warning;
        ``ignore_mismatched_sizes`` does the same for tensors of another shape instead of raising. A checkpoint
        without the sinusoid table gets the model's own (it is computed, not trained).
        """
        path = require_dir(path, what="model directory")
        config = RoFormerConfig.from_json_file(path / "config.json")
        for key, value in config_overrides.items():
            if hasattr(config, key) and key != "extra":
                setattr(config, key, value)
            else:
                config.extra[key] = value
        try:
            config.validate()
        except ConfigError as e:
            raise ConfigError(e.message, source=path / "config.json", hint="check the overrides") from None
        model = cls(config)
        state = with_table(model, weights.read_state_dict(path))
        model.newly_initialized = weights.load_into(model, state, source=str(path),
                                                    drop_mismatched=ignore_mismatched_sizes)
        return model


class RoFormerHeadModel(RoFormerPreTrainedModel):
    """Base of the head models. A head whose layers are BERT's inherits its BERT class's forward, which reads the
    encoder as ``self.bert``: here that is ``self.roformer``, transformers' name (and so the weights')."""

    @property
    def bert(self):
        return self.roformer


def with_table(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with the model's sinusoid table added where the checkpoint has none."""
    if any(key.endswith(TABLE) for key in state):
        return state
    return {**state, **{name: tensor for name, tensor in model.state_dict().items() if name.endswith(TABLE)}}
