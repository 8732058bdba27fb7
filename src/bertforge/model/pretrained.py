"""What every bertforge model shares: load/save in the `transformers` layout, and BERT's initialisation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from bertforge.config import BertConfig
from bertforge.errors import require_dir
from bertforge.io import weights

M = TypeVar("M", bound="PreTrainedModel")


@torch.no_grad()
def init_modules(model: nn.Module, std: float, zero_padding: bool) -> None:
    """transformers' initialisation: normal(0, std) Linear and Embedding weights (the padding row zeroed when
    ``zero_padding``), zero Linear biases, LayerNorm weight 1 and bias 0."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, std)
            if zero_padding and module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()


class PreTrainedModel(nn.Module):
    """Base of every model that loads and saves the `transformers` layout, BERT's and each family's: its config,
    ``from_pretrained`` / ``save_pretrained`` and ``num_parameters``.

    A family names its ``config_class`` and ``base_model_prefix`` (the attribute its head models hold the encoder
    under, so the prefix of their weight names); where its checkpoints follow other rules than BERT's, it
    overrides ``complete_state`` (tensors a checkpoint implies but does not store) or ``load_weights`` (how
    checkpoint names are matched to the model's).
    """

    config_class: type  # a FamilyConfig: from_json_file, override
    base_model_prefix: str
    # (model, state, source, drop_mismatched) -> the names of the weights left at their fresh initialisation
    load_weights = staticmethod(weights.load_into)

    def __init__(self, config: Any):
        super().__init__()
        self.config = config
        self.newly_initialized: list[str] = []  # weights from_pretrained found no trained value for

    def num_parameters(self) -> int:
        """Distinct parameters (a tied matrix counts once)."""
        return sum(p.numel() for p in self.parameters())

    @classmethod
    def from_pretrained(cls: type[M], path: str | os.PathLike, *, ignore_mismatched_sizes: bool = False,
                        **config_overrides: Any) -> M:
        """Load ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``) from a directory.

        ``config_overrides`` set config fields (or extra keys such as ``num_labels``). Keys may carry the
        ``base_model_prefix`` or not, so an encoder checkpoint loads under a head and a head checkpoint under the
        encoder. Weights missing from the checkpoint (a task head on an encoder-only checkpoint) keep their fresh
        initialisation and are listed in one warning; ``ignore_mismatched_sizes`` does the same for tensors
        whose shape differs (a classifier with another number of labels) instead of raising.
        """
        path = require_dir(path, what="model directory")
        config = cls.config_class.from_json_file(path / "config.json")
        config.override(config_overrides, source=path / "config.json")
        model = cls(config)
        state = model.complete_state(weights.read_state_dict(path))
        model.newly_initialized = cls.load_weights(model, state, source=str(path),
                                                   drop_mismatched=ignore_mismatched_sizes)
        return model

    def complete_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A checkpoint's tensors with those the family derives instead of storing (none for BERT)."""
        return state

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors`` that ``transformers`` loads as well (a tied matrix is
        stored once, under its owner's name, the way transformers writes it)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        weights.save_state_dict(self.state_dict(), path / "model.safetensors")
        self.config.to_json_file(path / "config.json", architectures=[type(self).__name__])


class BertPreTrainedModel(PreTrainedModel):
    """Base of BertModel and every head model. Heads hold the encoder as ``self.bert``."""

    config_class = BertConfig
    base_model_prefix = "bert"

    @torch.no_grad()
    def init_weights(self) -> None:
        """BERT's initialisation: normal(0, initializer_range) weights, zero biases, LayerNorm 1/0."""
        init_modules(self, self.config.initializer_range, zero_padding=True)
        for name, param in self.named_parameters():
            if name.endswith("predictions.bias"):  # the MLM output bias lives outside any Linear
                param.zero_()


class EncoderAsBert:
    """Mixed into a family's head models that inherit a BERT head's forward (their layers are BERT's): that forward
    reads the encoder as ``self.bert``, which here is the family's encoder under its own name
    (``base_model_prefix``: transformers' name, and so the weights')."""

    base_model_prefix: str

    @property
    def bert(self) -> nn.Module:
        return getattr(self, self.base_model_prefix)
