"""Count baselines for a held-out language-model loss: what word frequencies alone (unigram) and the word
before (bigram) give on the same held-out targets.

A masked LM first learns the unigram distribution and sits near its loss before it learns to use
context, so a held-out perplexity means little until it is set against these. Both models are estimated
from the training split's pieces: the unigram with add-one smoothing over the vocabulary, the bigram
interpolated with it by Witten-Bell (no parameter to tune on held-out data).
"""

from __future__ import annotations

import numpy as np


class CountLM:
    """Unigram and bigram piece counts of a training split, scored on held-out targets in nats."""

    def __init__(self, unigram: np.ndarray, bigram_pairs: np.ndarray, bigram_counts: np.ndarray):
        self.vocab_size = len(unigram)
        self.unigram = unigram.astype(np.float64)  # (V,) counts
        self.log_p_unigram = np.log((self.unigram + 1.0) / (self.unigram.sum() + self.vocab_size))
        # bigrams as sorted keys prev * V + next, with their counts
        self.keys, self.counts = bigram_pairs.astype(np.int64), bigram_counts.astype(np.float64)
        prev = self.keys // self.vocab_size
        self.after = np.bincount(prev, weights=self.counts, minlength=self.vocab_size)  # c(v)
        self.types_after = np.bincount(prev, minlength=self.vocab_size).astype(np.float64)  # T(v)

    @classmethod
    def from_store(cls, store, vocab_size: int) -> "CountLM":
        """Counts over every training instance of a prepared corpus (``InstanceStore``), special pieces
        included: they are targets too for the objectives that predict every position."""
        return cls.from_rows(((shard["tokens"], shard["lengths"]) for shard in store.shards), vocab_size)

    @classmethod
    def from_rows(cls, chunks, vocab_size: int) -> "CountLM":
        """Counts over ``chunks`` of (tokens (N, T), lengths (N,)) arrays: the first ``length`` pieces of each
        row are real, and a bigram never crosses from one row to the next."""
        unigram = np.zeros(vocab_size, dtype=np.int64)
        pair_chunks = []
        for tokens, lengths in chunks:
            tokens, lengths = np.asarray(tokens, dtype=np.int64), np.asarray(lengths)[:, None]
            positions = np.arange(tokens.shape[1])[None, :]
            unigram += np.bincount(tokens[positions < lengths], minlength=vocab_size)
            follows = positions[:, 1:] < lengths  # both pieces of the pair are real
            pair_chunks.append((tokens[:, :-1] * vocab_size + tokens[:, 1:])[follows])
        keys, counts = (np.unique(np.concatenate(pair_chunks), return_counts=True) if pair_chunks
                        else (np.zeros(0, np.int64), np.zeros(0, np.int64)))
        return cls(unigram, keys, counts)

    def unigram_nll(self, targets: np.ndarray) -> float:
        """Summed negative log-likelihood (nats) of ``targets`` under the unigram model."""
        return float(-self.log_p_unigram[np.asarray(targets, dtype=np.int64)].sum())

    def bigram_nll(self, previous: np.ndarray, targets: np.ndarray) -> float:
        """Summed negative log-likelihood (nats) of ``targets`` each after its ``previous`` piece, the bigram
        interpolated with the unigram by Witten-Bell: (c(v,w) + T(v) p(w)) / (c(v) + T(v))."""
        previous, targets = np.asarray(previous, np.int64), np.asarray(targets, np.int64)
        keys = previous * self.vocab_size + targets
        where = np.searchsorted(self.keys, keys)
        found = (where < len(self.keys)) & (self.keys[np.minimum(where, len(self.keys) - 1)] == keys)
        pair = np.where(found, self.counts[np.minimum(where, max(len(self.keys) - 1, 0))], 0.0) \
            if len(self.keys) else np.zeros(len(keys))
        t, c = self.types_after[previous], self.after[previous]
        p_uni = np.exp(self.log_p_unigram[targets])
        p = np.where(c > 0, (pair + t * p_uni) / np.maximum(c + t, 1.0), p_uni)
        return float(-np.log(p).sum())
