"""Stream batches of masked pre-training instances from a prepared corpus.

Every batch is a pure function of (seed, step, rank): the instance order of an epoch is a seeded
permutation, and each instance's mask is drawn from a generator seeded by (seed, epoch, index)
(dynamic masking; ``static_masks=True`` drops the epoch, so an instance keeps its mask). So a
resumed run sees exactly the batches an uninterrupted one would, and DDP ranks that split a global
batch see exactly the instances and masks of the undivided batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bertforge.data.masking import SpecialIds, mask_tokens
from bertforge.data.prepare import ARRAYS, read_meta, shard_path


class InstanceStore:
    """One split of a prepared corpus, memory-mapped: random access to instances by global index."""

    def __init__(self, directory: str | Path, split: str = "train"):
        self.directory = Path(directory)
        meta = read_meta(self.directory)
        self.meta = meta
        counts = meta["shards"][split]
        self.shards = [{name: np.load(shard_path(self.directory, split, i, name), mmap_mode="r")
                        for name in ARRAYS} for i, n in enumerate(counts) if n]
        self.offsets = np.cumsum([0] + [n for n in counts if n])
        self.max_seq_length = meta["settings"]["max_seq_length"]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def rows(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Arrays of the instances at ``indices`` (in that order)."""
        shard_of = np.searchsorted(self.offsets, indices, side="right") - 1
        out = {name: [] for name in ARRAYS}
        for i, s in zip(indices, shard_of):
            local = int(i - self.offsets[s])
            for name in ARRAYS:
                out[name].append(self.shards[s][name][local])
        return {name: np.stack(values) for name, values in out.items()}


@dataclass(frozen=True)
class MaskingSettings:
    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    whole_word: bool = False
    static_masks: bool = False


@dataclass(frozen=True)
class Masker:
    """Turns stored instances into masked batches; each instance's mask is seeded by (seed, epoch, index)."""

    special: SpecialIds
    settings: MaskingSettings
    seed: int
    is_continuation: np.ndarray | None = None  # (V,) bool, for whole-word masking

    def assemble(self, store: InstanceStore, indices: np.ndarray, epoch: int) -> dict[str, torch.Tensor]:
        """A padded batch of the instances at ``indices``; ``epoch`` -1 is reserved for evaluation."""
        rows = store.rows(indices)
        width = int(rows["lengths"].max())
        B = len(indices)
        input_ids = np.full((B, width), self.special.pad, dtype=np.int64)
        labels = np.full((B, width), -100, dtype=np.int64)
        mask_epoch = 0 if self.settings.static_masks and epoch >= 0 else epoch
        for r, (i, n) in enumerate(zip(indices, rows["lengths"])):
            rng = np.random.default_rng([self.seed, mask_epoch + 1, int(i)])
            masked = mask_tokens(rows["tokens"][r, :n], self.special, self.settings.masked_lm_prob,
                                 self.settings.max_predictions_per_seq, rng=rng,
                                 whole_word=self.settings.whole_word, is_continuation=self.is_continuation)
            input_ids[r, :n] = masked.input_ids
            labels[r, :n] = masked.labels
        positions = np.arange(width)[None, :]
        lengths, b_start = rows["lengths"][:, None].astype(np.int64), rows["b_start"][:, None]
        return {
            "input_ids": torch.from_numpy(input_ids),
            "token_type_ids": torch.from_numpy(((positions >= b_start) & (positions < lengths)).astype(np.int64)),
            "attention_mask": torch.from_numpy((positions < lengths).astype(np.int64)),
            "labels": torch.from_numpy(labels),
            "next_sentence_label": torch.from_numpy(rows["is_random_next"].astype(np.int64)),
        }


class PretrainingBatches:
    """The training stream: micro-batch ``micro`` of ``rank`` at optimizer step ``step``."""

    def __init__(self, store: InstanceStore, masker: Masker, micro_batch_size: int, grad_accum: int = 1,
                 world_size: int = 1):
        self.store, self.masker = store, masker
        self.micro_batch_size, self.grad_accum, self.world_size = micro_batch_size, grad_accum, world_size
        self.global_batch_size = micro_batch_size * grad_accum * world_size
        if len(store) < self.global_batch_size:
            raise ValueError(f"the prepared corpus has {len(store)} training instances, fewer than one "
                             f"global batch ({self.global_batch_size}); use more text or a smaller batch")
        self.steps_per_epoch = len(store) // self.global_batch_size  # the last partial batch is dropped
        self._order_cache: tuple[int, np.ndarray] | None = None

    def _order(self, epoch: int) -> np.ndarray:
        if self._order_cache is None or self._order_cache[0] != epoch:
            self._order_cache = (epoch, np.random.default_rng([self.masker.seed, epoch]).permutation(len(self.store)))
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
        return self.masker.assemble(self.store, self.indices(step, micro, rank), self.position(step)[0])


def eval_batches(store: InstanceStore, masker: Masker, batch_size: int, max_instances: int
                 ) -> list[dict[str, torch.Tensor]]:
    """Fixed held-out batches with fixed masks, so evaluations are comparable across steps."""
    n = min(len(store), max_instances)
    return [masker.assemble(store, np.arange(i, min(i + batch_size, n)), epoch=-1)
            for i in range(0, n, batch_size)]


def continuation_mask(vocab: dict[str, int]) -> np.ndarray:
    """(V,) bool: True for ``##`` pieces, for whole-word masking."""
    out = np.zeros(len(vocab), dtype=bool)
    for token, i in vocab.items():
        out[i] = token.startswith("##")
    return out
