"""ModernBertConfig: ModernBERT's hyper-parameters with `transformers`' field names and defaults (ModernBERT-base),
and its presets: Google's BERT sizes plus ModernBERT's own base and large.

`transformers` 5 writes the attention pattern as ``layer_types`` and the rotary bases as ``rope_parameters``;
its 4.x releases and the published checkpoints write ``global_attn_every_n_layers``, ``global_rope_theta`` and
``local_rope_theta``. Both spellings are read, and both are written (they always agree), so a directory saved
here loads in either.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from bertforge.config import PRESETS as BERT_PRESETS
from bertforge.errors import ConfigError
from bertforge.family_config import FamilyConfig

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish")
POOLINGS = ("cls", "mean")
GLOBAL, LOCAL = "full_attention", "sliding_attention"  # transformers' names of the two layer types

# ModernBERT's own sizes (layers, hidden, heads, intermediate), from the released ModernBERT-base and -large.
MODERNBERT_PRESETS: dict[str, tuple[int, int, int, int]] = {
    "modernbert-base": (22, 768, 12, 1152),
    "modernbert-large": (28, 1024, 16, 2624),
}
# Google's sizes carry BERT's uncased WordPiece vocabulary and special ids (a tokenizer overrides them).
BERT_VOCAB = dict(vocab_size=30522, pad_token_id=0, bos_token_id=101, cls_token_id=101, eos_token_id=102,
                  sep_token_id=102)


@dataclass
class ModernBertConfig(FamilyConfig):
    vocab_size: int = 50368
    hidden_size: int = 768
    intermediate_size: int = 1152  # per GeGLU half: Wi is (2 * intermediate_size, hidden_size)
    num_hidden_layers: int = 22
    num_attention_heads: int = 12
    hidden_activation: str = "gelu"
    max_position_embeddings: int = 8192  # no position table (rotary): only the longest input accepted
    initializer_range: float = 0.02
    initializer_cutoff_factor: float = 2.0  # weights drawn from a normal truncated at +-cutoff * std
    norm_eps: float = 1e-5
    norm_bias: bool = False
    pad_token_id: int | None = 50283
    eos_token_id: int | list[int] | None = 50282
    bos_token_id: int | None = 50281
    cls_token_id: int | None = 50281
    sep_token_id: int | None = 50282
    global_rope_theta: float = 160000.0  # rotary base of the global-attention layers
    attention_bias: bool = False
    attention_dropout: float = 0.0
    global_attn_every_n_layers: int = 3  # layer i is global when i % n == 0, else sliding-window local
    local_attention: int = 128  # a local layer's window: each token sees local_attention // 2 either side
    local_rope_theta: float = 10000.0  # rotary base of the local layers
    embedding_dropout: float = 0.0
    mlp_bias: bool = False
    mlp_dropout: float = 0.0
    decoder_bias: bool = True
    classifier_pooling: str = "cls"  # "cls": the first token; "mean": the mean of the real tokens
    classifier_dropout: float = 0.0
    classifier_bias: bool = False  # the prediction head's dense layer (the classifier itself always has one)
    classifier_activation: str = "gelu"
    deterministic_flash_attn: bool = False  # kept for round trips (no flash-attention kernels here)
    sparse_prediction: bool = False  # masked LM with labels: logits only at the labelled positions
    sparse_pred_ignore_index: int = -100
    tie_word_embeddings: bool = True
    layer_types: list[str] | None = None  # an explicit pattern (transformers 5); None: every n-th global
    # Keys we do not model (architectures, label maps, versions...) survive a load/save round trip.
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    field_label = "field"  # its messages say "field 'x'" (a class attribute, not a dataclass field: no annotation)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def sliding_window(self) -> int:
        """How many tokens a local layer sees on either side of a token (transformers' name)."""
        return self.local_attention // 2

    @property
    def attention_types(self) -> list[str]:
        """Per layer, ``"full_attention"`` (global) or ``"sliding_attention"`` (local)."""
        if self.layer_types is not None:
            return list(self.layer_types)
        return every_nth(self.num_hidden_layers, self.global_attn_every_n_layers)

    def validate(self) -> None:
        """Reject values that cannot describe a ModernBERT, naming the field."""
        self.require_positive_ints(("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                    "num_attention_heads", "max_position_embeddings", "global_attn_every_n_layers",
                                    "local_attention"))
        self.require_heads_divide_hidden()
        if self.head_dim % 2:
            raise ConfigError(f"hidden_size / num_attention_heads is {self.head_dim}; rotary positions need an "
                              f"even head size")
        if self.local_attention % 2:
            raise ConfigError(f"field 'local_attention' must be even (the window is local_attention // 2 tokens "
                              f"on either side of a token), got {self.local_attention}",
                              hint=f"use {self.local_attention - 1} or {self.local_attention + 1}")
        for name in ("hidden_activation", "classifier_activation"):
            self.require_one_of(name, ACTIVATIONS)
        if self.classifier_pooling not in POOLINGS:
            raise ConfigError(f"field 'classifier_pooling' is {self.classifier_pooling!r}; expected 'cls' or 'mean'")
        self.require_bools(("norm_bias", "attention_bias", "mlp_bias", "decoder_bias", "classifier_bias",
                            "tie_word_embeddings", "sparse_prediction", "deterministic_flash_attn"))
        self.require_probabilities(("attention_dropout", "embedding_dropout", "mlp_dropout", "classifier_dropout"))
        for name in ("global_rope_theta", "local_rope_theta", "initializer_range", "norm_eps",
                     "initializer_cutoff_factor"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ConfigError(f"field {name!r} must be a positive number, got {value!r}")
        self.require_pad_token_id()
        if self.layer_types is not None:
            types = self.layer_types
            if (not isinstance(types, list) or len(types) != self.num_hidden_layers
                    or any(t not in (GLOBAL, LOCAL) for t in types)):
                raise ConfigError(f"field 'layer_types' must list {self.num_hidden_layers} (num_hidden_layers) of "
                                  f"{GLOBAL!r} and {LOCAL!r}, got {types!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "ModernBertConfig":
        """By name: Google's BERT sizes (tiny, mini, small, medium, base, large: their layers, width and heads,
        GeGLU width 1.5x hidden as in ModernBERT-base, BERT's vocabulary ids) or modernbert-base / -large."""
        if name in MODERNBERT_PRESETS:
            layers, hidden, heads, inner = MODERNBERT_PRESETS[name]
            values: dict[str, Any] = {}
        elif name in BERT_PRESETS:
            layers, hidden, heads = BERT_PRESETS[name]
            inner, values = 3 * hidden // 2, dict(BERT_VOCAB)
        else:
            raise ConfigError(f"unknown preset {name!r}; choose one of "
                              f"{', '.join([*BERT_PRESETS, *MODERNBERT_PRESETS])}")
        values.update(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                      intermediate_size=inner)
        values.update(overrides)
        return cls(**values)

    # --- config.json ---------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | os.PathLike | None = None) -> "ModernBertConfig":
        """A config from config.json's keys, as either transformers generation writes them."""
        cls.check_model_type(data, "modernbert", source)
        data = dict(data)
        try:
            _read_rope_parameters(data)
            _read_layer_types(data)
        except ConfigError as e:
            raise ConfigError(e.message, source=source, hint=e.hint) from None
        return cls.from_keys(data, source)

    def to_dict(self) -> dict[str, Any]:
        return self.json_keys("ModernBertModel", model_type="modernbert", layer_types=self.attention_types,
                              rope_parameters={GLOBAL: {"rope_theta": self.global_rope_theta, "rope_type": "default"},
                                               LOCAL: {"rope_theta": self.local_rope_theta, "rope_type": "default"}})


def every_nth(layers: int, n: int) -> list[str]:
    """ModernBERT's pattern: layer i global when i % n == 0, local otherwise."""
    return [GLOBAL if i % n == 0 else LOCAL for i in range(layers)]


def _read_rope_parameters(data: dict[str, Any]) -> None:
    """transformers 5's ``rope_parameters`` into the two theta fields (in place); a scaling we do not implement,
    or a theta that disagrees with the old-style field beside it, is an error."""
    if data.get("rope_scaling") is not None:
        raise ConfigError(f"field 'rope_scaling' is {data['rope_scaling']!r}; only plain rotary positions are "
                          f"supported")
    data.pop("rope_scaling", None)
    rope = data.pop("rope_parameters", None)
    if rope is None:
        return
    if not isinstance(rope, dict):
        raise ConfigError(f"field 'rope_parameters' must be an object, got {rope!r}")
    for kind, theta in ((GLOBAL, "global_rope_theta"), (LOCAL, "local_rope_theta")):
        params = rope.get(kind) or {}
        if params.get("rope_type", "default") != "default":
            raise ConfigError(f"field 'rope_parameters.{kind}.rope_type' is {params['rope_type']!r}; only "
                              f"'default' rotary positions are supported")
        if "rope_theta" not in params:
            continue
        if theta in data and data[theta] != params["rope_theta"]:
            raise ConfigError(f"field {theta!r} is {data[theta]!r} but rope_parameters.{kind}.rope_theta is "
                              f"{params['rope_theta']!r}")
        data[theta] = params["rope_theta"]


def _read_layer_types(data: dict[str, Any]) -> None:
    """``layer_types`` wins over ``global_attn_every_n_layers`` (as in transformers 5); it is dropped (in place)
    when it is the every-n pattern, so a config names its pattern once."""
    types = data.get("layer_types")
    if types is None:
        return
    n, layers = data.get("global_attn_every_n_layers", 3), data.get("num_hidden_layers", 22)
    if isinstance(n, int) and not isinstance(n, bool) and n > 0 and isinstance(layers, int) \
            and types == every_nth(layers, n):
        del data["layer_types"]
