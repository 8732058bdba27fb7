"""WordVocab: the word list of the LM softmax, in bilm-tf's vocabulary-file layout.

One word a line: ``<S>``, ``</S>``, ``<UNK>`` first, then the corpus words from most to least frequent
(ties in order of first appearance). The input side of ELMo reads characters, so only the softmax
needs this list; words outside it are predicted as ``<UNK>``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from bertforge.io.atomic import atomic_write_text
from bertforge.errors import DataFormatError, require_file
from bertforge.model.elmo.chars import BOS_TOKEN, EOS_TOKEN

UNK_TOKEN = "<UNK>"
SPECIALS = (BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)


class WordVocab:
    """Words <-> ids; ``bos``, ``eos`` and ``unk`` are the ids of the three markers."""

    def __init__(self, words: list[str]):
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("a vocabulary lists each word once")
        missing = [s for s in SPECIALS if s not in self.index]
        if missing:
            raise ValueError(f"a vocabulary needs {', '.join(missing)}")
        self.bos, self.eos, self.unk = (self.index[s] for s in SPECIALS)

    @classmethod
    def build(cls, sentences: Iterable[Iterable[str]], max_words: int | None = None,
              min_count: int = 1) -> "WordVocab":
        """The markers, then the ``max_words`` most frequent words seen ``min_count`` times or more."""
        counts = Counter(w for sentence in sentences for w in sentence if w not in SPECIALS)
        frequent = [w for w, n in counts.most_common(max_words) if n >= min_count]
        return cls([*SPECIALS, *frequent])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.index.get(t, self.unk) for t in tokens]

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(Path(path), "".join(w + "\n" for w in self.words))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "WordVocab":
        path = require_file(path, what="vocabulary file")
        words = path.read_text(encoding="utf-8").splitlines()
        seen: dict[str, int] = {}
        for line, word in enumerate(words, start=1):
            if not word or word != word.strip() or " " in word:
                raise DataFormatError(f"expected one word, got {word!r}", path=path, line=line)
            if word in seen:
                raise DataFormatError(f"{word!r} repeats line {seen[word]}", path=path, line=line)
            seen[word] = line
        missing = [s for s in SPECIALS if s not in seen]
        if missing:
            raise DataFormatError(f"no {', '.join(missing)} line", path=path)
        return cls(words)
