"""Settings dataclasses double as command-line flags: one declaration gives the default, the help, the
allowed range and the flag name, and every value is checked, naming its flag, before any work starts.

    @dataclass
    class Settings:
        batch_size: int = option(32, "sequences per batch", min=1)
        schedule: str = option("linear", "learning-rate schedule", choices=SCHEDULES)

``add_arguments(parser, Settings)`` adds ``--batch-size`` and ``--schedule``; ``from_namespace(Settings,
args)`` builds the dataclass, whose ``__post_init__`` may call ``check(self)`` to validate the ranges.
This module imports neither torch nor numpy, so the command line parses and validates in milliseconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from typing import Any

from bertforge.errors import UsageError


def option(default: Any, help: str, *, flag: str | None = None, choices: typing.Sequence[Any] | None = None,
           min: float | None = None, max: float | None = None, below: float | None = None,
           above: float | None = None, group: str | None = None, metavar: str | None = None,
           negate: str | None = None, nargs: str | None = None, cli: bool = True) -> Any:
    """A dataclass field that is also a flag. ``min``/``max`` are inclusive bounds, ``above``/``below``
    exclusive ones; ``negate="--no-nsp"`` makes a True-by-default bool a switch that turns it off."""
    meta = dict(help=help, flag=flag, choices=tuple(choices) if choices is not None else None, min=min,
                max=max, below=below, above=above, group=group, metavar=metavar, negate=negate, nargs=nargs,
                cli=cli)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag_name(f: dataclasses.Field) -> str:
    """The flag of a field: ``--batch-size`` for ``batch_size`` unless the field names its own."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if "help" in f.metadata]


def _scalar(hint: Any) -> tuple[type, bool, bool]:
    """(element type, optional, list) of an annotation such as ``int``, ``str | None``, ``list[int]``."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], optional, True
    return hint, optional, False


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: typing.Collection[str] = (),
                  required: typing.Collection[str] = ()) -> None:
    """Add a flag for each ``option`` field of dataclass ``cls`` (grouped by their ``group``)."""
    groups: dict[str | None, Any] = {}
    for f, hint in _fields(cls):
        meta = f.metadata
        if f.name in skip or not meta["cli"]:
            continue
        if meta["group"] not in groups:
            groups[meta["group"]] = parser.add_argument_group(meta["group"]) if meta["group"] else parser
        target = groups[meta["group"]]
        kind, optional, many = _scalar(hint)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = meta["help"]
        if kind is bool:
            if meta["negate"]:
                target.add_argument(meta["negate"], dest=f.name, action="store_false", help=help_text)
            else:
                target.add_argument(flag_name(f), dest=f.name, action="store_true", help=help_text)
            continue
        if default not in (None, [], "") and "default" not in help_text:
            help_text += f" (default: {' '.join(map(str, default)) if many else default})"
        kwargs: dict[str, Any] = dict(dest=f.name, type=kind, help=help_text, metavar=meta["metavar"])
        if f.name in required:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
        if meta["choices"]:
            kwargs["choices"] = meta["choices"]
            kwargs.pop("metavar")
        if many:  # a repeated flag adds to the list; the dataclass default applies when it is absent
            kwargs.update(nargs=meta["nargs"] or "+", action="extend", default=None)
        target.add_argument(flag_name(f), **kwargs)


def from_namespace(cls: type, args: argparse.Namespace, **values: Any) -> Any:
    """An instance of ``cls`` from the parsed flags (fields without a flag keep their defaults)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in vars(args).items() if k in fields
              and not (v is None and fields[k].default_factory is not dataclasses.MISSING)}
    kwargs.update(values)
    return cls(**kwargs)


def check(obj: Any) -> None:
    """Raise UsageError, naming the flag, for the first field whose value is out of its declared range."""
    for f, hint in _fields(type(obj)):
        value = getattr(obj, f.name)
        kind, optional, many = _scalar(hint)
        if value is None:
            if not optional:
                raise UsageError("a value is required", flag=flag_name(f))
            continue
        for v in value if many else [value]:
            _check_value(f, kind, v)


def _check_value(f: dataclasses.Field, kind: type, value: Any) -> None:
    meta, name = f.metadata, flag_name(f)
    if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise UsageError(f"expected a number, got {value!r}", flag=name)
    if kind is float and not math.isfinite(value):
        raise UsageError(f"must be a finite number, got {value}", flag=name)
    if meta["choices"] and value not in meta["choices"]:
        raise UsageError(f"invalid choice {value!r}", flag=name,
                         hint=f"choose from {', '.join(map(str, meta['choices']))}")
    bounds = [("min", lambda v, b: v >= b, ">="), ("max", lambda v, b: v <= b, "<="),
              ("above", lambda v, b: v > b, ">"), ("below", lambda v, b: v < b, "<")]
    for key, ok, word in bounds:
        if meta[key] is not None and not ok(value, meta[key]):
            raise UsageError(f"must be {word} {meta[key]:g}, got {value:g}", flag=name)
