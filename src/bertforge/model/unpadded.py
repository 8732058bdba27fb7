"""Running the encoder on the real tokens only (MosaicBERT's unpadding, without a kernel library).

A right-padded batch (B, T) holds N <= B * T real tokens. ``unpad_input`` gathers them once into (N, ...)
rows; embeddings, every Linear, LayerNorm, GELU and residual then run on those N rows, attention runs per
sequence (``attention``), and ``pad_output`` scatters the result back to (B, T, ...) where a head needs it
(zeros at the padding). The weights are the same modules: nothing but the row layout changes.

Which rows are real is a host fact (the row lengths), known where the batch was made. ``to_device`` keeps a
host copy of a tensor's values when it moves the tensor, so the model reads lengths (and checks ids) without
waiting for the device; a tensor without one is read only where that is free (on the CPU) or allowed (not in
a training step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

_HOST = "_bertforge_host"  # the attribute holding a tensor's host copy (an ndarray of its values)
_NUMPY_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
                 torch.float32, torch.float64)

# Attention over packed rows, by device type: "loop" (SDPA per sequence), "repad" (scatter q, k, v back to
# (B, A, T, D), one masked SDPA, gather the real rows), or "jagged" (nested jagged tensors: SDPA's varlen flash
# and memory-efficient kernels on CUDA; not causal). CPU, MiniLM, random SNLI batches of 32 (benchmarks/
# finetune.py --attention, 1 and 2 threads): loop 4-10% faster than repad for training and inference, jagged
# 10-90% slower (a fallback on CPU). On CUDA repad is the tested default; benchmarks/gpu.py times all three.
ATTENTION = {"cpu": "loop", "cuda": "repad"}


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
    if variant == "jagged":
        return _jagged_attention(q, k, v, layout, dropout_p)
    raise ValueError(f"unknown attention variant {variant!r}; expected loop, repad or jagged")


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
    context = F.scaled_dot_product_attention(query, heads(k), heads(v), attn_mask=mask, dropout_p=dropout_p)
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
        out = F.scaled_dot_product_attention(qs.transpose(0, 1)[None], ks.transpose(0, 1)[None],
                                             vs.transpose(0, 1)[None], dropout_p=dropout_p,
                                             is_causal=layout.causal)  # (1, A, L, D)
        outputs.append(out[0].transpose(0, 1))
    return torch.cat(outputs)


def _jagged_attention(q, k, v, layout: Unpadded, dropout_p: float):
    """SDPA on nested jagged tensors (PyTorch's varlen flash / memory-efficient kernels on CUDA; not causal)."""
    lengths = layout.lengths
    nested = [torch.nested.nested_tensor_from_jagged(x, layout.cu_seqlens, min_seqlen=min(lengths, default=0),
                                                     max_seqlen=max(lengths, default=0)).transpose(1, 2)
              for x in (q, k, v)]  # (B, A, j, D)
    out = F.scaled_dot_product_attention(*nested, dropout_p=dropout_p, is_causal=layout.causal)
    return out.transpose(1, 2).values()
