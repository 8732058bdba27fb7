"""WordPiece ids of many texts, assembled from a cache of each distinct space-separated word.

Corpora repeat the same words endlessly, and tokenizing a text is mostly normalising and splitting
words already seen. BERT's normaliser never removes a space and its pre-tokenizer always splits at
one, so a text's pieces are the concatenation of its space-separated words' pieces: each distinct
word is tokenized once (one ``tokenizers`` batch call per group of texts) and texts are assembled
from the cache with numpy. The result is identical to :meth:`BertTokenizer.piece_ids` (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bertforge.tokenization import BertTokenizer


class WordPieceCache:
    """Per-process cache; emptied when it holds more than ``max_words`` words, so memory stays bounded."""

    def __init__(self, tokenizer: BertTokenizer, max_words: int = 500_000):
        self.tokenizer = tokenizer
        self.max_words = max_words
        self._clear()

    def _clear(self) -> None:
        self.index: dict[str, int] = {}  # word -> row
        self.flat = np.zeros(0, dtype=np.int32)  # every row's pieces, end to end
        self.start = np.zeros(0, dtype=np.int64)  # row -> first piece in flat
        self.length = np.zeros(0, dtype=np.int64)  # row -> number of pieces

    def _add(self, words: list[str]) -> None:
        pieces = self.tokenizer.piece_ids(words)
        length = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        start = len(self.flat) + np.cumsum(length) - length
        self.index.update(zip(words, range(len(self.index), len(self.index) + len(words))))
        self.flat = np.concatenate([self.flat, np.fromiter((i for p in pieces for i in p), dtype=np.int32,
                                                           count=int(length.sum()))])
        self.start = np.concatenate([self.start, start])
        self.length = np.concatenate([self.length, length])

    def piece_arrays(self, texts: Sequence[str]) -> list[np.ndarray]:
        """The WordPiece ids of each text (int32 arrays), without special tokens or truncation."""
        if not texts:
            return []
        words = " ".join(texts).split(" ")
        if len(self.index) > self.max_words:
            self._clear()
        new = [w for w in dict.fromkeys(words) if w not in self.index]
        if new:
            self._add(new)
        rows = np.fromiter(map(self.index.__getitem__, words), dtype=np.int64, count=len(words))
        length = self.length[rows]
        ends = np.cumsum(length)  # (words,) end of each word's pieces in the output
        # Output position k of word j reads flat[start[j] + (k - first output position of j)].
        ids = self.flat[np.repeat(self.start[rows] - (ends - length), length) + np.arange(ends[-1])]
        words_per_text = np.fromiter((t.count(" ") + 1 for t in texts), dtype=np.int64, count=len(texts))
        return np.split(ids, ends[np.cumsum(words_per_text)[:-1] - 1])
