"""What every ELECTRA model shares: BERT's initialisation, and load/save in the `transformers` layout.

Head models hold the encoder as ``self.electra``, so their weights are ``electra.encoder.layer.0...``; a bare
ElectraModel's have no prefix. Loading adds or strips the prefix as needed (``io.weights.load_into``).
"""

from __future__ import annotations

import torch

from bertforge.model.electra.config import ElectraConfig
from bertforge.model.pretrained import BertPreTrainedModel


class ElectraPreTrainedModel(BertPreTrainedModel):
    """Base of ElectraModel and every ELECTRA head model (BERT's init, from_pretrained, save_pretrained and
    num_parameters)."""

    config_class = ElectraConfig
    base_model_prefix = "electra"

    def complete_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The generator's output matrix, stored once as the word embeddings, filled in under its own name."""
        return with_tied(self, state)


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
