"""ElectraConfig: ELECTRA's hyper-parameters with `transformers`' field names and defaults (ELECTRA-Small's
discriminator), and the generator's config derived from the discriminator's as the paper does."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from bertforge.config import SUPPORTED_ACTIVATIONS, BertConfig
from bertforge.errors import ConfigError
from bertforge.family_config import FamilyConfig

SUMMARY_TYPES = ("first", "last", "mean", "cls_index")


@dataclass
class ElectraConfig(FamilyConfig):
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
        self.require_positive_ints(("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers",
                                    "num_attention_heads", "intermediate_size", "max_position_embeddings",
                                    "type_vocab_size"))
        self.require_heads_divide_hidden()
        self.require_one_of("hidden_act", SUPPORTED_ACTIVATIONS)
        self.require_one_of("summary_type", SUMMARY_TYPES)
        if self.summary_activation not in (None, "", "linear", "tanh", *SUPPORTED_ACTIVATIONS):
            raise ConfigError(f"config field 'summary_activation' is {self.summary_activation!r}; use 'tanh', "
                              f"an activation name ({', '.join(SUPPORTED_ACTIVATIONS)}) or null")
        self.require_bools(("is_decoder", "tie_word_embeddings", "summary_use_proj"))
        self.require_probabilities(("hidden_dropout_prob", "attention_probs_dropout_prob", "summary_last_dropout"),
                                   numbers_only=False)

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
        cls.check_model_type(data, "electra", source)
        if data.get("position_embedding_type", "absolute") != "absolute":
            raise ConfigError(f"only absolute position embeddings are supported, got "
                              f"{data['position_embedding_type']!r}", source=source)
        return cls.from_keys(data, source, written=("model_type", "position_embedding_type"))

    def to_dict(self) -> dict[str, Any]:
        return self.json_keys("ElectraModel", model_type="electra", position_embedding_type="absolute")


def generator_config(config: FamilyConfig, generator_size: float) -> FamilyConfig:
    """The generator of a discriminator ``config`` (ELECTRA's, or another family's that trains by ELECTRA's
    objective, with the same field names): ``generator_size`` of its width (the paper: 1/4 to 1/3), the
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
    try:
        return dataclasses.replace(config, hidden_size=hidden, intermediate_size=4 * hidden,
                                   num_attention_heads=heads, extra={})
    except ConfigError as e:  # a width the family's own checks refuse (RoFormer: an odd head size)
        raise ConfigError(f"setting 'generator_size' {generator_size!r} gives a generator of hidden size {hidden}, "
                          f"which this family cannot build: {e.message}",
                          hint="choose another generator_size, e.g. 0.25") from None


def check_generator_size(generator_size: float) -> None:
    """The generator's width is a share of the discriminator's in (0, 1]: the paper's best are 1/4 to 1/3, and a
    generator as strong as the discriminator leaves it nothing to learn."""
    if isinstance(generator_size, bool) or not isinstance(generator_size, (int, float)) or not 0 < generator_size <= 1:
        raise ConfigError(f"setting 'generator_size' must be in (0, 1], a share of the discriminator's hidden size; "
                          f"got {generator_size!r} (a generator wider than the discriminator is not ELECTRA)",
                          hint="the paper works best with 1/4 to 1/3")
