"""XLNetConfig: XLNet's hyper-parameters with `transformers`' field names and defaults (xlnet-large)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from bertforge.errors import ConfigError
from bertforge.family_config import FamilyConfig

ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu", "swish")
SUMMARY_TYPES = ("last", "first", "mean", "cls_index")
ALIASES = {"n_token": "vocab_size"}  # names older config.json files use


@dataclass
class XLNetConfig(FamilyConfig):
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

    field_label = "field"  # its messages say "field 'x'" (a class attribute, not a dataclass field: no annotation)

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
        self.require_positive_ints(("vocab_size", "d_model", "n_layer", "n_head", "d_inner"))
        if self.d_model % self.n_head:
            raise ConfigError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        self.require_one_of("ff_activation", ACTIVATIONS)
        if self.attn_type not in ("bi", "uni"):
            raise ConfigError(f"field 'attn_type' is {self.attn_type!r}; expected 'bi' or 'uni'")
        self.require_one_of("summary_type", SUMMARY_TYPES)
        if self.summary_activation not in (None, "", "tanh", "linear", *ACTIVATIONS):
            raise ConfigError(f"field 'summary_activation' is {self.summary_activation!r}; use 'tanh', an "
                      f"activation name or null")
        for name in ("mem_len", "reuse_len"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ConfigError(f"field {name!r} must be a non-negative integer or null, got {value!r}")
        if not isinstance(self.clamp_len, int) or isinstance(self.clamp_len, bool):
            raise ConfigError(f"field 'clamp_len' must be an integer, got {self.clamp_len!r}")
        self.require_probabilities(("dropout", "summary_last_dropout"), numbers_only=False)

    # --- config.json ---------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | os.PathLike | None = None) -> "XLNetConfig":
        data = {ALIASES.get(k, k): v for k, v in data.items()}
        cls.check_model_type(data, "xlnet", source)
        config = cls.from_keys(data, source, written=("model_type", "d_head"))
        d_head = data.get("d_head")
        if d_head is not None and d_head != config.d_head:
            raise ConfigError(f"d_head is {d_head} but d_model // n_head is {config.d_head}", source=source)
        return config

    def to_dict(self) -> dict[str, Any]:
        return self.json_keys("XLNetModel", model_type="xlnet", d_head=self.d_head)
