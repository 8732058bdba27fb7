"""The errors bertforge raises for expected failures: bad input, bad data, a model that does not fit.

Every one is a :class:`BertforgeError`; the command line prints it as one line (no traceback unless
``BERTFORGE_DEBUG=1``) and exits with status 2. Each takes keyword arguments naming *where* the
problem is (a flag, a file and line, a field), so the message says it in the user's terms, and a
``hint`` saying what would fix it. The value-like ones are also ``ValueError`` (and the missing-path
one ``FileNotFoundError``), so code that catches the built-in types keeps working.
"""

from __future__ import annotations

import os
from pathlib import Path


class BertforgeError(Exception):
    """An expected failure, reported to the user as one line."""

    def __init__(self, message: str, *, hint: str | None = None):
        self.message, self.hint = message, hint
        super().__init__(message + (f"; {hint}" if hint else ""))


def flag_of(setting: str) -> str:
    """The command-line flag of a library setting (an argument or settings field): ``top_k`` -> ``--top-k``."""
    return "--" + setting.replace("_", "-")


class Located:
    """An error whose message starts with where the problem is: a flag (the command line's words) or a setting
    (the library's: a function argument or settings field, which the command line prints as its flag)."""

    flag: str | None
    setting: str | None

    def on_command_line(self) -> str:
        """The message in the command line's words: a setting named by its flag."""
        text = str(self)
        return flag_of(self.setting) + text[len(self.setting):] if self.setting and not self.flag else text


class UsageError(Located, BertforgeError, ValueError):
    """A flag or argument value that cannot work (checked before any data is read). Library code names the
    ``setting``; the command line names the ``flag``."""

    def __init__(self, message: str, *, flag: str | None = None, setting: str | None = None,
                 hint: str | None = None):
        self.flag, self.setting = flag, setting
        where = flag or setting
        super().__init__(f"{where}: {message}" if where else message, hint=hint)


class ConfigError(BertforgeError, ValueError):
    """A model configuration (config.json, options.json) that is missing a field or holds a bad value."""

    def __init__(self, message: str, *, source: str | os.PathLike | None = None, hint: str | None = None):
        self.source = source
        super().__init__(f"{source}: {message}" if source else message, hint=hint)


class Row(int):
    """The 1-based number of a row of a columnar file (Parquet, Arrow: ``data/columnar.py``), given where a text
    file's line number goes; such a file has no lines, so a DataFormatError says "row N" for it."""


class DataFormatError(BertforgeError, ValueError):
    """A data file that does not have the expected format; the message names the file and line (or row)."""

    def __init__(self, message: str, *, path: str | os.PathLike, line: int | None = None,
                 field: str | None = None, hint: str | None = None):
        self.path, self.line, self.field = Path(path), line, field
        where = (f"{path}, row {line}" if isinstance(line, Row) else f"{path}:{line}" if line is not None
                 else f"{path}")
        super().__init__(f"{where}: {message}", hint=hint)


class PathError(Located, BertforgeError, FileNotFoundError):
    """A path that is missing, or of the wrong kind (a directory where a file is expected...)."""

    def __init__(self, message: str, *, path: str | os.PathLike, flag: str | None = None,
                 setting: str | None = None, hint: str | None = None):
        self.path, self.flag, self.setting = Path(path), flag, setting
        where = flag or setting
        super().__init__(f"{where} {path}: {message}" if where else f"{path}: {message}", hint=hint)


class CheckpointError(BertforgeError, ValueError):
    """A checkpoint that does not fit the model; ``mismatched`` maps tensor names to their
    (checkpoint shape, model shape) when shapes differ, so callers can explain what a size means."""

    def __init__(self, message: str, *,
                 mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] | None = None,
                 hint: str | None = None):
        self.mismatched = mismatched or {}
        super().__init__(message, hint=hint)


class FetchError(BertforgeError, RuntimeError):
    """A registry package that could not be downloaded, verified or unpacked."""


def require_file(path: str | os.PathLike, *, flag: str | None = None, setting: str | None = None,
                 what: str = "file") -> Path:
    """``path`` as a Path if it is an existing regular file; else a PathError saying what it is."""
    p = Path(path)
    if p.is_dir():
        raise PathError(f"is a directory, expected a {what}", path=p, flag=flag, setting=setting)
    if not p.exists():
        raise PathError(f"no such {what}", path=p, flag=flag, setting=setting)
    if not p.is_file():
        raise PathError(f"is not a regular {what}", path=p, flag=flag, setting=setting)
    return p


def require_dir(path: str | os.PathLike, *, flag: str | None = None, setting: str | None = None,
                what: str = "directory") -> Path:
    """``path`` as a Path if it is an existing directory; else a PathError saying what it is."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise PathError(f"is a file, expected a {what}", path=p, flag=flag, setting=setting)
    if not p.exists():
        raise PathError(f"no such {what}", path=p, flag=flag, setting=setting)
    return p
