"""Writes that readers see whole or not at all: a temporary sibling, renamed over the target on success.

Every file and directory bertforge produces goes through here (checkpoints add fsync and a manifest
on top, see ``train/checkpoint.py``), so a crash or an error never leaves half an output behind. What
may be replaced is ``outputs.py``'s rule: a regular file or a directory, never a link, a device, a FIFO
or a socket; a failure to create the temporary names the user's path, not the temporary's.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bertforge.errors import PathError
from bertforge.io.outputs import refuse_special, refuse_special_inside


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; it replaces ``path`` if the block succeeds
    and is deleted if it fails."""
    path = Path(path)
    st = refuse_special(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise PathError("is a directory, expected a file to write", path=path)
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write a text file atomically (``\\n`` line ends on every platform)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding=encoding, newline="\n") as f:
            f.write(text)


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; on success it replaces ``path`` (an existing
    directory there is removed first), on failure it is deleted."""
    path = Path(path)
    st = refuse_special(path)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise PathError("is a file, not a directory; bertforge will not overwrite it", path=path)
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}-"))
    try:
        yield tmp
        if st is not None:
            refuse_special_inside(path)  # checked before anything is removed
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Turn an OSError while making ``path``'s parent or temporary into a PathError naming ``path``."""
    try:
        yield
    except OSError as e:
        raise PathError(f"cannot be written: {e.strerror or e}", path=path) from None
