"""Stream batches of pre-training instances from a prepared corpus.

Every batch is a pure function of (seed, step, rank): the instance order of an epoch is a seeded
permutation, and the objective corrupts each instance with a generator seeded by (seed, epoch,
index) (see ``objectives/``). So a resumed run sees exactly the batches an uninterrupted one would,
and DDP ranks that split a global batch see exactly the instances and corruption of the undivided
batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from bertforge.data.prepare import ARRAYS, CONTINUES, read_meta, shard_path
from bertforge.errors import DataFormatError

if TYPE_CHECKING:
    from bertforge.objectives import Objective


class InstanceStore:
    """One split of a prepared corpus, memory-mapped: random access to instances by global index.

    A corpus prepared with ``segment_words`` also has ``continues``, (n, T) bool in ``rows``: the piece
    continues the word of the piece before it (stored as packed bits)."""

    def __init__(self, directory: str | Path, split: str = "train"):
        self.directory = Path(directory)
        meta = read_meta(self.directory)
        self.meta = meta
        counts = meta["shards"][split]
        self.arrays = ARRAYS + ((CONTINUES,) if "words" in meta else ())
        self.shards = [{name: np.load(shard_path(self.directory, split, i, name), mmap_mode="r")
                        for name in self.arrays} for i, n in enumerate(counts) if n]
        self.offsets = np.cumsum([0] + [n for n in counts if n])
        self.max_seq_length = meta["settings"]["max_seq_length"]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def rows(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Arrays of the instances at ``indices`` (in that order)."""
        shard_of = np.searchsorted(self.offsets, indices, side="right") - 1
        out = {name: [] for name in self.arrays}
        for i, s in zip(indices, shard_of):
            local = int(i - self.offsets[s])
            for name in self.arrays:
                out[name].append(self.shards[s][name][local])
        rows = {name: np.stack(values) for name, values in out.items()}
        if CONTINUES in rows:  # (B, ceil(T / 8)) packed -> (B, T) bool
            rows[CONTINUES] = np.unpackbits(rows[CONTINUES], axis=1, count=self.max_seq_length).astype(bool)
        return rows


class PretrainingBatches:
    """The training stream: micro-batch ``micro`` of ``rank`` at optimizer step ``step``."""

    def __init__(self, store: InstanceStore, objective: Objective, micro_batch_size: int, grad_accum: int = 1,
                 world_size: int = 1):
        self.store, self.objective = store, objective
        self.micro_batch_size, self.grad_accum, self.world_size = micro_batch_size, grad_accum, world_size
        self.global_batch_size = micro_batch_size * grad_accum * world_size
        if len(store) < self.global_batch_size:
            raise DataFormatError(f"the prepared corpus has {len(store)} training instances, fewer than one "
                                  f"global batch ({self.global_batch_size})", path=store.directory,
                                  hint="use more text or a smaller --batch-size / --grad-accum")
        self.steps_per_epoch = len(store) // self.global_batch_size  # the last partial batch is dropped
        self._order_cache: tuple[int, np.ndarray] | None = None

    def _order(self, epoch: int) -> np.ndarray:
        if self._order_cache is None or self._order_cache[0] != epoch:
            self._order_cache = (epoch, np.random.default_rng([self.objective.seed, epoch]).permutation(len(self.store)))
        return self._order_cache[1]

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, step within epoch) of an optimizer step."""
        return divmod(step, self.steps_per_epoch)

    def indices(self, step: int, micro: int, rank: int) -> np.ndarray:
        """Instances of micro-batch ``micro`` on ``rank`` at optimizer ``step``."""
        epoch, k = self.position(step)
        global_batch = self._order(epoch)[k * self.global_batch_size:(k + 1) * self.global_batch_size]
        part = (micro * self.world_size + rank) * self.micro_batch_size
        return global_batch[part:part + self.micro_batch_size]

    def batch(self, step: int, micro: int = 0, rank: int = 0) -> dict[str, torch.Tensor]:
        indices = self.indices(step, micro, rank)
        return self.objective.make_batch(self.store.rows(indices), indices, self.position(step)[0])


def eval_batches(store: InstanceStore, objective: Objective, batch_size: int, max_instances: int
                 ) -> list[dict[str, torch.Tensor]]:
    """Fixed held-out batches with fixed corruption, so evaluations are comparable across steps."""
    n = min(len(store), max_instances)
    batches = []
    for i in range(0, n, batch_size):
        indices = np.arange(i, min(i + batch_size, n))
        batches.append(objective.make_batch(store.rows(indices), indices, epoch=-1))
    return batches
