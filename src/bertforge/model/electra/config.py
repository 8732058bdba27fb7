"""ElectraConfig: ELECTRA's hyper-parameters with `transformers`' field names and defaults (ELECTRA-Small's
discriminator), and the generator's config derived from the discriminator's as the paper does."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertforge.config import SUPPORTED_ACTIVATIONS, BertConfig
from bertforge.errors import ConfigError
from bertforge.io.atomic import atomic_write_text
from bertforge.io.jsonl import read_json_object

SUMMARY_TYPES = ("first", "last", "mean", "cls_index")


@dataclass
class ElectraConfig:
    vocab_size: int = 30522
    embedding_size: int = 128  # token, position and segment embeddings; projected to hidden_size when different
    hidden_size: int = 256
    num_hidden_layers: int = 12
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    summary_type: str = "first"  # the multiple-choice head's sequence summary (transformers' SequenceSummary)
    summary_use_proj: bool = True
    summary_activation: str | None = "gelu"
    summary_last_dropout: float = 0.1
    pad_token_id: int = 0
    is_decoder: bool = False
    tie_word_embeddings: bool = True  # the generator's output matrix is the word-embedding matrix
    # Keys we do not model (architectures, label maps, classifier_dropout...) survive a load/save round trip.
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def validate(self) -> None:
        """Reject values that cannot describe an ELECTRA model, naming the field."""
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"config field {name!r} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                              f"({self.num_attention_heads})")
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ConfigError(f"config field 'hidden_act' is {self.hidden_act!r}; "
                              f"supported: {', '.join(SUPPORTED_ACTIVATIONS)}")
        if self.summary_type not in SUMMARY_TYPES:
            raise ConfigError(f"config field 'summary_type' is {self.summary_type!r}; "
                              f"supported: {', '.join(SUMMARY_TYPES)}")
        if self.summary_activation not in (None, "", "linear", "tanh", *SUPPORTED_ACTIVATIONS):
            raise ConfigError(f"config field 'summary_activation' is {self.summary_activation!r}; use 'tanh', "
                              f"an activation name ({', '.join(SUPPORTED_ACTIVATIONS)}) or null")
        for name in ("is_decoder", "tie_word_embeddings", "summary_use_proj"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"config field {name!r} must be true or false, got {getattr(self, name)!r}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "summary_last_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"config field {name!r} must be in [0, 1), got {getattr(self, name)!r}")

    def embeddings_config(self) -> BertConfig:
        """BERT's embedding layer sized to ``embedding_size`` (the module is BERT's, only narrower)."""
        return BertConfig(vocab_size=self.vocab_size, hidden_size=self.embedding_size, num_hidden_layers=1,
                          num_attention_heads=1, intermediate_size=1,
                          max_position_embeddings=self.max_position_embeddings, type_vocab_size=self.type_vocab_size,
                          layer_norm_eps=self.layer_norm_eps, hidden_dropout_prob=self.hidden_dropout_prob,
                          pad_token_id=self.pad_token_id)

    # --- config.json ---------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | os.PathLike | None = None) -> "ElectraConfig":
        if data.get("model_type", "electra") != "electra":
            raise ConfigError(f"model_type is {data['model_type']!r}, expected 'electra'", source=source)
        if data.get("position_embedding_type", "absolute") != "absolute":
            raise ConfigError(f"only absolute position embeddings are supported, got "
                              f"{data['position_embedding_type']!r}", source=source)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k not in ("model_type", "position_embedding_type")}
        try:
            return cls(**known, extra=extra)
        except ConfigError as e:
            raise ConfigError(e.message, source=source) from None
        except TypeError as e:  # a value of the wrong kind where a number is compared
            raise ConfigError(f"bad value: {e}", source=source) from None

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "ElectraConfig":
        return cls.from_dict(read_json_object(path), source=path)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"architectures": ["ElectraModel"]}
        data.update(self.extra)
        data.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        data.update(model_type="electra", position_embedding_type="absolute")
        return data

    def to_json_file(self, path: str | os.PathLike, **overrides: Any) -> None:
        """Write config.json atomically; ``overrides`` set extra keys (e.g. architectures)."""
        data = self.to_dict()
        data.update(overrides)
        atomic_write_text(Path(path), json.dumps(data, indent=2, sort_keys=True) + "\n")


def generator_config(config: ElectraConfig, generator_size: float) -> ElectraConfig:
    """The generator of a discriminator ``config``: ``generator_size`` of its width (the paper: 1/4 to 1/3), the
    same depth and embedding size (the embeddings are shared), 4x-wide feed-forward layers and one attention
    head per 64 dimensions, as ELECTRA's ``get_generator_config`` does."""
    check_generator_size(generator_size)
    hidden = int(round(config.hidden_size * generator_size))
    if hidden < 1:
        raise ConfigError(f"setting 'generator_size' {generator_size!r} leaves the generator no width (hidden_size "
                          f"{config.hidden_size} x {generator_size} rounds to 0)")
    heads = max(1, hidden // 64)
    while hidden % heads:  # a width 64 does not divide: the nearest head count below that divides it
        heads -= 1
    return dataclasses.replace(config, hidden_size=hidden, intermediate_size=4 * hidden, num_attention_heads=heads,
                               extra={})


def check_generator_size(generator_size: float) -> None:
    """The generator's width is a share of the discriminator's in (0, 1]: the paper's best are 1/4 to 1/3, and a
    generator as strong as the discriminator leaves it nothing to learn."""
    if isinstance(generator_size, bool) or not isinstance(generator_size, (int, float)) or not 0 < generator_size <= 1:
        raise ConfigError(f"setting 'generator_size' must be in (0, 1], a share of the discriminator's hidden size; "
                          f"got {generator_size!r} (a generator wider than the discriminator is not ELECTRA)",
                          hint="the paper works best with 1/4 to 1/3")
