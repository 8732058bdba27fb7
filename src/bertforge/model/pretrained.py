"""What every bertforge model shares: BERT's initialisation, and load/save in the `transformers` layout."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from bertforge.config import BertConfig
from bertforge.errors import require_dir
from bertforge.io import weights

M = TypeVar("M", bound="BertPreTrainedModel")


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


class BertPreTrainedModel(nn.Module):
    """Base of BertModel and every head model. Heads hold the encoder as ``self.bert``."""

    base_model_prefix = "bert"

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.newly_initialized: list[str] = []  # weights from_pretrained found no trained value for

    @torch.no_grad()
    def init_weights(self) -> None:
        """BERT's initialisation: normal(0, initializer_range) weights, zero biases, LayerNorm 1/0."""
        init_modules(self, self.config.initializer_range, zero_padding=True)
        for name, param in self.named_parameters():
            if name.endswith("predictions.bias"):  # the MLM output bias lives outside any Linear
                param.zero_()

    def num_parameters(self) -> int:
        """Distinct parameters (a tied matrix counts once)."""
        return sum(p.numel() for p in self.parameters())

    @classmethod
    def from_pretrained(cls: type[M], path: str | os.PathLike, *, ignore_mismatched_sizes: bool = False,
                        **config_overrides: Any) -> M:
        """Load ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``) from a directory.

        Keys may carry the ``bert.`` prefix or not. Weights missing from the checkpoint (a task head on
        an encoder-only checkpoint) keep their fresh initialisation and are listed in one warning.
        ``ignore_mismatched_sizes`` does the same for tensors whose shape differs (a classifier with
        another number of labels) instead of raising.
        """
        path = require_dir(path, what="model directory")
        config = BertConfig.from_json_file(path / "config.json")
        for key, value in config_overrides.items():
            if hasattr(config, key) and key != "extra":
                setattr(config, key, value)
            else:
                config.extra[key] = value
        config.validate()
        model = cls(config)
        model.newly_initialized = weights.load_into(model, weights.read_state_dict(path), source=str(path),
                                                    drop_mismatched=ignore_mismatched_sizes)
        return model

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors`` that ``transformers`` loads as well."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        weights.save_state_dict(self.state_dict(), path / "model.safetensors")
        self.config.to_json_file(path / "config.json", architectures=[type(self).__name__])
