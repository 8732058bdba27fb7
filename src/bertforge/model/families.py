"""The model families bertforge trains, told apart by config.json's ``model_type``: how a preset name
becomes each family's config, and how to read a directory's config whatever its family."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bertforge.config import PRESETS, BertConfig
from bertforge.errors import ConfigError
from bertforge.io.jsonl import read_json_object

FAMILIES = ("bert", "xlnet", "elmo", "static", "electra")
_CHAR_FILTERS = [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]  # ELMo's, cut to size


def model_type(path: str | os.PathLike) -> str:
    """``model_type`` of a model directory's (or a config file's) config.json; "bert" when absent."""
    path = Path(path)
    path = path / "config.json" if path.is_dir() else path
    kind = read_json_object(path).get("model_type", "bert")
    if kind not in FAMILIES:
        raise ConfigError(f"model_type {kind!r} is not one bertforge trains", source=path,
                          hint=f"bertforge reads {', '.join(FAMILIES)}")
    return kind


def preset_config(family: str, preset: str, **overrides: Any):
    """A preset of Google's BERT sizes (tiny ... large) in ``family``'s config: the same layers, width and
    heads for XLNet and ELECTRA (whose embedding size is then the width); for ELMo a 2-layer biLM whose
    projection is the width and whose cells are 4x it."""
    layers, hidden, heads = PRESETS[preset]
    if family == "bert":
        return BertConfig.preset(preset, **overrides)
    if family == "xlnet":
        from bertforge.model.xlnet import XLNetConfig

        return XLNetConfig(**{**dict(d_model=hidden, n_layer=layers, n_head=heads, d_inner=4 * hidden, mem_len=None,
                                     bos_token_id=None, eos_token_id=None), **overrides})
    if family == "electra":  # the embedding size is the width, so the encoder is the BERT row's
        from bertforge.model.electra import ElectraConfig

        return ElectraConfig(**{**dict(embedding_size=hidden, hidden_size=hidden, num_hidden_layers=layers,
                                       num_attention_heads=heads, intermediate_size=4 * hidden), **overrides})
    if family == "elmo":
        from bertforge.model.elmo import ElmoConfig

        filters, total = [], 0
        for width, n in _CHAR_FILTERS:
            if total >= 4 * hidden:
                break
            filters.append([width, n])
            total += n
        return ElmoConfig(**{**dict(filters=filters, projection_dim=hidden, lstm_dim=4 * hidden, n_layers=2,
                                    n_highway=2), **overrides})
    raise ConfigError(f"unknown model family {family!r}", hint=f"choose one of {', '.join(FAMILIES)}")


def read_config(path: str | os.PathLike):
    """The config in a config.json file (or a model directory), as its family's class."""
    path = Path(path)
    path = path / "config.json" if path.is_dir() else path
    kind = model_type(path)
    if kind == "bert":
        return BertConfig.from_json_file(path)
    if kind == "xlnet":
        from bertforge.model.xlnet import XLNetConfig

        return XLNetConfig.from_json_file(path)
    if kind == "electra":
        from bertforge.model.electra import ElectraConfig

        return ElectraConfig.from_json_file(path)
    if kind == "static":
        from bertforge.model.static import StaticConfig

        return StaticConfig.load(path)
    from bertforge.model.elmo import ElmoConfig

    return ElmoConfig.load(path)
