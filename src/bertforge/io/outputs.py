"""The one rule for where bertforge may write: every output file and directory is checked here first.

An output is written to a temporary sibling and renamed over the target (``atomic.py``), so the only
existing things it may replace are a regular file (an output file) or a directory (an output
directory). Everything else is refused with one line naming the path:

- a **symbolic link** (the link itself is the last part of the path): bertforge does not write through
  links, because a rename would replace the link and leave its target as it was; pass the target;
- a **device, FIFO or socket**: a rename would turn it into a regular file; it is never removed;
- an output that **is an input** (the same file by device and inode, so a hard link counts), **lies
  inside** an input directory (a model or tokenizer directory), or, for a directory, **contains** an
  input: writing it could replace what the command reads;
- a path whose nearest existing parent is not a directory, or not writable (named as the user gave it,
  never as the temporary path).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from bertforge.errors import PathError

SPECIAL_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                 (stat.S_ISSOCK, "a socket"))


def special_kind(mode: int) -> str | None:
    """What a non-regular, non-directory file is ("a FIFO"...), from its ``lstat`` mode; None otherwise."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return next((name for test, name in SPECIAL_KINDS if test(mode)), None)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def refuse_special(path: str | os.PathLike, *, flag: str | None = None) -> os.stat_result | None:
    """The ``lstat`` of ``path`` (None when absent); a PathError if it is a link, a device, a FIFO or a socket."""
    p = Path(path)
    st = _lstat(p)
    kind = special_kind(st.st_mode) if st else None
    if kind == "a symbolic link":
        raise PathError("is a symbolic link; bertforge does not write through links", path=p, flag=flag,
                        hint=f"pass its target ({os.path.realpath(p)}) or a new path")
    if kind:
        raise PathError(f"is {kind}, not a regular file; bertforge only replaces regular files and directories",
                        path=p, flag=flag, hint="pass a new path")
    return st


def refuse_special_inside(directory: Path) -> None:
    """A PathError if a directory about to be replaced holds a device, FIFO or socket (never removed)."""
    for root, dirs, files in os.walk(directory):
        for name in files + dirs:
            st = os.lstat(os.path.join(root, name))
            kind = special_kind(st.st_mode)
            if kind and kind != "a symbolic link":  # a link is removed as a link: its target stays
                raise PathError(f"holds {os.path.join(root, name)}, {kind}; bertforge will not remove it",
                                path=directory, hint="move it away, or write to another directory")


def _absolute(path: Path) -> Path:
    """``path`` with its parent's links resolved (the last part is not followed: it may not exist yet)."""
    return Path(os.path.realpath(path.parent)) / path.name


def check_output(path: str | os.PathLike, *, directory: bool = False, flag: str | None = None,
                 inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """``path`` as a Path if bertforge may write it as a file (or, with ``directory``, a directory), given the
    command's ``inputs`` (files and directories it reads); a PathError naming the rule it breaks otherwise."""
    p = Path(path)
    st = refuse_special(p, flag=flag)
    if st is not None and directory and not stat.S_ISDIR(st.st_mode):
        raise PathError("is a file, not a directory; bertforge will not overwrite it", path=p, flag=flag)
    if st is not None and not directory and stat.S_ISDIR(st.st_mode):
        raise PathError("is a directory, expected a file to write", path=p, flag=flag)
    _check_parent(p, directory, flag)
    target = _absolute(p)
    for source in inputs:
        if source is None or not os.path.exists(source):
            continue
        src_stat, src = os.stat(source), Path(os.path.realpath(source))
        if st is not None and os.path.samestat(os.stat(p), src_stat):
            same = "directory" if stat.S_ISDIR(src_stat.st_mode) else \
                "file" if target == src else "file, by a hard link"
            raise PathError(f"is the input {source} (the same {same}); writing it would destroy what the "
                            "command reads", path=p, flag=flag, hint="write to another path")
        if stat.S_ISDIR(src_stat.st_mode) and target.is_relative_to(src):
            raise PathError(f"lies inside the input directory {source}; writing there could replace what the "
                            "command reads", path=p, flag=flag, hint="write outside it")
        if directory and src.is_relative_to(target):
            raise PathError(f"contains the input {source}; writing the directory could replace it", path=p,
                            flag=flag, hint="choose a directory that holds none of the inputs")
    return p


def _check_parent(p: Path, directory: bool, flag: str | None) -> None:
    """The directory an output goes in must exist (a file) or be creatable (a directory), and be writable."""
    parent = p.parent if str(p.parent) else Path(".")
    if not directory:
        if not parent.is_dir():
            raise PathError(f"directory {parent} does not exist", path=p, flag=flag)
        ancestor = parent
    else:
        ancestor = parent
        while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise PathError(f"cannot be created: {ancestor} is not a directory", path=p, flag=flag)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PathError(f"cannot be written: no permission to write in {ancestor}", path=p, flag=flag)
    if os.statvfs(ancestor).f_flag & os.ST_RDONLY:  # root passes os.access even there
        raise PathError(f"cannot be written: {ancestor} is on a read-only file system", path=p, flag=flag)
