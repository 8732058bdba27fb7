"""The files the GLUE server (gluebenchmark.com) accepts: one TSV per test set, named as it expects
(``CoLA.tsv``, ``MNLI-m.tsv``, ``MNLI-mm.tsv``, ``AX.tsv``...), each ``index<TAB>prediction`` with a header,
in the test file's order, and a zip of them (the files at its top level).

The server reads 0/1 for CoLA, SST-2, MRPC, QQP and WNLI, a float for STS-B, and the label strings for the
NLI tasks (MNLI-m, MNLI-mm and AX: entailment/neutral/contradiction; QNLI and RTE: entailment/not_entailment).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from bertforge.io.atomic import atomic_dir, atomic_path

HEADER = "index\tprediction"
# The order of the server's own sample submission.
FILES = ("CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "STS-B.tsv", "QQP.tsv", "MNLI-m.tsv", "MNLI-mm.tsv", "QNLI.tsv",
         "RTE.tsv", "WNLI.tsv", "AX.tsv")
INTEGER_LABELS = {"CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "QQP.tsv", "WNLI.tsv"}
FLOAT_LABELS = {"STS-B.tsv"}


def format_prediction(file: str, prediction: str | float) -> str:
    """One prediction as the server reads it for ``file``."""
    if file in FLOAT_LABELS:
        return f"{float(prediction):.3f}"
    if file in INTEGER_LABELS:
        return str(int(prediction))
    return str(prediction)


def render(file: str, ids: Sequence[str], predictions: Sequence[str | float]) -> str:
    """A submission file's text: the header, then ``index<TAB>prediction`` per test row."""
    if len(ids) != len(predictions):
        raise ValueError(f"{file}: {len(ids)} test rows but {len(predictions)} predictions")
    return HEADER + "\n" + "".join(f"{i}\t{format_prediction(file, p)}\n" for i, p in zip(ids, predictions))


def write_submission(out: Path, files: Mapping[str, tuple[Sequence[str], Sequence[str | float]]]) -> list[Path]:
    """``out/submission/<file>`` for each (ids, predictions) and ``out/submission.zip``; returns the files
    written, in the server's order. Both are replaced whole (a failed write leaves the old ones)."""
    unknown = set(files) - set(FILES)
    if unknown:
        raise ValueError(f"not GLUE submission files: {', '.join(sorted(unknown))}")
    names = [name for name in FILES if name in files]
    with atomic_dir(out / "submission") as tmp:
        for name in names:
            (tmp / name).write_text(render(name, *files[name]), encoding="utf-8", newline="\n")
    with atomic_path(out / "submission.zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in names:
            zf.write(out / "submission" / name, arcname=name)
    return [out / "submission" / name for name in names]
