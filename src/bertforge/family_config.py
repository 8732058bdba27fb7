"""FamilyConfig: what the config classes of the model families that read `transformers`' config.json share (BERT's,
RoFormer's, ELECTRA's, ModernBERT's, XLNet's), so that each class states only its own fields and rules.

A config.json is read by splitting its keys into the class's fields and the rest, which survive a load/save round
trip in ``extra``; it is written with ``sort_keys``, atomically. ``validate`` methods name the field they reject,
with the same words in every family; the checks here are those words, written once.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from bertforge.errors import ConfigError
from bertforge.io.atomic import atomic_write_text
from bertforge.io.jsonl import read_json_object

C = TypeVar("C", bound="FamilyConfig")


class FamilyConfig:
    """Base of a family's config dataclass, which declares ``extra: dict[str, Any]`` (the keys it does not model)
    and ``from_dict(data, source)``, ``validate()``."""

    # How the checks name a field: "config field 'x' must be...". ModernBERT's and XLNet's say "field 'x'".
    field_label: ClassVar[str] = "config field"

    extra: dict[str, Any]

    # --- config.json ---------------------------------------------------------------------------

    @classmethod
    def from_json_file(cls: type[C], path: str | os.PathLike) -> C:
        return cls.from_dict(read_json_object(path), source=path)

    def to_json_file(self, path: str | os.PathLike, **overrides: Any) -> None:
        """Write config.json atomically; ``overrides`` set extra keys (e.g. architectures)."""
        data = self.to_dict()
        data.update(overrides)
        atomic_write_text(Path(path), json.dumps(data, indent=2, sort_keys=True) + "\n")

    def field_values(self) -> dict[str, Any]:
        """The modelled fields by name, ``extra`` left out."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)} - {"extra"}

    def json_keys(self, architecture: str, **written: Any) -> dict[str, Any]:
        """config.json's keys as `transformers` writes them: ``architectures`` (``extra`` may name others), the
        unmodelled keys, the fields, then ``written``: the keys the class derives, which win."""
        return {"architectures": [architecture], **self.extra, **self.field_values(), **written}

    @staticmethod
    def check_model_type(data: dict[str, Any], model_type: str, source: str | os.PathLike | None) -> None:
        """A config.json of another family is an error (a missing model_type is taken to be this one)."""
        if data.get("model_type", model_type) != model_type:
            raise ConfigError(f"model_type is {data['model_type']!r}, expected {model_type!r}", source=source)

    @classmethod
    def from_keys(cls: type[C], data: dict[str, Any], source: str | os.PathLike | None,
                  written: Collection[str] = ("model_type",)) -> C:
        """A config from config.json's keys: the fields by name, the rest into ``extra`` but for ``written`` (keys
        ``to_dict`` writes itself). A bad value is a ConfigError naming ``source``."""
        names = cls.field_names()
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k not in written}
        try:
            return cls(**known, extra=extra)
        except ConfigError as e:
            raise ConfigError(e.message, source=source, hint=e.hint) from None
        except TypeError as e:  # a value of the wrong kind where a number is compared
            raise ConfigError(f"bad value: {e}", source=source) from None

    def override(self, overrides: dict[str, Any], source: str | os.PathLike) -> None:
        """Set ``from_pretrained``'s keyword arguments: a field by its name, any other key (``num_labels``...) into
        ``extra``; then check the result, naming the config file ``source`` the overrides apply to."""
        names = self.field_names()
        for key, value in overrides.items():
            if key in names:
                setattr(self, key, value)
            else:
                self.extra[key] = value
        try:
            self.validate()
        except ConfigError as e:
            raise ConfigError(e.message, source=source, hint="check the overrides") from None

    # --- the checks validate() makes -----------------------------------------------------------

    def require_positive_ints(self, names: Iterable[str]) -> None:
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{self.field_label} {name!r} must be a positive integer, got {value!r}")

    def require_bools(self, names: Iterable[str]) -> None:
        for name in names:
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{self.field_label} {name!r} must be true or false, got {getattr(self, name)!r}")

    def require_one_of(self, name: str, supported: Collection[str]) -> None:
        if getattr(self, name) not in supported:
            raise ConfigError(f"{self.field_label} {name!r} is {getattr(self, name)!r}; "
                              f"supported: {', '.join(supported)}")

    def require_probabilities(self, names: Iterable[str], numbers_only: bool = True) -> None:
        """Dropout rates in [0, 1). ``numbers_only=False`` lets a value that is not a number fail the comparison
        itself (a TypeError, which ``from_keys`` reports as a bad value), as BERT's, ELECTRA's and XLNet's
        configs always have."""
        for name in names:
            value = getattr(self, name)
            if numbers_only and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise ConfigError(f"{self.field_label} {name!r} must be in [0, 1), got {value!r}")
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{self.field_label} {name!r} must be in [0, 1), got {value!r}")

    def require_heads_divide_hidden(self) -> None:
        """Each attention head gets ``hidden_size / num_attention_heads`` dimensions: a whole number."""
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                              f"({self.num_attention_heads})")

    def require_pad_token_id(self) -> None:
        """``pad_token_id`` is null or a row of the word embeddings."""
        pad = self.pad_token_id
        if pad is not None and (not isinstance(pad, int) or isinstance(pad, bool) or not 0 <= pad < self.vocab_size):
            raise ConfigError(f"{self.field_label} 'pad_token_id' must be null or an id in [0, {self.vocab_size}) "
                              f"(vocab_size), got {pad!r}")
