"""Recipes as files: a command's settings as a YAML mapping, read by ``--config FILE`` and written back by every
run as ``recipe.yaml``, the settings it actually used, so that ``--config OUT/recipe.yaml`` repeats it.

    # recipes/cpu-small-budget.yaml
    command: pretrain        # optional: the command the recipe is for
    preset: tiny
    max_steps: 3000
    lr: 1.0e-3

The keys are the command's flags without the dashes (``batch_size`` or ``batch-size``; a switch such as
``no_nsp: true``, or its setting, ``nsp: false``). A flag on the command line beats the recipe's key, which beats
the default. Each value is checked as its flag is (type, choices) when the file is read, then by the settings
dataclass with everything else (ranges, combinations); every error names the file, the line and the key. An
unknown key lists the valid ones, and a key given twice is an error, not a silent last-one-wins.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertforge.errors import BertforgeError, DataFormatError, Located, require_file

__all__ = ["RECIPE_COMMANDS", "RECIPE_FILE", "RecipeSource", "add_config_argument", "apply_recipe", "read_recipe",
           "recipe_of", "write_recipe"]

RECIPE_COMMANDS = ("pretrain", "finetune", "ablate", "glue")
RECIPE_FILE = "recipe.yaml"  # what every run writes into its directory
_UNSET = object()


@dataclass
class RecipeSource:
    """Where the settings a recipe gave came from, to name the file and line when the settings dataclass refuses
    one of them (the flags given on the command line are not in it: they override the recipe)."""

    path: Path
    lines: dict[str, int] = field(default_factory=dict)  # dest -> line of its key
    keys: dict[str, str] = field(default_factory=dict)  # dest -> the key as written
    flags: dict[str, str] = field(default_factory=dict)  # every flag of the command -> its dest

    def locate(self, error: Located) -> DataFormatError | None:
        """``error`` in the recipe's words (file, line, key), if the setting it names came from the recipe."""
        dest = self.flags.get(error.flag) if error.flag else error.setting
        if dest not in self.lines:
            return None
        message, where = str(error), error.flag or error.setting
        if where and message.startswith(where):
            message = message[len(where):].lstrip(": ")
        return DataFormatError(f"{self.keys[dest]}: {message}", path=self.path, line=self.lines[dest],
                               field=self.keys[dest])


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--config`` flag of a command that reads recipes (``apply_recipe`` reads it before the real parse)."""
    parser.add_argument("--config", metavar="RECIPE.yaml", help="a recipe file: this command's settings as YAML "
                        "keys named like the flags (batch_size: 32); flags given here override its keys; the "
                        f"run writes the settings it used to {RECIPE_FILE} (recipes/ has the shipped ones)")


def apply_recipe(parser: argparse.ArgumentParser, argv: list[str], command: str) -> RecipeSource | None:
    """Make the keys of the ``--config`` recipe in ``argv`` the defaults of ``parser`` (a command's parser), except
    those whose flags ``argv`` gives, so that parsing ``argv`` yields flag > recipe > default. Returns where each
    value came from, or None without ``--config``."""
    given = _given_flags(parser, argv)
    path = given.get("config")
    if path is None:
        return None
    path = require_file(path, flag="--config", what="recipe file")
    actions = _actions_by_key(parser)
    source = RecipeSource(path, flags={s: a.dest for a in parser._actions for s in a.option_strings})
    entries = _entries(path)
    if {"model_type", "hidden_size", "architectures"} & {key for key, _, _ in entries}:
        raise DataFormatError("is a model's config.json, not a recipe", path=path,
                              hint="pass a model configuration with pretrain --model-config; --config takes a recipe "
                                   "file of settings named like the flags")
    set_at: dict[str, int] = {}  # dest -> the line that set it
    for key, value, line in entries:
        if key == "command":
            if value != command:
                raise DataFormatError(f"command: the recipe is for {value!r}, not {command!r}", path=path, line=line,
                                      field="command", hint=f"use it with bertforge {value}")
            continue
        action, inverted = _resolve_key(key, actions, path, line, command)
        if action.dest in set_at:
            raise DataFormatError(f"{key}: sets {action.dest} again (line {set_at[action.dest]} set it first)",
                                  path=path, line=line, field=key)
        set_at[action.dest] = line
        value = _converted(action, inverted, key, value, path, line)
        if action.dest not in given:  # a flag on the command line overrides the key
            action.default, action.required = value, False
            source.lines[action.dest], source.keys[action.dest] = line, key
    return source


def read_recipe(path: str | Path, cls: type, **overrides: Any) -> Any:
    """The settings dataclass ``cls`` (``PretrainArgs``, ``FinetuneArgs``, ``Study``, ``GlueSettings``) from a recipe
    file, for Python callers: the same keys and checks as ``--config``; ``overrides`` beat the file's keys."""
    from bertforge.options import from_namespace

    command = _COMMAND_OF.get(cls.__name__, cls.__name__)
    parser = argparse.ArgumentParser(prog=f"bertforge {command}", add_help=False)
    _add_settings_arguments(parser, cls)
    add_config_argument(parser)
    unknown = sorted(set(overrides) - {action.dest for action in parser._actions})
    if unknown:
        raise TypeError(f"read_recipe() got a setting {cls.__name__} does not have: {unknown[0]!r}")
    source = apply_recipe(parser, ["--config", str(path)], command)
    args = parser.parse_args([])
    for name, value in overrides.items():
        setattr(args, name, value)
        source.lines.pop(name, None)
    try:
        nested = {name: from_namespace(inner, args) for name, inner in _nested(cls).items()}
        return from_namespace(cls, args, **nested)
    except BertforgeError as e:
        located = source.locate(e) if isinstance(e, Located) else None
        if located is None:
            raise
        raise located from e


_COMMAND_OF = {"PretrainArgs": "pretrain", "FinetuneArgs": "finetune", "Study": "ablate", "GlueSettings": "glue"}


def recipe_of(command: str, settings: Any) -> str:
    """``settings`` (a settings dataclass) as a recipe file's text: every flag-backed field, nested ones flattened."""
    import yaml

    values = {"command": command, **_flat(settings)}
    header = (f"# The settings this `bertforge {command}` run used (defaults and recipe choices filled in).\n"
              f"# `bertforge {command} --config {RECIPE_FILE}` repeats it; flags override its keys.\n")
    return header + yaml.safe_dump(values, sort_keys=False, allow_unicode=True, width=120)


def write_recipe(directory: str | Path, command: str, settings: Any) -> Path:
    """Write ``recipe_of(command, settings)`` to ``directory/recipe.yaml`` (atomically)."""
    from bertforge.io.atomic import atomic_write_text

    path = Path(directory) / RECIPE_FILE
    atomic_write_text(path, recipe_of(command, settings))
    return path


# --- reading --------------------------------------------------------------------------------------

def _entries(path: Path) -> list[tuple[str, Any, int]]:
    """(key, value, line) of a recipe file's top-level mapping, in order."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"is not UTF-8 text ({e.reason} at byte {e.start})", path=path) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise DataFormatError(f"not valid YAML: {problem}", path=path,
                              line=mark.line + 1 if mark else None) from None
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise DataFormatError("a recipe is a mapping of settings (key: value lines), not a "
                              f"{'list' if isinstance(root, yaml.SequenceNode) else 'single value'}",
                              path=path, line=root.start_mark.line + 1)
    loader = yaml.SafeLoader("")
    entries, seen = [], {}
    for key_node, value_node in root.value:
        line = key_node.start_mark.line + 1
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise DataFormatError(f"a key must be a setting's name, got {key!r}", path=path, line=line)
        if key in seen:
            raise DataFormatError(f"{key}: given twice (lines {seen[key]} and {line})", path=path, line=line,
                                  field=key)
        seen[key] = line
        entries.append((key, loader.construct_object(value_node, deep=True), line))
    return entries


def _given_flags(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, Any]:
    """The settings ``argv`` gives on the command line (argparse's own matching: abbreviations, ``--flag=value``)."""
    saved = [(a, a.default, a.required) for a in parser._actions]
    try:
        for action in parser._actions:  # an extending flag (--corpus A B) needs None to extend
            action.default = None if isinstance(action, argparse._ExtendAction) else _UNSET
            action.required = False
        namespace, _ = parser.parse_known_args(argv)
    finally:
        for action, default, required in saved:
            action.default, action.required = default, required
    return {dest: value for dest, value in vars(namespace).items() if value is not _UNSET and value is not None}


def _actions_by_key(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.Action, bool]]:
    """Each name a recipe may use -> (its action, whether ``true`` means the setting is off): the setting
    (``nsp``) and each flag without its dashes (``no_nsp``)."""
    keys: dict[str, tuple[argparse.Action, bool]] = {}
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "config") or action.dest is argparse.SUPPRESS:
            continue
        for flag in action.option_strings:
            name = flag.lstrip("-").replace("-", "_")
            keys[name] = (action, isinstance(action, argparse._StoreFalseAction) and name != action.dest)
        keys.setdefault(action.dest, (action, False))
    return keys


def _resolve_key(key: str, actions: dict, path: Path, line: int, command: str) -> tuple[argparse.Action, bool]:
    name = key.replace("-", "_")
    if name in actions:
        return actions[name]
    valid = sorted({a.dest for a, inverted in actions.values()})
    close = difflib.get_close_matches(name, list(actions), n=1)
    raise DataFormatError(f"unknown key {key!r}" + (f" (did you mean {close[0]}?)" if close else ""), path=path,
                          line=line, field=key, hint=f"bertforge {command} takes: {', '.join(valid)}")


_KIND_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}


def _converted(action: argparse.Action, inverted: bool, key: str, value: Any, path: Path, line: int) -> Any:
    """``value`` as the flag's setting: its type, its choices, a list where the flag takes several."""
    def fail(expected: str) -> DataFormatError:
        return DataFormatError(f"{key}: expected {expected}, got {value!r}", path=path, line=line, field=key)

    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise fail("true or false")
        return not value if inverted else value
    kind = action.type or str
    if action.nargs in ("+", "*"):
        items = value if isinstance(value, list) else [value]
        if not items and action.nargs == "+":
            raise fail("one value or more")
        return [_checked(action, kind, item, fail) for item in items]
    if value is None:
        if action.default is None or action.default is _UNSET:
            return None
        raise fail(_KIND_NAMES.get(kind, "a value"))
    return _checked(action, kind, value, fail)


def _checked(action: argparse.Action, kind: type, value: Any, fail) -> Any:
    if isinstance(value, (list, dict, bool)) and kind is not bool:
        raise fail(_KIND_NAMES.get(kind, "a value"))
    if kind is int:
        if isinstance(value, float) or (isinstance(value, str) and not value.strip().lstrip("+-").isdigit()):
            raise fail("a whole number")
        value = int(value)
    elif kind is float:
        try:
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string: accepted as the flag would be
        except (TypeError, ValueError):
            raise fail("a number") from None
        if not math.isfinite(value):
            raise fail("a finite number")
    elif kind is str:
        value = str(value)
    else:
        try:
            value = kind(value)
        except (TypeError, ValueError):
            raise fail(f"a value of --{action.dest.replace('_', '-')}") from None
    if action.choices is not None and value not in action.choices:
        raise fail("one of " + ", ".join(map(str, action.choices)))
    return value


# --- Python callers, writing ----------------------------------------------------------------------

def _nested(cls: type) -> dict[str, type]:
    """Fields of ``cls`` that are settings dataclasses themselves (FinetuneArgs.data), flattened into the recipe."""
    import typing

    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])}


def _add_settings_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    from bertforge.options import add_arguments

    add_arguments(parser, cls)
    for inner in _nested(cls).values():
        add_arguments(parser, inner)


def _flat(settings: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            values.update(_flat(value))
        elif "help" in f.metadata and f.metadata.get("cli", True):
            values[f.name] = list(value) if isinstance(value, tuple) else str(value) if isinstance(value, Path) \
                else value
    return values
