"""BertConfig: the model's hyper-parameters, with `transformers`' field names, and Google's presets."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from bertforge.errors import ConfigError
from bertforge.family_config import FamilyConfig

# layers, hidden, heads (Google's released BERT family; intermediate = 4 * hidden).
PRESETS: dict[str, tuple[int, int, int]] = {
    "tiny": (2, 128, 2),
    "mini": (4, 256, 4),
    "small": (4, 512, 8),
    "medium": (8, 512, 8),
    "base": (12, 768, 12),
    "large": (24, 1024, 16),
}

SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")


@dataclass
class BertConfig(FamilyConfig):
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    # True: a left-to-right (GPT-style) model: each position attends to itself and the ones before it,
    # at pre-training and fine-tuning alike; sentence heads read the last real token (see model/bert.py).
    is_decoder: bool = False
    # Keys we do not model (architectures, label maps, versions...) survive a load/save round trip.
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Reject configurations that cannot describe a BERT, naming the field."""
        self.require_positive_ints(("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                    "intermediate_size", "max_position_embeddings", "type_vocab_size"))
        self.require_heads_divide_hidden()
        self.require_one_of("hidden_act", SUPPORTED_ACTIVATIONS)
        self.require_bools(("is_decoder",))
        self.require_probabilities(("hidden_dropout_prob", "attention_probs_dropout_prob"), numbers_only=False)

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "BertConfig":
        """Google's BERT family by name: tiny, mini, small, medium, base, large."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        layers, hidden, heads = PRESETS[name]
        values = dict(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                      intermediate_size=4 * hidden)
        values.update(overrides)
        return cls(**values)

    # --- config.json ---------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | os.PathLike = "config") -> "BertConfig":
        names = cls.field_names()
        missing = [n for n in ("vocab_size", "hidden_size", "num_hidden_layers",
                               "num_attention_heads", "intermediate_size") if n not in data]
        if missing:
            raise ConfigError(f"{source}: missing required field(s) {', '.join(missing)}")
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        if extra.get("model_type", "bert") != "bert":
            raise ConfigError(f"{source}: model_type is {extra['model_type']!r}, expected 'bert'")
        if extra.get("position_embedding_type", "absolute") != "absolute":
            raise ConfigError(f"{source}: only absolute position embeddings are supported, got "
                              f"{extra['position_embedding_type']!r}")
        try:
            return cls(**known, extra=extra)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        # Before extra, which may restate model_type and position_embedding_type (from_dict keeps them, checked).
        return {"architectures": ["BertModel"], "model_type": "bert", "position_embedding_type": "absolute",
                **self.extra, **self.field_values()}
