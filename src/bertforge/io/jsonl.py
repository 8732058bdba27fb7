"""JSON lines: the one reader every JSONL input goes through (tasks, corpora, prediction inputs, logs)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

from bertforge.errors import DataFormatError


def read_lines(path: str | os.PathLike, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line with its newline); a decoding error names the line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as e:
                raise DataFormatError(f"not valid {encoding} ({e.reason} at byte {e.start})", path=path,
                                      line=lineno, hint="pass --encoding with the file's encoding") from None
            yield lineno, line.removeprefix("\ufeff") if lineno == 1 else line


def read_jsonl(path: str | os.PathLike, encoding: str = "utf-8", *,
               skip_broken: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a line that is not a JSON object is an error
    naming the line, or with ``skip_broken`` (a log cut by a crash) skipped with a warning."""
    return parse_jsonl(read_lines(path, encoding), path, skip_broken=skip_broken)


def parse_jsonl(lines: Iterable[tuple[int, str]], path: str | os.PathLike, *,
                skip_broken: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """``read_jsonl`` over already decoded (line number, line) pairs (e.g. of a compressed file)."""
    for lineno, line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            problem = None if isinstance(obj, dict) else f"expected a JSON object, got {type(obj).__name__}"
        except json.JSONDecodeError as e:
            problem = f"malformed JSON: {e.msg} (column {e.colno})"
        if problem is None:
            yield lineno, obj
        elif skip_broken:
            warnings.warn(f"{path}:{lineno}: skipping a broken line: {line[:80]!r}", stacklevel=2)
        else:
            raise DataFormatError(problem, path=path, line=lineno)


def read_json_object(path: str | os.PathLike, what: str = "config file") -> dict[str, Any]:
    """The JSON object in a file (config.json, tokenizer_config.json, task.json...); a ConfigError naming the
    file otherwise."""
    from bertforge.errors import ConfigError, require_file

    path = require_file(path, what=what)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}", source=path) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 ({e.reason} at byte {e.start})", source=path) from None
    if not isinstance(data, dict):
        raise ConfigError(f"expected a JSON object, got {type(data).__name__}", source=path)
    return data
