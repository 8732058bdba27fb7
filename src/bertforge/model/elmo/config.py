"""ElmoConfig: bilm-tf's options (char CNN + LSTM) as one flat dataclass, read from options.json or config.json.

The defaults are the original ELMo (Peters et al., 2018): 2048 char filters, 2 highway layers, 2 LSTM
layers of 4096 cells projected to 512, clipping at 3, a skip connection between the LSTM layers.
"""

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

ACTIVATIONS = ("relu", "tanh")
N_CHARACTERS = 262  # 256 bytes + 5 markers (bilm-tf's 261 at training time) + 1 padding id (0)
_ORIGINAL_FILTERS = [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]


@dataclass
class ElmoConfig:
    # char_cnn
    char_embedding_dim: int = 16
    filters: list[list[int]] = field(default_factory=lambda: [list(f) for f in _ORIGINAL_FILTERS])  # [width, n]
    max_characters_per_token: int = 50
    n_characters: int = N_CHARACTERS
    n_highway: int = 2
    activation: str = "relu"
    # lstm
    lstm_dim: int = 4096  # cell size
    n_layers: int = 2
    projection_dim: int = 512  # token embedding and LSTM output size; == lstm_dim means no projection
    cell_clip: float | None = 3.0
    proj_clip: float | None = 3.0
    use_skip_connections: bool = True
    # training
    dropout: float = 0.1  # on each LSTM layer's input and before the softmax, as bilm-tf trains
    vocab_size: int = 0  # words in the LM softmax; 0 for a biLM without one

    def __post_init__(self) -> None:
        self.filters = [list(f) for f in self.filters]
        self.validate()

    @property
    def n_filters(self) -> int:
        return sum(n for _, n in self.filters)

    def validate(self) -> None:
        """Reject options that cannot describe a biLM, naming the field."""
        for name in ("char_embedding_dim", "max_characters_per_token", "lstm_dim", "n_layers", "projection_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"field {name!r} must be a positive integer, got {value!r}")
        if not self.filters or any(len(f) != 2 or min(f) <= 0 for f in self.filters):
            raise ConfigError(f"field 'filters' must be a non-empty list of [width, number], got {self.filters!r}")
        if max(w for w, _ in self.filters) > self.max_characters_per_token:
            raise ConfigError(f"a filter is wider than max_characters_per_token ({self.max_characters_per_token})")
        if self.max_characters_per_token < 3:
            raise ConfigError("max_characters_per_token must be at least 3 (begin, end of word and one byte)")
        if self.n_characters != N_CHARACTERS:
            raise ConfigError(f"n_characters must be {N_CHARACTERS} (261 characters + padding), got {self.n_characters}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation is {self.activation!r}; supported: {', '.join(ACTIVATIONS)}")
        if self.projection_dim > self.lstm_dim:
            raise ConfigError(f"projection_dim ({self.projection_dim}) must not exceed lstm dim ({self.lstm_dim})")
        if self.n_filters < self.projection_dim:
            raise ConfigError(f"the char CNN has {self.n_filters} filters, fewer than projection_dim "
                              f"({self.projection_dim})")
        if self.n_highway < 0 or self.vocab_size < 0:
            raise ConfigError("n_highway and vocab_size must not be negative")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")

    # --- bilm-tf options.json ------------------------------------------------------------------

    @classmethod
    def from_options_json(cls, path: str | os.PathLike) -> "ElmoConfig":
        """bilm-tf's options.json; optional keys take bilm-tf's defaults (no highway, 1 layer, no clipping)."""
        options = read_json_object(path, what="options file")

        def get(dotted: str, default: Any = ...) -> Any:
            node: Any = options
            for part in dotted.split("."):
                if not isinstance(node, dict) or part not in node:
                    if default is ...:
                        raise ConfigError(f"missing key {dotted!r}", source=path)
                    return default
                node = node[part]
            return node

        n_characters = get("char_cnn.n_characters")
        try:
            return cls(
                char_embedding_dim=get("char_cnn.embedding.dim"),
                filters=get("char_cnn.filters"),
                max_characters_per_token=get("char_cnn.max_characters_per_token"),
                n_characters=N_CHARACTERS if n_characters == N_CHARACTERS - 1 else n_characters,  # training file
                n_highway=get("char_cnn.n_highway", None) or 0,
                activation=get("char_cnn.activation"),
                lstm_dim=get("lstm.dim"),
                n_layers=get("lstm.n_layers", 1),
                projection_dim=get("lstm.projection_dim"),
                cell_clip=get("lstm.cell_clip", None),
                proj_clip=get("lstm.proj_clip", None),
                use_skip_connections=bool(get("lstm.use_skip_connections")),
                dropout=get("dropout", 0.1),
            )  # vocab_size stays 0: bilm-tf's weight files carry no softmax
        except ConfigError as e:
            raise ConfigError(e.message, source=path) from None
        except (TypeError, ValueError) as e:  # a value of the wrong type
            raise ConfigError(f"bad value: {e}", source=path) from None

    # --- our config.json -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": "elmo", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | os.PathLike = "config") -> "ElmoConfig":
        data = dict(data)
        if data.pop("model_type", "elmo") != "elmo":
            raise ConfigError(f"model_type is {data.get('model_type')!r}, expected 'elmo'", source=source)
        data.pop("architectures", None)
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(unknown)}", source=source)
        try:
            return cls(**data)
        except ConfigError as e:
            raise ConfigError(e.message, source=source) from None

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ElmoConfig":
        return cls.from_dict(read_json_object(path), source=path)



