"""People's Daily 1998-01 (PKU segmented, POS-tagged) as character-level NER data.

Each line is one sentence of ``word/tag`` tokens separated by (usually two) spaces, optionally led
by an id token ``19980101-01-001-002/m``. Brackets mark compounds: ``[中央/n  人民/n  广播/vn
电台/n]nt``. Entities: ``nr`` -> PER, ``ns`` -> LOC, ``nt`` -> ORG; a bracket tagged ``nt`` or ``ns``
is ONE entity (its inner tags ignored); other brackets (``nz``, ``l``, ``i``...) are just their
words. Consecutive ``nr`` words (surname + given name, 江/nr 泽民/nr) form one PER entity, the usual
convention; note that this also merges unseparated name lists (江/nr 泽民/nr 李/nr 鹏/nr).
"""

from __future__ import annotations

import re
from pathlib import Path

# split_examples and Split (the seeded split) live in data.tasks and are re-exported here.
from bertforge.data.examples import TaggedSentence
from bertforge.data.readers import PathLike, Split, spans_to_tags, split_examples
from bertforge.errors import DataFormatError
from bertforge.io.jsonl import read_lines

__all__ = ["ENTITY_TYPES", "Word", "parse_line", "joined_text", "entity_spans", "line_to_example",
           "read_peoples_daily", "split_examples", "Split"]

ENTITY_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}

_ID_TOKEN = re.compile(r"^\d{8}-\d{2}-\d{3}-\d{3}/m$")
TOKEN = re.compile(r"\S+/[A-Za-z]{1,4}(?:\][A-Za-z]{1,4})?")  # what a line of this corpus is made of
_CLOSE = re.compile(r"^(.*)/([A-Za-z]+)\]([A-Za-z]+)$")  # last word of a bracket: 电台/n]nt


# One segmented word: (text, POS tag, index of its bracket in the line or None, bracket tag or
# None). Plain tuples: the corpus has 1.1M words and a class per word triples the read time.
Word = tuple[str, str, int | None, str | None]


def _split_word(token: str, path: PathLike, lineno: int) -> tuple[str, str]:
    word, _, tag = token.rpartition("/")
    if not word or not tag:
        raise DataFormatError(f"token {token!r} is not word/tag", path=path, line=lineno)
    return word, tag


def parse_line(line: str, path: PathLike = "<line>",
               lineno: int = 1) -> tuple[str | None, list[Word]]:
    """Split one corpus line into (id or None, words), resolving bracketed compounds."""
    tokens = line.split()
    sent_id = None
    if tokens and _ID_TOKEN.match(tokens[0]):
        sent_id = tokens.pop(0).rpartition("/")[0]
    if "[" not in line:  # fast path: no compounds on this line
        plain: list[Word] = [(w, tag, None, None)
                             for w, _, tag in (t.rpartition("/") for t in tokens)]
        if not all(w and tag for w, tag, _, _ in plain):
            for token in tokens:
                _split_word(token, path, lineno)  # raises, naming the bad token
        return sent_id, plain
    words: list[Word] = []
    open_words: list[tuple[str, str]] | None = None  # words of the bracket being read
    n_brackets = 0
    for token in tokens:
        if token.startswith("[") and len(token) > 1 and not token.startswith("[/"):
            if open_words is not None:
                raise DataFormatError(f"nested bracket at {token!r}", path=path, line=lineno)
            open_words, token = [], token[1:]
        close = _CLOSE.match(token) if open_words is not None else None
        if close:
            open_words.append((close.group(1), close.group(2)))
            words += [(w, t, n_brackets, close.group(3)) for w, t in open_words]
            n_brackets += 1
            open_words = None
        elif open_words is not None:
            open_words.append(_split_word(token, path, lineno))
        else:
            words.append((*_split_word(token, path, lineno), None, None))
    if open_words is not None:
        raise DataFormatError("bracket opened with '[' is never closed", path=path, line=lineno)
    return sent_id, words


def joined_text(words: list[Word]) -> str:
    """The words of a line as running text: no spaces (Chinese), but one between two Latin letters or
    digits ("Windows 95")."""
    out: list[str] = []
    for i, (text, *_) in enumerate(words):
        if i and _latin(out[-1][-1]) and _latin(text[0]):
            out.append(" ")
        out.append(text)
    return "".join(out)


def _latin(c: str) -> bool:
    return c.isascii() and c.isalnum()


def entity_spans(words: list[Word]) -> list[tuple[int, int, str]]:
    """Character spans (start, end exclusive, type) of the PER/LOC/ORG entities in ``words``."""
    spans: list[tuple[int, int, str]] = []
    pos, i, n = 0, 0, len(words)
    while i < n:
        text, tag, bracket, bracket_tag = words[i]
        if bracket is not None and bracket_tag in ENTITY_TYPES:  # a [...]nt / [...]ns compound
            kind, j = ENTITY_TYPES[bracket_tag], i + 1
            while j < n and words[j][2] == bracket:
                j += 1
        elif tag in ENTITY_TYPES:
            kind, j = ENTITY_TYPES[tag], i + 1
            if tag == "nr":  # surname + given name(s): one person
                while j < n and words[j][1] == "nr" and words[j][2] == bracket:
                    j += 1
        else:
            pos, i = pos + len(text), i + 1
            continue
        length = sum(len(w[0]) for w in words[i:j])
        spans.append((pos, pos + length, kind))
        pos, i = pos + length, j
    return spans


def line_to_example(line: str, scheme: str = "BIO", *, example_id: str = "",
                    path: PathLike = "<line>", lineno: int = 1) -> TaggedSentence | None:
    """One corpus line as a character-level tagged sentence, or None for a blank line."""
    sent_id, words = parse_line(line, path, lineno)
    if not words:
        return None
    chars = list("".join(w[0] for w in words))
    return TaggedSentence(chars, spans_to_tags(len(chars), entity_spans(words), scheme),
                          sent_id or example_id)


def read_peoples_daily(path: PathLike, scheme: str = "BIO", max_sentences: int | None = None,
                       encoding: str = "utf-8") -> list[TaggedSentence]:
    """Read People's Daily as character-level NER sentences (one per non-blank line)."""
    if scheme not in ("BIO", "IOBES"):
        raise ValueError(f"unknown tag scheme {scheme!r}; use 'BIO' or 'IOBES'")
    examples: list[TaggedSentence] = []
    stem = Path(path).stem
    for lineno, line in read_lines(path, encoding):
        if max_sentences is not None and len(examples) >= max_sentences:
            break
        ex = line_to_example(line, scheme, example_id=f"{stem}-{lineno}", path=path, lineno=lineno)
        if ex is not None:
            examples.append(ex)
    if not examples:
        raise DataFormatError("no sentences in file", path=path)
    return examples
