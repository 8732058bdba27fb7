"""Columnar data: Parquet files, Arrow IPC files and streams, ``datasets`` folders (``Dataset.save_to_disk``) and
``datasets.Dataset`` objects, read through pyarrow a batch of rows at a time.

Corpora and labelled sets are often kept this way (NVIDIA's BERT shards its pre-training data as Parquet; the
Hugging Face hub serves Parquet and ``datasets`` keeps Arrow files), so every reader that takes a text file takes
these too: a row is one record with the fields a JSON line would have (a corpus row's text column is one
document). Only the columns asked for are read, ``BATCH_ROWS`` rows at a time: a Parquet file by row group, an
Arrow file memory-mapped and sliced without a copy, so memory stays bounded whatever the file's size
(``benchmarks/columnar_memory.py`` measures it).

Integer columns with Hugging Face ``ClassLabel`` names (in the file's ``huggingface`` schema metadata, a folder's
``dataset_info.json`` or a Dataset's ``features``), and lists of them (``ner_tags``), read as their names, and -1
("no label") as None, so the labels a model learns and predicts are readable.

pyarrow is optional (the ``arrow`` extra) and imported only when such data is opened: what a file is, is told by
its first bytes. ``datasets`` is never imported: a Dataset is known by its type's module.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bertforge.errors import DataFormatError, PathError, Row, UsageError, require_file

__all__ = ["FORMATS", "ARROW_HINT", "Columnar", "DatasetSource", "detect", "is_dataset", "is_datasets_folder",
           "open_columnar", "records", "require_source", "source", "identity", "describe", "described"]

FORMATS = ("parquet", "arrow")  # an Arrow IPC file or stream, a datasets folder, a Dataset: all "arrow"
ARROW_HINT = "pip install 'bertforge[arrow]' (or pip install pyarrow==26.0.1)"
BATCH_ROWS = 1024  # rows turned into Python objects at a time

_PARQUET, _ARROW_FILE, _ARROW_STREAM = b"PAR1", b"ARROW1", b"\xff\xff\xff\xff"  # a stream's first continuation


# --- what a source is ---------------------------------------------------------------------------

def is_dataset(obj: Any) -> bool:
    """Whether ``obj`` is a ``datasets.Dataset`` (told by its type's name and module, so datasets is not imported to
    ask; an ``IterableDataset``, which has no length or cache files, is not one)."""
    return any(c.__name__ == "Dataset" and c.__module__.split(".")[0] == "datasets" for c in type(obj).__mro__)


class DatasetSource(os.PathLike):
    """A ``datasets.Dataset`` given where a file path goes: it reads as a path named after the dataset's fingerprint
    (for messages and example ids) and carries the dataset, which ``open_columnar`` reads."""

    def __init__(self, dataset: Any):
        self.dataset = dataset
        self.name = f"datasets.Dataset {getattr(dataset, '_fingerprint', None) or hex(id(dataset))}"

    def __fspath__(self) -> str:
        return self.name

    __str__ = __fspath__

    def __repr__(self) -> str:
        return f"DatasetSource({self.name!r})"


def source(obj: Any) -> Path | DatasetSource:
    """A path as a Path, a Dataset as a DatasetSource: what the readers take."""
    if isinstance(obj, DatasetSource):
        return obj
    return DatasetSource(obj) if is_dataset(obj) else Path(obj)


def is_datasets_folder(path: Any) -> bool:
    """A folder ``Dataset.save_to_disk`` wrote: ``state.json`` (its data files) and ``dataset_info.json``."""
    if isinstance(path, DatasetSource) or is_dataset(path):
        return False
    p = Path(path)
    return p.is_dir() and (p / "state.json").is_file() and (p / "dataset_info.json").is_file()


def detect(obj: Any) -> str | None:
    """"parquet" or "arrow" when ``obj`` holds columnar data (a file by its first bytes; a datasets folder or a
    Dataset is "arrow"), None otherwise: for text, and for a path that cannot be read (the text readers say why)."""
    if isinstance(obj, DatasetSource) or is_dataset(obj) or is_datasets_folder(obj):
        return "arrow"
    try:
        with open(obj, "rb") as f:
            head = f.read(len(_ARROW_FILE))
    except OSError:
        return None
    if head.startswith(_PARQUET):
        return "parquet"
    return "arrow" if head == _ARROW_FILE or head.startswith(_ARROW_STREAM) else None


def require_source(obj: Any, *, flag: str | None = None, setting: str | None = None,
                   what: str = "file") -> Path | DatasetSource:
    """``obj`` ready to read: a Dataset, a datasets folder, or else an existing regular file (``require_file``'s
    PathError otherwise; a folder of several splits is told to give one)."""
    obj = source(obj)
    if isinstance(obj, DatasetSource) or is_datasets_folder(obj):
        return obj
    if (obj / "dataset_dict.json").is_file():
        raise PathError("is a datasets folder of several splits (dataset_dict.json), expected one", path=obj,
                        flag=flag, setting=setting, hint=f"pass one split's folder, e.g. {obj / 'train'}")
    return require_file(obj, flag=flag, setting=setting, what=what)


def _data_files(folder: Path) -> list[Path]:
    """The Arrow files of a datasets folder, in order, as its ``state.json`` lists them."""
    state = folder / "state.json"
    try:
        files = [folder / entry["filename"] for entry in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]
    except (ValueError, KeyError, TypeError) as e:
        raise DataFormatError(f"not a datasets state file (no _data_files list of filenames): {e}",
                              path=state) from None
    if not files:
        raise DataFormatError("lists no data files", path=state)
    return files


def identity(obj: Any) -> str:
    """What names a source's contents, for a cache key: a file's path, size and modification time (each data
    file's, for a datasets folder), a Dataset's fingerprint."""
    obj = source(obj)
    if isinstance(obj, DatasetSource):
        return obj.name
    files = [obj / "state.json", *_data_files(obj)] if is_datasets_folder(obj) else [obj]
    return ";".join(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}" for p in files for st in [p.stat()])


def describe(obj: Any) -> str:
    """A source in a run's records: a path as written, a Dataset by its fingerprint, size and cache files."""
    obj = source(obj) if is_dataset(obj) else obj
    if not isinstance(obj, DatasetSource):
        return str(obj)
    files = [entry["filename"] for entry in getattr(obj.dataset, "cache_files", [])]
    return f"{obj.name} ({len(obj.dataset)} rows; {'cache files ' + ', '.join(files) if files else 'in memory'})"


def described(settings: Any) -> Any:
    """A shallow copy of a settings dataclass with each Dataset in it (a field, or an item of a list field) as its
    ``describe`` line: what a run's records (JSON, YAML) hold, and ``dataclasses.asdict`` then copies no Dataset."""
    shallow = copy.copy(settings)
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if is_dataset(value) or isinstance(value, DatasetSource):
            setattr(shallow, f.name, describe(value))
        elif isinstance(value, list) and any(is_dataset(v) or isinstance(v, DatasetSource) for v in value):
            setattr(shallow, f.name, [describe(v) for v in value])
    return shallow


# --- reading ---------------------------------------------------------------------------------------

def _pyarrow(name: Any) -> Any:
    """pyarrow, with its parquet and ipc modules; the one clear error when it is not installed."""
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet  # noqa: F401  (reached as pyarrow.parquet)
    except ImportError:
        raise UsageError(f"{name} is Parquet or Arrow data, and reading it needs the pyarrow package, which is not "
                         "installed", hint=ARROW_HINT) from None
    return pyarrow


@dataclasses.dataclass
class Columnar:
    """An opened columnar source: its columns and their types, its ClassLabel names, and its batches."""

    name: str | os.PathLike  # what messages call it
    types: dict[str, Any]  # column -> pyarrow type, in the file's order
    class_names: dict[str, list[str]]  # ClassLabel columns (or lists of them) -> names by class id
    batches: Callable[[list[str]], Iterator[Any]]  # record batches (or tables) of those columns, in order

    @property
    def columns(self) -> list[str]:
        return list(self.types)

    def require(self, columns: Iterable[str], hint: str | None = None, row: int | None = None) -> None:
        """A DataFormatError that lists the columns there are, when one of ``columns`` is not among them (naming
        ``row`` where one row's reading found the column missing)."""
        missing = [c for c in columns if c not in self.types]
        if missing:
            raise DataFormatError(f"no column {missing[0]!r} (its columns: {', '.join(self.columns) or 'none'})",
                                  path=self.name, line=row, field=missing[0], hint=hint)

    def require_text(self, column: str, hint: str | None = None) -> None:
        """``require``, and the column holds strings."""
        self.require([column], hint)
        pa, kind = _pyarrow(self.name), self.types[column]
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
            raise DataFormatError(f"column {column!r} holds {kind}, not text", path=self.name, field=column,
                                  hint=hint)

    def rows(self, columns: Sequence[str], optional: Iterable[str | None] = (),
             hint: str | None = None) -> Iterator[tuple[Row, dict[str, Any]]]:
        """(row number from 1, {column: value}) of ``columns`` (which must be there, else ``require``'s error) and of
        those ``optional`` ones that are; ClassLabel ids as names. A batch that cannot be decoded is an error
        naming the source."""
        self.require(columns, hint)
        pa = _pyarrow(self.name)
        wanted = list(dict.fromkeys([*columns, *(c for c in optional if c in self.types)]))
        labelled = [c for c in wanted if c in self.class_names]
        batches, n = self.batches(wanted), 0
        while True:
            try:
                batch = next(batches, None)
                records = None if batch is None else batch.to_pylist()
            except (pa.ArrowException, OSError) as e:
                raise DataFormatError(f"cannot read it after row {n} (damaged or cut short?): {e}",
                                      path=self.name) from None
            if records is None:
                return
            for record in records:
                n += 1
                for column in labelled:
                    record[column] = self._name(record[column], column, n)
                yield Row(n), record

    def _name(self, value: Any, column: str, row: int) -> Any:
        """A ClassLabel id (or a list of them) as its name; -1 and null as None."""
        if isinstance(value, list):
            return [self._name(v, column, row) for v in value]
        if value is None or value == -1:
            return None
        names = self.class_names[column]
        if not 0 <= value < len(names):
            raise DataFormatError(f"column {column!r}: class id {value} has no name (its ClassLabel has "
                                  f"{len(names)})", path=self.name, line=Row(row), field=column)
        return names[value]


def open_columnar(obj: Any, kind: str | None = None) -> Columnar:
    """``obj`` (a path, a datasets folder, a Dataset) opened: its schema read, no rows. ``kind`` ("parquet" or
    "arrow") says how to read a file; by default its first bytes do. A file pyarrow cannot open is an error
    naming it."""
    obj = source(obj)
    pa = _pyarrow(obj)
    if isinstance(obj, DatasetSource):
        return _open_dataset(obj)
    try:
        if is_datasets_folder(obj):
            return _open_folder(pa, obj)
        if (kind or detect(obj)) == "parquet":
            return _open_parquet(pa, obj)
        return _open_ipc(pa, obj)
    except (pa.ArrowException, OSError) as e:
        what = "a Parquet file" if (kind or detect(obj)) == "parquet" else "Arrow data"
        raise DataFormatError(f"cannot read it as {what} (damaged or cut short?): {e}", path=obj) from None


def records(obj: Any, columns: Sequence[str], optional: Iterable[str | None] = (),
            hint: str | None = None) -> Iterator[tuple[Row, dict[str, Any]]]:
    """``open_columnar(obj).rows(...)``: the rows of ``columns`` (required) and ``optional``."""
    return open_columnar(obj).rows(columns, optional, hint)


def _open_parquet(pa: Any, path: Path) -> Columnar:
    parquet = pa.parquet.ParquetFile(path)
    schema = parquet.schema_arrow

    def batches(columns: list[str]) -> Iterator[Any]:
        # A reader per row group: pyarrow 26's iter_batches keeps each column chunk it has read until the reader is
        # done (over a whole file, its memory grew to the file's size in benchmarks/columnar_memory.py).
        for group in range(parquet.num_row_groups):
            yield from parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=[group], columns=columns)

    return Columnar(path, _types(schema), _class_names(_schema_features(schema)), batches)


def _open_ipc(pa: Any, path: Path, features: dict | None = None) -> Columnar:
    with pa.memory_map(str(path)) as mapped:
        schema = _ipc_reader(pa, path, mapped).schema
    return Columnar(path, _types(schema), _class_names(_schema_features(schema) if features is None else features),
                    lambda columns: _ipc_batches(pa, [path], columns))


def _open_folder(pa: Any, folder: Path) -> Columnar:
    files = _data_files(folder)
    try:
        features = json.loads((folder / "dataset_info.json").read_text(encoding="utf-8")).get("features") or {}
    except ValueError as e:
        raise DataFormatError(f"malformed JSON: {e}", path=folder / "dataset_info.json") from None
    first = _open_ipc(pa, files[0], features)
    return Columnar(folder, first.types, first.class_names, lambda columns: _ipc_batches(pa, files, columns))


def _open_dataset(obj: DatasetSource) -> Columnar:
    dataset = obj.dataset
    return Columnar(obj, _types(dataset.features.arrow_schema), _class_names(dataset.features.to_dict()),
                    # the Dataset's own iteration, so a selection (indices mapping) or a shuffle reads as it shows
                    lambda columns: dataset.with_format("arrow", columns=columns).iter(batch_size=BATCH_ROWS))


def _ipc_reader(pa: Any, path: Path, mapped: Any) -> Any:
    with open(path, "rb") as f:
        head = f.read(len(_ARROW_FILE))
    return pa.ipc.open_file(mapped) if head == _ARROW_FILE else pa.ipc.open_stream(mapped)


def _ipc_batches(pa: Any, files: list[Path], columns: list[str]) -> Iterator[Any]:
    """Slices of at most BATCH_ROWS rows of each record batch of each Arrow file (memory-mapped: no copy)."""
    for path in files:
        with pa.memory_map(str(path)) as mapped:
            reader = _ipc_reader(pa, path, mapped)
            if hasattr(reader, "num_record_batches"):  # the file format: batches by index
                stored = (reader.get_batch(i) for i in range(reader.num_record_batches))
            else:  # the stream format: batches in order
                stored = reader
            for batch in stored:
                batch = batch.select(columns)
                for start in range(0, batch.num_rows, BATCH_ROWS):
                    yield batch.slice(start, BATCH_ROWS)


def _types(schema: Any) -> dict[str, Any]:
    return {field.name: field.type for field in schema}


def _schema_features(schema: Any) -> dict:
    """The Hugging Face features that ``datasets`` writes into a Parquet or Arrow schema, if any."""
    try:
        return json.loads((schema.metadata or {}).get(b"huggingface", b"{}"))["info"]["features"] or {}
    except (ValueError, KeyError, TypeError):
        return {}


def _class_names(features: dict) -> dict[str, list[str]]:
    """Column -> ClassLabel names, for ClassLabel columns and lists of ClassLabels (``Sequence``, ``List``)."""
    found = {}
    for column, feature in features.items():
        while (isinstance(feature, list) and len(feature) == 1) or (
                isinstance(feature, dict) and feature.get("_type") in ("Sequence", "List", "LargeList")):
            feature = feature[0] if isinstance(feature, list) else feature.get("feature")
        if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and feature.get("names"):
            found[column] = [str(name) for name in feature["names"]]
    return found
