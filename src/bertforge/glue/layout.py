"""GLUE's official folder layout and each file's quirks: what ``download_glue_data.py`` leaves on disk, read
exactly as distributed and checked row by row before anything trains.

The quirks: CoLA's train/dev have no header and its test file has one; SST-2's and CoLA's test files have an
index column; MNLI has ``dev_matched``/``dev_mismatched``/``test_matched``/``test_mismatched`` and more columns
in dev than in train (the label is the last one); QQP has rows with missing fields (a question with a newline
splits a record in two): they are skipped and counted, as every GLUE processor does; STS-B's labels are float
scores in [0, 5]; no file quotes its fields (a ``"`` is a character); the diagnostic set (AX) has no labels
and is predicted with the MNLI model. Column positions are ``data.readers.GLUE_LAYOUTS``' (the readers
behind ``--format glue:TASK``); this module adds the folders, the file names, the headers, the exact column
counts and the label sets. No torch here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from bertforge.data.examples import TextExample
from bertforge.data.readers import GLUE_LAYOUTS, GlueLayout
from bertforge.errors import DataFormatError, PathError
from bertforge.io.jsonl import read_lines

NLI3 = ("contradiction", "entailment", "neutral")
NLI2 = ("entailment", "not_entailment")
BINARY = ("0", "1")
STSB_RANGE = (0.0, 5.0)


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task as distributed: its folder, files, labels and what the GLUE server wants back."""

    key: str  # cola, sst2, ... (the --tasks name)
    folder: str  # CoLA, SST-2, ...
    labels: tuple[str, ...] | None  # None: a regression task (STS-B)
    dev: tuple[str, ...] = ("dev.tsv",)  # the first picks epochs and seeds; MNLI's second is dev_mismatched
    test: tuple[str, ...] = ("test.tsv",)
    submission: tuple[str, ...] = ()  # the server's file per test file
    header: bool = True  # train/dev start with a header row (CoLA's do not)
    columns: int | None = None  # the column count of a headerless train/dev file
    skip_broken: bool = False  # rows with missing fields are skipped and counted (QQP)

    @property
    def family(self) -> str:
        """The bertforge task family that fine-tunes it."""
        return "regress" if self.labels is None else "classify"

    @property
    def name(self) -> str:
        """The name papers print (CoLA, SST-2, ...)."""
        return self.folder

    @property
    def layouts(self) -> tuple[GlueLayout, GlueLayout]:
        return GLUE_LAYOUTS[self.key]


TASKS: dict[str, GlueTask] = {t.key: t for t in (
    GlueTask("cola", "CoLA", BINARY, submission=("CoLA.tsv",), header=False, columns=4),
    GlueTask("sst2", "SST-2", BINARY, submission=("SST-2.tsv",)),
    GlueTask("mrpc", "MRPC", BINARY, submission=("MRPC.tsv",)),
    GlueTask("stsb", "STS-B", None, submission=("STS-B.tsv",)),
    GlueTask("qqp", "QQP", BINARY, submission=("QQP.tsv",), skip_broken=True),
    GlueTask("mnli", "MNLI", NLI3, dev=("dev_matched.tsv", "dev_mismatched.tsv"),
             test=("test_matched.tsv", "test_mismatched.tsv"), submission=("MNLI-m.tsv", "MNLI-mm.tsv")),
    GlueTask("qnli", "QNLI", NLI2, submission=("QNLI.tsv",)),
    GlueTask("rte", "RTE", NLI2, submission=("RTE.tsv",)),
    GlueTask("wnli", "WNLI", BINARY, submission=("WNLI.tsv",)),
)}
DEFAULT_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte")
WNLI_REASON = ("WNLI is skipped by default: its train and dev sets are adversarial (a hypothesis of a training "
               "example comes back in dev with the other label), so a fine-tuned model does worse than the "
               "majority class (GLUE's paper); BERT submits the majority class, as the submission here does; "
               "add wnli to --tasks to fine-tune it anyway")
# The diagnostic set: index, sentence1, sentence2; predicted with the MNLI model, submitted as AX.tsv.
AX_FOLDER, AX_FILE, AX_SUBMISSION = "diagnostic", "diagnostic.tsv", "AX.tsv"
AX_LAYOUT = GlueLayout(1, 2, None, header=True, id=0, names=("sentence1", "sentence2", ""))


def task_key(name: str) -> str | None:
    """The --tasks key of a task name as people write it ("SST-2", "sts-b", "MNLI"), or None."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    return key if key in TASKS else None


@dataclass
class Split:
    """The examples of one file, with what was skipped (QQP's broken rows)."""

    path: Path
    examples: list[TextExample]
    skipped: int = 0
    skipped_lines: list[int] = field(default_factory=list)


@dataclass
class TaskData:
    """A task's files, read and checked: train, the dev files, the test files (None when absent)."""

    task: GlueTask
    train: Split
    dev: list[Split]
    test: list[Split | None]


def task_folder(root: Path, task: GlueTask) -> Path:
    """``root/<folder>``, or an error that lists the folders there."""
    folder = root / task.folder
    if not folder.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if root.is_dir() else []
        raise PathError(f"no {task.folder}/ folder for task {task.key} (GLUE's layout: one folder per task); "
                        f"found: {', '.join(found) or 'no folders'}", path=folder, flag="--data",
                        hint="point --data at the folder download_glue_data.py wrote, or leave the task out of --tasks")
    return folder


def _file(folder: Path, name: str, required: bool = True) -> Path | None:
    path = folder / name
    if path.is_file():
        return path
    if not required:
        return None
    found = sorted(p.name for p in folder.iterdir() if p.is_file())
    raise PathError(f"missing from {folder.name}/ (found: {', '.join(found) or 'no files'})", path=path,
                    flag="--data")


def read_task(root: str | Path, task: GlueTask | str, encoding: str = "utf-8") -> TaskData:
    """Read and check every file of a task (test files may be absent: then there is nothing to submit)."""
    task = TASKS[task] if isinstance(task, str) else task
    folder = task_folder(Path(root), task)
    train = read_labelled(_file(folder, "train.tsv"), task, encoding)
    dev = [read_labelled(_file(folder, name), task, encoding) for name in task.dev]
    test = [read_unlabelled(p, task.layouts[1], task.folder, encoding) if p else None
            for p in (_file(folder, name, required=False) for name in task.test)]
    return TaskData(task, train, dev, test)


def read_diagnostic(root: str | Path, encoding: str = "utf-8") -> Split | None:
    """The AX set (``diagnostic/diagnostic.tsv``), or None when the folder is not there."""
    path = Path(root) / AX_FOLDER / AX_FILE
    return read_unlabelled(path, AX_LAYOUT, "AX", encoding) if path.is_file() else None


def _rows(path: Path, encoding: str):
    """(line, fields) of a tab-separated file without quoting (``csv.QUOTE_NONE``: a ``"`` is text, a tab always
    separates, as GLUE's own processors read it); blank lines skipped."""
    for lineno, line in read_lines(path, encoding):
        line = line.rstrip("\r\n")
        if line.strip():
            yield lineno, line.split("\t")


def _header_names(layout: GlueLayout) -> list[tuple[int, str]]:
    """(column, name) that a file with ``layout`` must have in its header."""
    return [(col, name) for col, name in zip((layout.text, layout.text_pair, layout.label), layout.names)
            if col is not None and name]


def _matches(header: list[str], layout: GlueLayout) -> bool:
    names = _header_names(layout)
    return all(-len(header) <= col < len(header) and header[col] == name for col, name in names)


def read_labelled(path: Path, task: GlueTask, encoding: str = "utf-8") -> Split:
    """A train or dev file: exact column count, the task's labels; QQP's broken rows skipped and counted."""
    layout, test_layout = task.layouts
    rows = _rows(path, encoding)
    first = next(rows, None)
    if first is None:
        raise DataFormatError("empty file", path=path)
    lineno, row = first
    if task.header:
        header = row
        if not _matches(header, layout):
            if _matches(header, test_layout) and layout.names[2] not in header:
                raise DataFormatError(f"is a test file (header {', '.join(header)}: no {layout.names[2]!r} "
                                      f"column), where {task.folder}'s labelled {path.name} belongs", path=path,
                                      line=lineno, hint=f"use the {path.name} that came with GLUE's {task.folder}/")
            want = ", ".join(f"{name!r} in column {col + 1 if col >= 0 else len(header)}"
                             for col, name in _header_names(layout))
            raise DataFormatError(f"not {task.folder}'s {path.name} header: expected {want}, got "
                                  f"{', '.join(header)}", path=path, line=lineno)
        columns, body = len(header), rows
    else:  # CoLA: no header; a header row "index<TAB>sentence" means the test file
        if row and row[0] == "index" and len(row) == 2:
            raise DataFormatError(f"is a test file (header {', '.join(row)}: no label column), where "
                                  f"{task.folder}'s labelled {path.name} belongs", path=path, line=lineno,
                                  hint=f"{task.folder}'s train and dev files have no header and 4 columns")
        columns, body = task.columns, _chain(first, rows)
    examples, skipped = [], []
    for lineno, row in body:
        broken = len(row) != columns
        if not broken and task.skip_broken:
            broken = not row[layout.text].strip() or not row[layout.text_pair].strip()
        if broken and task.skip_broken and len(row) <= columns:
            skipped.append(lineno)
            continue
        if broken:
            raise DataFormatError(f"{len(row)} columns, {task.folder}'s {path.name} has {columns}"
                                  f"{' (its header)' if task.header else ''}: a tab inside a field, or a cut row",
                                  path=path, line=lineno)
        examples.append(TextExample(row[layout.text], row[layout.text_pair] if layout.text_pair is not None else None,
                                    _label(row[layout.label], task, path, lineno), f"{path.stem}-{lineno}"))
    if not examples:
        raise DataFormatError("no examples in file", path=path)
    return Split(path, examples, len(skipped), skipped)


def _chain(first, rest):
    yield first
    yield from rest


def _label(value: str, task: GlueTask, path: Path, lineno: int) -> str | float:
    name = task.layouts[0].names[2]
    if task.labels is None:
        try:
            score = float(value)
        except ValueError:
            raise DataFormatError(f"{name} {value!r} is not a number", path=path, line=lineno, field=name) from None
        low, high = STSB_RANGE
        if not (math.isfinite(score) and low <= score <= high):
            raise DataFormatError(f"{name} {value!r} is outside {task.folder}'s range [{low:g}, {high:g}]",
                                  path=path, line=lineno, field=name)
        return score
    if value not in task.labels:
        raise DataFormatError(f"{name} {value!r} is not one of {task.folder}'s labels: {', '.join(task.labels)}",
                              path=path, line=lineno, field=name)
    return value


def read_unlabelled(path: Path, layout: GlueLayout, what: str, encoding: str = "utf-8") -> Split:
    """A test file (or AX): a header, then one row per example; the example ids are the index column that the
    submission repeats."""
    rows = _rows(path, encoding)
    first = next(rows, None)
    if first is None:
        raise DataFormatError("empty file", path=path)
    lineno, header = first
    if not _matches(header, layout):
        want = ", ".join(f"{name!r} in column {col + 1}" for col, name in _header_names(layout))
        raise DataFormatError(f"not {what}'s test header: expected {want}, got {', '.join(header)}", path=path,
                              line=lineno)
    examples = []
    for lineno, row in rows:
        if len(row) != len(header):
            raise DataFormatError(f"{len(row)} columns, the header has {len(header)}: a tab inside a field, or a "
                                  "cut row (every test row needs a prediction)", path=path, line=lineno)
        examples.append(TextExample(row[layout.text], row[layout.text_pair] if layout.text_pair is not None else None,
                                    None, row[layout.id]))
    if not examples:
        raise DataFormatError("no examples in file", path=path)
    return Split(path, examples)
