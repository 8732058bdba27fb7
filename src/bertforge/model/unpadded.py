"""Running the encoder on the real tokens only (MosaicBERT's unpadding, without a kernel library).

A right-padded batch (B, T) holds N <= B * T real tokens. ``unpad_input`` gathers them once into (N, ...)
rows; embeddings, every Linear, LayerNorm, GELU and residual then run on those N rows, attention runs within
each sequence (``attention``: per sequence, or per bucket of similar lengths), and ``pad_output`` scatters the
result back to (B, T, ...) where a head needs it (zeros at the padding). The weights are the same modules:
nothing but the row layout changes.

Which rows are real is a host fact (the row lengths), known where the batch was made. ``to_device`` keeps a
host copy of a tensor's values when it moves the tensor, so the model reads lengths (and checks ids) without
waiting for the device; a tensor without one is read only where that is free (on the CPU) or allowed (not in
a training step).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bertforge.model.dropout import scaled_dot_product_attention

_HOST = "_bertforge_host"  # the attribute holding a tensor's host copy (an ndarray of its values)
_NUMPY_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
                 torch.float32, torch.float64)

# Attention over packed rows, by device type: "loop" (SDPA per sequence), "bucket" (sequences of similar length
# grouped, one SDPA per group padded to its longest: ``Unpadded.buckets``), "repad" (scatter q, k, v back to
# (B, A, T, D), one masked SDPA, gather the real rows), or "jagged" (nested jagged tensors: SDPA's varlen flash
# and memory-efficient kernels on CUDA; not causal). On CPU "bucket" is the fastest in training, where it makes
# ~6 calls a layer instead of 32 for a batch of SNLI pairs, each with the dropout of model/dropout.py
# (benchmarks/finetune.py --attention times them: docs/speed.md). On CUDA repad is the tested default;
# benchmarks/gpu.py times all.
ATTENTION = {"cpu": "bucket", "cuda": "repad"}
BUCKET_RATIO = 0.7  # "bucket": a bucket's shortest sequence is at least this share of its longest


# --- host facts ------------------------------------------------------------------------------------------

def to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``t`` on ``device``; where reading it there would wait for the device, it carries a copy of its values
    as they are on the host now, for ``host_values``."""
    moved = t.to(device, non_blocking=True)
    if t.device.type == "cpu" and t.dtype in _NUMPY_DTYPES and not free_to_read(moved):
        setattr(moved, _HOST, t.detach().numpy().copy())
    return moved


def free_to_read(t: torch.Tensor) -> bool:
    """Whether reading ``t``'s values costs no device synchronisation (it lives in host memory)."""
    return t.device.type == "cpu"


def host_values(t: torch.Tensor, read: bool = False) -> np.ndarray | None:
    """The values of ``t`` on the host: the tensor itself where reading it is free, else its host copy
    (``to_device``), else the tensor read from the device if ``read`` allows waiting; None otherwise (the
    caller then does without)."""
    if not read and torch.compiler.is_compiling():
        return None  # a compiled graph must not depend on this batch's values
    if free_to_read(t):
        return t.detach().numpy()
    host = getattr(t, _HOST, None)
    if isinstance(host, np.ndarray) and host.shape == tuple(t.shape):
        return host
    return t.detach().cpu().numpy() if read else None


def prefix_lengths(mask: np.ndarray) -> np.ndarray | None:
    """Row lengths of a (B, T) 0/1 mask whose rows are right-padded (ones, then zeros); None for any other
    layout (left padding, holes), which only the padded path handles."""
    real = mask != 0
    lengths = real.sum(1)
    if not np.array_equal(real, np.arange(real.shape[1])[None, :] < lengths[:, None]):
        return None
    return lengths


# --- the layout --------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Unpadded:
    """Where the real tokens of a right-padded (B, T) batch are, once packed into N rows."""

    indices: torch.Tensor  # (N,) int64: the flat position b * T + t of each real token, row-major
    cu_seqlens: torch.Tensor  # (B + 1,) int64: sequence b is packed rows cu_seqlens[b]:cu_seqlens[b + 1]
    lengths: tuple[int, ...]  # (B,) on the host
    width: int  # T
    key_mask: torch.Tensor  # (B, T) bool: True at the real tokens
    causal: bool = False  # each token attends to itself and the tokens before it (is_decoder)

    @property
    def batch(self) -> int:
        return len(self.lengths)

    @property
    def max_seqlen(self) -> int:
        return max(self.lengths, default=0)

    @functools.cached_property
    def buckets(self) -> Buckets:
        """The sequences in groups of similar length, for ``attention``'s "bucket" variant (made once a batch)."""
        return length_buckets(self.lengths, self.cu_seqlens.device)


@dataclass(frozen=True, eq=False)
class Bucket:
    """G sequences, each padded to the longest (L)."""

    shape: tuple[int, int]  # (G, L)
    key_mask: torch.Tensor | None  # (G, 1, 1, L) bool, True at real keys; None: no padding


@dataclass(frozen=True, eq=False)
class Buckets:
    """The buckets' (G, L) slots one after another, S in all: which packed row fills each, and back.

    One gather (``rows``) and one scatter back (``slots``) a tensor for all buckets: their backward is one
    zero-filled (N, ...) gradient, not one per bucket."""

    buckets: tuple[Bucket, ...]
    rows: torch.Tensor  # (S,) the packed row at each slot (a padding slot repeats its sequence's first row)
    slots: torch.Tensor  # (N,) the slot that holds packed row n

    @property
    def sizes(self) -> list[int]:
        return [G * L for G, L in (b.shape for b in self.buckets)]


def length_buckets(lengths: Sequence[int], device: torch.device | str, ratio: float = BUCKET_RATIO) -> Buckets:
    """Sequences sorted by length, longest first, cut into buckets where the shortest is at least ``ratio`` of
    the longest (so padding is under 1 - ratio of a bucket's slots). Made on the host."""
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    order = np.argsort(-lengths, kind="stable")
    on_device = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device, non_blocking=True)
    buckets, rows, real_slots, first = [], [], [], 0
    while first < len(order):
        longest = int(lengths[order[first]])
        last = first
        while last + 1 < len(order) and lengths[order[last + 1]] >= ratio * longest:
            last += 1
        members, first = order[first:last + 1], last + 1
        real = np.arange(longest)[None, :] < lengths[members, None]  # (G, L)
        rows.append((starts[members, None] + np.where(real, np.arange(longest)[None, :], 0)).reshape(-1))
        real_slots.append(real.reshape(-1))
        buckets.append(Bucket((len(members), longest), None if real.all() else on_device(real[:, None, None, :])))
    rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    real = np.concatenate(real_slots) if real_slots else np.zeros(0, bool)
    slots = np.empty(int(lengths.sum()), np.int64)
    slots[rows[real]] = np.flatnonzero(real)
    return Buckets(tuple(buckets), on_device(rows), on_device(slots))


def unpadding(lengths: Sequence[int], width: int, device: torch.device | str, causal: bool = False) -> Unpadded:
    """The layout of a batch whose row b holds ``lengths[b]`` real tokens followed by padding up to ``width``
    (made on the host and copied: no device synchronisation)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    real = np.arange(width)[None, :] < lengths[:, None]  # (B, T)
    indices, cu_seqlens = np.flatnonzero(real), np.concatenate([[0], np.cumsum(lengths)])
    on_device = lambda a: torch.from_numpy(a).to(device, non_blocking=True)
    return Unpadded(on_device(indices), on_device(cu_seqlens), tuple(int(n) for n in lengths), int(width),
                    on_device(real), causal)


def unpad_input(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """(B, T, ...) -> (N, ...): the rows of ``x`` at the real tokens, in row-major order."""
    return x.flatten(0, 1).index_select(0, indices)


def pad_output(x: torch.Tensor, indices: torch.Tensor, batch: int, width: int) -> torch.Tensor:
    """(N, ...) -> (B, T, ...): ``x`` back at its positions, zeros at the padding (``unpad_input``'s inverse)."""
    out = x.new_zeros(batch * width, *x.shape[1:])
    return out.index_copy(0, indices, x).view(batch, width, *x.shape[1:])


def packed_rows(layout: Unpadded, positions: torch.Tensor) -> torch.Tensor:
    """(B, S) positions within each sequence -> (B * S,) packed row indices."""
    return (layout.cu_seqlens[:-1, None] + positions).flatten()


# --- attention ---------------------------------------------------------------------------------------------

def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: Unpadded, dropout_p: float = 0.0,
              query_positions: torch.Tensor | None = None, variant: str | None = None) -> torch.Tensor:
    """Scaled dot-product attention of packed rows within their own sequence.

    q, k, v: (N, A, D) packed; returns (N, A, D). With ``query_positions`` (B, S), q is (B * S, A, D): S query
    rows per sequence (at those positions), keys and values still every real token; returns (B * S, A, D).
    ``variant``: see ``ATTENTION`` (default: the device's).
    """
    variant = variant or ATTENTION.get(q.device.type, "repad")
    if query_positions is not None or variant == "repad" or (variant == "jagged" and layout.causal):
        return _repad_attention(q, k, v, layout, dropout_p, query_positions)
    if variant == "loop":
        return _loop_attention(q, k, v, layout, dropout_p)
    if variant == "bucket":
        return _bucket_attention(q, k, v, layout, dropout_p)
    if variant == "jagged":
        return _jagged_attention(q, k, v, layout, dropout_p)
    raise ValueError(f"unknown attention variant {variant!r}; expected loop, bucket, repad or jagged")


def _repad_attention(q, k, v, layout: Unpadded, dropout_p: float, query_positions: torch.Tensor | None):
    """One masked SDPA over (B, A, T, D): q, k, v scattered back to their padded positions."""
    B, T = layout.batch, layout.width
    heads = lambda x: pad_output(x, layout.indices, B, T).transpose(1, 2)  # (B, A, T, D)
    mask = layout.key_mask[:, None, None, :]  # (B, 1, 1, T)
    if query_positions is None:
        query = heads(q)
        rows = torch.arange(T, device=q.device)[None, :, None]  # (1, T, 1): each query's position
    else:
        S = query_positions.shape[1]
        query = q.view(B, S, *q.shape[1:]).transpose(1, 2)  # (B, A, S, D)
        rows = query_positions[:, :, None]  # (B, S, 1)
    if layout.causal:
        mask = mask & (torch.arange(T, device=q.device)[None, None, :] <= rows)[:, None]  # (B, 1, S or T, T)
    context = scaled_dot_product_attention(query, heads(k), heads(v), attn_mask=mask, dropout_p=dropout_p)
    context = context.transpose(1, 2)  # (B, S or T, A, D)
    if query_positions is None:
        return unpad_input(context, layout.indices)
    return context.flatten(0, 1)


def _loop_attention(q, k, v, layout: Unpadded, dropout_p: float):
    """SDPA per sequence (no mask, or the causal rule): B small calls.

    Each call is 4-D, (1, A, L, D): PyTorch's fused CPU kernel takes only 4-D inputs, and 3-D ones fall back to
    the unfused math path (MiniLM, 12 heads, 14 tokens: 48 us a call against 80)."""
    outputs = []
    for qs, ks, vs in zip(*(x.split(layout.lengths) for x in (q, k, v))):
        out = scaled_dot_product_attention(qs.transpose(0, 1)[None], ks.transpose(0, 1)[None],
                                           vs.transpose(0, 1)[None], dropout_p=dropout_p,
                                           is_causal=layout.causal)  # (1, A, L, D)
        outputs.append(out[0].transpose(0, 1))
    return torch.cat(outputs)


def _bucket_attention(q, k, v, layout: Unpadded, dropout_p: float):
    """One SDPA per bucket of similar lengths (``Unpadded.buckets``), each padded to its longest sequence."""
    plan = layout.buckets
    outputs = []
    for bucket, *qkv in zip(plan.buckets, *(x.index_select(0, plan.rows).split(plan.sizes) for x in (q, k, v))):
        G, L = bucket.shape
        qb, kb, vb = (x.view(G, L, *x.shape[1:]).transpose(1, 2) for x in qkv)  # (G, A, L, D)
        out = scaled_dot_product_attention(qb, kb, vb, attn_mask=bucket.key_mask, dropout_p=dropout_p,
                                           is_causal=layout.causal)  # (G, A, L, D)
        outputs.append(out.transpose(1, 2).flatten(0, 1))  # (G * L, A, D)
    return torch.cat(outputs).index_select(0, plan.slots)


def _jagged_attention(q, k, v, layout: Unpadded, dropout_p: float):
    """SDPA on nested jagged tensors (PyTorch's varlen flash / memory-efficient kernels on CUDA; not causal)."""
    lengths = layout.lengths
    nested = [torch.nested.nested_tensor_from_jagged(x, layout.cu_seqlens, min_seqlen=min(lengths, default=0),
                                                     max_seqlen=max(lengths, default=0)).transpose(1, 2)
              for x in (q, k, v)]  # (B, A, j, D)
    out = F.scaled_dot_product_attention(*nested, dropout_p=dropout_p, is_causal=layout.causal)
    return out.transpose(1, 2).values()
