"""What every ELECTRA model shares: BERT's initialisation, and load/save in the `transformers` layout.

Head models hold the encoder as ``self.electra``, so their weights are ``electra.encoder.layer.0...``; a bare
ElectraModel's have no prefix. Loading adds or strips the prefix as needed (``io.weights.load_into``).
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import torch

from bertforge.errors import ConfigError, require_dir
from bertforge.io import weights
from bertforge.model.electra.config import ElectraConfig
from bertforge.model.pretrained import BertPreTrainedModel

M = TypeVar("M", bound="ElectraPreTrainedModel")


class ElectraPreTrainedModel(BertPreTrainedModel):
    """Base of ElectraModel and every ELECTRA head model (BERT's init, save_pretrained and num_parameters)."""

    base_model_prefix = "electra"

    @classmethod
    def from_pretrained(cls: type[M], path: str | os.PathLike, *, ignore_mismatched_sizes: bool = False,
                        **config_overrides: Any) -> M:
        """Load ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``) from a directory.

        ``config_overrides`` set config fields (or extra keys such as ``num_labels``). Weights missing from the
        checkpoint (a head on an encoder checkpoint) keep their fresh initialisation and are listed in a warning;
        ``ignore_mismatched_sizes`` does the same for tensors of another shape instead of raising.
        """
        path = require_dir(path, what="model directory")
        config = ElectraConfig.from_json_file(path / "config.json")
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
        state = with_tied(model, weights.read_state_dict(path))
        model.newly_initialized = weights.load_into(model, state, source=str(path),
                                                    drop_mismatched=ignore_mismatched_sizes)
        return model


def with_tied(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with each tied alias of ``model`` (the generator's output matrix) filled from its owner (the word
    embeddings): transformers stores a tied matrix once, under the owner's name."""
    prefix = model.base_model_prefix + "."
    names: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        names.setdefault(id(tensor), []).append(name)
    state = dict(state)
    for owner, *aliases in (group for group in names.values() if len(group) > 1):
        for key in (owner, owner.removeprefix(prefix), prefix + owner):
            if key in state:
                for alias in aliases:
                    state.setdefault(alias, state[key])
                break
    return state
