"""XLNetConfig: XLNet's hyper-parameters with `transformers`' field names and defaults (xlnet-large)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertforge.io.atomic import atomic_write_text
from bertforge.io.jsonl import read_json_object
from bertforge.errors import ConfigError

ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu", "swish")
SUMMARY_TYPES = ("last", "first", "mean", "cls_index")
ALIASES = {"n_token": "vocab_size"}  # names older config.json files use


@dataclass
class XLNetConfig:
    vocab_size: int = 32000
    d_model: int = 1024
    n_layer: int = 24
    n_head: int = 16
    d_inner: int = 4096
    ff_activation: str = "gelu"
    untie_r: bool = True  # kept for round trips: biases are always per layer, as transformers stores them
    attn_type: str = "bi"  # "bi": XLNet; "uni": Transformer-XL's causal attention
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    mem_len: int | None = 512  # memory kept per layer with use_mems; None or 0 keeps everything
    reuse_len: int | None = None  # tokens of each segment cached as memory (None: all)
    use_mems_eval: bool = True
    use_mems_train: bool = False
    bi_data: bool = False  # first half of a batch reads forward, second half backward positions
    clamp_len: int = -1  # relative distances clamped to [-clamp_len, clamp_len] when > 0
    same_length: bool = False  # "uni" only: every token attends to the same number of keys
    summary_type: str = "last"
    summary_use_proj: bool = True
    summary_activation: str | None = "tanh"
    summary_last_dropout: float = 0.1
    start_n_top: int = 5
    end_n_top: int = 5
    pad_token_id: int | None = 5
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    tie_word_embeddings: bool = True
    # Keys we do not model (architectures, label maps, versions...) survive a load/save round trip.
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head

    @property
    def hidden_size(self) -> int:  # the name the shared helpers (and transformers) also answer to
        return self.d_model

    def validate(self) -> None:
        """Reject values that cannot describe an XLNet, naming the field."""

        for name in ("vocab_size", "d_model", "n_layer", "n_head", "d_inner"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"field {name!r} must be a positive integer, got {value!r}")
        if self.d_model % self.n_head:
            raise ConfigError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        if self.ff_activation not in ACTIVATIONS:
            raise ConfigError(f"field 'ff_activation' is {self.ff_activation!r}; "
                              f"supported: {', '.join(ACTIVATIONS)}")
        if self.attn_type not in ("bi", "uni"):
            raise ConfigError(f"field 'attn_type' is {self.attn_type!r}; expected 'bi' or 'uni'")
        if self.summary_type not in SUMMARY_TYPES:
            raise ConfigError(f"field 'summary_type' is {self.summary_type!r}; "
                              f"supported: {', '.join(SUMMARY_TYPES)}")
        if self.summary_activation not in (None, "", "tanh", "linear", *ACTIVATIONS):
            raise ConfigError(f"field 'summary_activation' is {self.summary_activation!r}; use 'tanh', an "
                      f"activation name or null")
        for name in ("mem_len", "reuse_len"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ConfigError(f"field {name!r} must be a non-negative integer or null, got {value!r}")
        if not isinstance(self.clamp_len, int) or isinstance(self.clamp_len, bool):
            raise ConfigError(f"field 'clamp_len' must be an integer, got {self.clamp_len!r}")
        for name in ("dropout", "summary_last_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"field {name!r} must be in [0, 1), got {getattr(self, name)!r}")

    # --- config.json ---------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | os.PathLike | None = None) -> "XLNetConfig":
        data = {ALIASES.get(k, k): v for k, v in data.items()}
        if data.get("model_type", "xlnet") != "xlnet":
            raise ConfigError(f"model_type is {data['model_type']!r}, expected 'xlnet'", source=source)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k not in ("model_type", "d_head")}
        try:
            config = cls(**known, extra=extra)
        except ConfigError as e:
            raise ConfigError(e.message, source=source) from None
        except TypeError as e:  # a value of the wrong kind where a number is compared
            raise ConfigError(f"bad value: {e}", source=source) from None
        d_head = data.get("d_head")
        if d_head is not None and d_head != config.d_head:
            raise ConfigError(f"d_head is {d_head} but d_model // n_head is {config.d_head}", source=source)
        return config

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "XLNetConfig":
        return cls.from_dict(read_json_object(path), source=path)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"architectures": ["XLNetModel"]}
        data.update(self.extra)
        data.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        data.update(model_type="xlnet", d_head=self.d_head)
        return data

    def to_json_file(self, path: str | os.PathLike, **overrides: Any) -> None:
        """Write config.json atomically; ``overrides`` set extra keys (e.g. architectures)."""
        data = self.to_dict()
        data.update(overrides)
        atomic_write_text(Path(path), json.dumps(data, indent=2, sort_keys=True) + "\n")
