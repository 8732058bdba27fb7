"""RoFormerConfig: RoFormer's hyper-parameters with `transformers`' field names and defaults
(junnyu/roformer_chinese_base), and presets at Google's BERT sizes."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertforge.config import PRESETS, SUPPORTED_ACTIVATIONS
from bertforge.errors import ConfigError
from bertforge.io.atomic import atomic_write_text
from bertforge.io.jsonl import read_json_object


@dataclass
class RoFormerConfig:
    vocab_size: int = 50000
    embedding_size: int | None = None  # token and segment embeddings; None: hidden_size (projected when different)
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 1536  # no position table to learn: the rows of the sinusoid table
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    rotary_value: bool = False  # rotate the values too, not only the queries and keys
    # True: a left-to-right model (each position attends to itself and the ones before it), as BERT's is_decoder.
    is_decoder: bool = False
    tie_word_embeddings: bool = True  # the masked-LM output matrix is the word-embedding matrix (always, here)
    # Keys we do not model (architectures, label maps, use_cache...) survive a load/save round trip.
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.embedding_size is None:  # as transformers: fixed once, and written to config.json
            self.embedding_size = self.hidden_size
        self.validate()

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def validate(self) -> None:
        """Reject values that cannot describe a RoFormer, naming the field."""
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"config field {name!r} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                              f"({self.num_attention_heads})")
        if self.head_size % 2:
            raise ConfigError(f"hidden_size / num_attention_heads is {self.head_size}; rotary positions turn pairs "
                              f"of a head's dimensions, so it must be even")
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ConfigError(f"config field 'hidden_act' is {self.hidden_act!r}; "
                              f"supported: {', '.join(SUPPORTED_ACTIVATIONS)}")
        for name in ("is_decoder", "rotary_value", "tie_word_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"config field {name!r} must be true or false, got {getattr(self, name)!r}")
        if not self.tie_word_embeddings:
            raise ConfigError("config field 'tie_word_embeddings' is false; bertforge's RoFormer reads its masked-LM "
                              "output matrix from the word embeddings, as transformers' does by default")
        if self.extra.get("add_cross_attention"):
            raise ConfigError("config field 'add_cross_attention' is true; bertforge's RoFormer has no "
                              "cross-attention (it is an encoder, or a left-to-right LM)")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
                raise ConfigError(f"config field {name!r} must be in [0, 1), got {value!r}")
        pad = self.pad_token_id
        if pad is not None and (not isinstance(pad, int) or isinstance(pad, bool) or not 0 <= pad < self.vocab_size):
            raise ConfigError(f"config field 'pad_token_id' must be null or an id in [0, {self.vocab_size}) "
                              f"(vocab_size), got {pad!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "RoFormerConfig":
        """Google's BERT sizes (tiny, mini, small, medium, base, large) as RoFormer, with BERT's vocabulary size and
        512 positions: BERT with rotary positions in place of its position table."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        layers, hidden, heads = PRESETS[name]
        return cls(**{**dict(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                             intermediate_size=4 * hidden, max_position_embeddings=512), **overrides})

    # --- config.json ---------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | os.PathLike | None = None) -> "RoFormerConfig":
        if data.get("model_type", "roformer") != "roformer":
            raise ConfigError(f"model_type is {data['model_type']!r}, expected 'roformer'", source=source)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k != "model_type"}
        try:
            return cls(**known, extra=extra)
        except ConfigError as e:
            raise ConfigError(e.message, source=source) from None
        except TypeError as e:  # a value of the wrong kind where a number is compared
            raise ConfigError(f"bad value: {e}", source=source) from None

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "RoFormerConfig":
        return cls.from_dict(read_json_object(path), source=path)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"architectures": ["RoFormerModel"]}
        data.update(self.extra)
        data.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        data["model_type"] = "roformer"
        return data

    def to_json_file(self, path: str | os.PathLike, **overrides: Any) -> None:
        """Write config.json atomically; ``overrides`` set extra keys (e.g. architectures)."""
        data = self.to_dict()
        data.update(overrides)
        atomic_write_text(Path(path), json.dumps(data, indent=2, sort_keys=True) + "\n")
