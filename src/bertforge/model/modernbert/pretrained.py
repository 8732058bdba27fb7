"""What every ModernBERT model shares: its initialisation, and load/save in the `transformers` layout.

Head models hold the encoder as ``self.model``, so their weights are ``model.layers.0...``; a bare
ModernBertModel's have no prefix. Loading adds or strips the prefix as needed, so an encoder-only checkpoint
loads under a head and a head checkpoint under the encoder.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from bertforge.errors import CheckpointError, ConfigError, require_dir
from bertforge.io.weights import read_state_dict, save_state_dict, warn_fresh
from bertforge.model.modernbert.config import ModernBertConfig

M = TypeVar("M", bound="ModernBertPreTrainedModel")
PREFIX = "model."


class ModernBertPreTrainedModel(nn.Module):
    """Base of ModernBertModel and every ModernBERT head model."""

    base_model_prefix = "model"

    def __init__(self, config: ModernBertConfig):
        super().__init__()
        self.config = config
        self.newly_initialized: list[str] = []  # weights from_pretrained found no trained value for

    @torch.no_grad()
    def init_weights(self) -> None:
        """transformers' initialisation: truncated normals (cut at +-initializer_cutoff_factor std) with std
        initializer_range for the embedding and the input projections (Wqkv, Wi), initializer_range /
        sqrt(2 * layers) for the output projections (Wo, the head's dense, the decoder), hidden_size ** -0.5 for
        a classifier; zero biases, LayerNorm 1/0."""
        from bertforge.model.modernbert.attention import ModernBertAttention  # (they import this module)
        from bertforge.model.modernbert.heads import ModernBertPredictionHead
        from bertforge.model.modernbert.model import ModernBertEmbeddings, ModernBertMLP

        cfg = self.config
        stds = {"in": cfg.initializer_range, "out": cfg.initializer_range / math.sqrt(2.0 * cfg.num_hidden_layers),
                "final_out": cfg.hidden_size ** -0.5}
        cutoff = cfg.initializer_cutoff_factor

        def init(module: nn.Module, std: float) -> None:
            nn.init.trunc_normal_(module.weight, 0.0, std, -cutoff * std, cutoff * std)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()

        decoder = getattr(self, "decoder", None)
        if decoder is not None:  # first: a decoder tied to the embedding ends with the embedding's init
            init(decoder, stds["out"])
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, ModernBertEmbeddings):
                init(module.tok_embeddings, stds["in"])
            elif isinstance(module, (ModernBertMLP, ModernBertAttention)):
                init(module.Wi if isinstance(module, ModernBertMLP) else module.Wqkv, stds["in"])
                init(module.Wo, stds["out"])
            elif isinstance(module, ModernBertPredictionHead):
                init(module.dense, stds["out"])
        classifier = getattr(self, "classifier", None)
        if classifier is not None:
            init(classifier, stds["final_out"])

    def num_parameters(self) -> int:
        """Distinct parameters (a tied matrix counts once)."""
        return sum(p.numel() for p in self.parameters())

    @classmethod
    def from_pretrained(cls: type[M], path: str | os.PathLike, *, ignore_mismatched_sizes: bool = False,
                        **config_overrides: Any) -> M:
        """Load ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``) from a directory.

        ``config_overrides`` set config fields (or extra keys such as ``num_labels``). Weights missing from the
        checkpoint (a head on an encoder checkpoint) keep their fresh initialisation and are listed in a
        warning; ``ignore_mismatched_sizes`` does the same for tensors of another shape.
        """
        path = require_dir(path, what="model directory")
        config = ModernBertConfig.from_json_file(path / "config.json")
        fields = {f.name for f in dataclasses.fields(config)} - {"extra"}
        for key, value in config_overrides.items():
            if key in fields:
                setattr(config, key, value)
            else:
                config.extra[key] = value
        try:
            config.validate()
        except ConfigError as e:
            raise ConfigError(e.message, source=path / "config.json", hint="check the overrides") from None
        model = cls(config)
        model.newly_initialized = load_weights(model, read_state_dict(path), source=str(path),
                                               drop_mismatched=ignore_mismatched_sizes)
        return model

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors`` that ``transformers`` loads as well (the tied decoder
        matrix is stored once, as the token embedding, the way transformers writes it)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_state_dict(self.state_dict(), path / "model.safetensors")
        self.config.to_json_file(path / "config.json", architectures=[type(self).__name__])


def _tied_names(model: nn.Module) -> set[str]:
    """State names that alias an earlier tensor (the decoder's matrix when tied to the embedding)."""
    seen: set[int] = set()
    tied = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            tied.add(name)
        seen.add(id(tensor))
    return tied


def load_weights(model: ModernBertPreTrainedModel, state: dict[str, torch.Tensor], source: str,
                 drop_mismatched: bool = False) -> list[str]:
    """Copy ``state`` into ``model``, matching the ``model.`` prefix either way; returns the names of the weights
    left at their fresh initialisation.

    A missing encoder tensor or a shape mismatch is a CheckpointError (mismatches are dropped with a warning
    under ``drop_mismatched``); a missing head or an unused tensor is a warning. A tied tensor follows what it
    is tied to, whatever the checkpoint holds for it, as in transformers.
    """
    own = model.state_dict()
    prefixed = any(k.startswith(PREFIX) for k in own)
    tied = _tied_names(model)
    matched: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, tensor in state.items():
        name = key
        if name not in own:
            if prefixed and PREFIX + name in own:
                name = PREFIX + name
            elif not prefixed and name.startswith(PREFIX):
                name = name[len(PREFIX):]
        if name in tied:
            continue
        if name in own:
            matched[name] = tensor
        else:
            unexpected.append(key)
    mismatched = {n: (tuple(t.shape), tuple(own[n].shape)) for n, t in matched.items() if t.shape != own[n].shape}
    if mismatched and not drop_mismatched:
        listed = ", ".join(f"{n} (checkpoint {a}, model {b})" for n, (a, b) in sorted(mismatched.items())[:8])
        raise CheckpointError(f"{source}: {len(mismatched)} tensors have another shape in the checkpoint than "
                              f"in the model: {listed}", mismatched=mismatched,
                              hint="pass ignore_mismatched_sizes=True to re-initialise those tensors (they "
                                   "then need training), or a config override (e.g. num_labels) that fits")
    for name in mismatched:
        del matched[name]
    missing = sorted(set(own) - set(matched) - set(mismatched) - tied)
    encoder = [k for k in missing if k.startswith(PREFIX) or not prefixed]
    if encoder:
        raise CheckpointError(f"{source}: checkpoint lacks encoder weights: {', '.join(encoder[:8])}"
                              + (f" and {len(encoder) - 8} more" if len(encoder) > 8 else ""))
    with torch.no_grad():
        for name, tensor in matched.items():
            own[name].copy_(tensor)
    warn_fresh(source, missing, mismatched, unexpected)
    return sorted(missing + list(mismatched))
