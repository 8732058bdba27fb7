"""SHA-256 of weight files, recorded when they are saved and checked when they are loaded.

A model directory keeps them in ``weights.sha256`` beside the weights, in ``sha256sum``'s format (``sha256sum
-c weights.sha256`` checks it too); a training checkpoint keeps them in its manifest (``train/checkpoint.py``).
A file whose bytes changed after saving (a bad disk, a partial copy, zeroed blocks) is then one error naming
it instead of a model that loads and answers wrongly. Files saved without a record (older bertforge,
``transformers``, a download) load unchecked. A file edited on purpose: delete its line (or the record), or
set ``BERTFORGE_SKIP_CHECKSUM=1``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from bertforge.errors import CheckpointError

RECORD_FILE = "weights.sha256"
SKIP_ENV = "BERTFORGE_SKIP_CHECKSUM"


def sha256_file(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def skipped() -> bool:
    """True when the user asked to load files without checking them (``BERTFORGE_SKIP_CHECKSUM=1``)."""
    return os.environ.get(SKIP_ENV, "") not in ("", "0")


def check_digest(path: Path, expected: str, where: str) -> None:
    """A CheckpointError naming ``path`` when its SHA-256 is not ``expected`` (recorded in ``where``)."""
    if skipped():
        return
    actual = sha256_file(path)
    if actual != expected:
        raise CheckpointError(f"{path}: contents changed since it was saved (sha256 {actual[:16]}..., {where} "
                              f"records {expected[:16]}...): the file is damaged",
                              hint=f"restore or re-save it; if it was edited on purpose, set {SKIP_ENV}=1")


def read_record(directory: Path) -> dict[str, str]:
    """File name -> hex digest from a directory's ``weights.sha256`` ({} when there is none)."""
    path = directory / RECORD_FILE
    if not path.is_file():
        return {}
    record = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        if len(digest) == 64 and name:
            record[name.lstrip("*")] = digest.lower()
    return record


def write_record(directory: Path, record: dict[str, str]) -> None:
    """Write (or, for an empty ``record``, remove) a directory's ``weights.sha256``."""
    from bertforge.io.atomic import atomic_write_text

    path = directory / RECORD_FILE
    if not record:
        path.unlink(missing_ok=True)
        return
    atomic_write_text(path, "".join(f"{digest}  {name}\n" for name, digest in sorted(record.items())))


def verify(path: Path) -> None:
    """Check a weight file against its directory's record, if the record lists it."""
    expected = read_record(path.parent).get(path.name)
    if expected is not None:
        check_digest(path, expected, f"{path.parent / RECORD_FILE}")
