"""RoFormerConfig: RoFormer's hyper-parameters with `transformers`' field names and defaults
(junnyu/roformer_chinese_base), and presets at Google's BERT sizes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from bertforge.config import PRESETS, SUPPORTED_ACTIVATIONS
from bertforge.errors import ConfigError
from bertforge.family_config import FamilyConfig


@dataclass
class RoFormerConfig(FamilyConfig):
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
        self.require_positive_ints(("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers",
                                    "num_attention_heads", "intermediate_size", "max_position_embeddings",
                                    "type_vocab_size"))
        self.require_heads_divide_hidden()
        if self.head_size % 2:
            raise ConfigError(f"hidden_size / num_attention_heads is {self.head_size}; rotary positions turn pairs "
                              f"of a head's dimensions, so it must be even")
        self.require_one_of("hidden_act", SUPPORTED_ACTIVATIONS)
        self.require_bools(("is_decoder", "rotary_value", "tie_word_embeddings"))
        if not self.tie_word_embeddings:
            raise ConfigError("config field 'tie_word_embeddings' is false; bertforge's RoFormer reads its masked-LM "
                              "output matrix from the word embeddings, as transformers' does by default")
        if self.extra.get("add_cross_attention"):
            raise ConfigError("config field 'add_cross_attention' is true; bertforge's RoFormer has no "
                              "cross-attention (it is an encoder, or a left-to-right LM)")
        self.require_probabilities(("hidden_dropout_prob", "attention_probs_dropout_prob"))
        self.require_pad_token_id()

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
        cls.check_model_type(data, "roformer", source)
        return cls.from_keys(data, source)

    def to_dict(self) -> dict[str, Any]:
        return self.json_keys("RoFormerModel", model_type="roformer")
