"""Padding and batching by length: the pure functions that training and inference share.

Padding every batch to a fixed length wastes the work of the pad positions (and attention is
quadratic in length); grouping inputs of similar length makes each batch nearly rectangular.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def pad_rows(rows: Sequence[Sequence[int | float]], value: int | float, width: int | None = None,
             dtype: type = np.int64) -> np.ndarray:
    """(len(rows), width) array of rows right-padded with ``value`` (width: the longest row)."""
    width = max((len(r) for r in rows), default=0) if width is None else width
    out = np.full((len(rows), width), value, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def length_sorted_batches(lengths: Sequence[int], max_tokens: int, max_batch_size: int) -> Iterator[list[int]]:
    """Indices, longest first, in batches of at most ``max_batch_size`` rows and ``max_tokens`` padded
    tokens (a single longer input still gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batch: list[int] = []
    for i in order:
        longest = lengths[batch[0]] if batch else lengths[i]
        if batch and (len(batch) + 1 > max_batch_size or (len(batch) + 1) * longest > max_tokens):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def random_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Indices 0..n-1 in a random order drawn from (seed, epoch), cut into batches (the last may be short)."""
    order = np.random.default_rng([seed, epoch]).permutation(n).tolist()
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def bucketed_batches(lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0,
                     chunk_batches: int = 50) -> list[list[int]]:
    """Index batches that waste little padding; the same (seed, epoch) gives the same batches.

    Training (``shuffle``): shuffle, cut into chunks of ``chunk_batches`` batches, sort each chunk
    by length and cut it into batches, then shuffle the batch order. Evaluation: longest first.
    """
    if batch_size < 1 or chunk_batches < 1:
        raise ValueError(f"batch_size and chunk_batches must be >= 1, got {batch_size}, {chunk_batches}")
    n = len(lengths)
    if not shuffle:
        order = sorted(range(n), key=lambda i: -lengths[i])
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0, got {seed}, {epoch}")
    rng = np.random.default_rng([seed, epoch])
    permutation = rng.permutation(n).tolist()
    chunk = batch_size * chunk_batches
    batches = []
    for c in range(0, n, chunk):
        part = sorted(permutation[c:c + chunk], key=lambda i: lengths[i])
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches)).tolist()]
