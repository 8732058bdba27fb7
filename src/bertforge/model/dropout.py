"""Dropout that is cheap on the CPU, and attention that uses it.

PyTorch draws a CPU dropout mask with ``bernoulli_``: one float sample per element, a visible share of a
fine-tuning step. Here the mask comes from 16-bit slices of 64-bit random words (``random_`` on int64, one draw
per four elements; torch's own seeded generator, so runs stay reproducible and resumable) compared with a
threshold, about half the cost with the backward (docs/speed.md). An element is dropped with probability
round(p * 65536) / 65536 (p = 0.1: 0.100006), and the kept ones are scaled by the exact inverse of their keep
probability, so the expectation is unchanged. Other devices use PyTorch's fused dropout kernels.

``scaled_dot_product_attention`` is F.scaled_dot_product_attention, except that with dropout on the CPU (where
PyTorch would take its unfused path and ``bernoulli_``) it computes the probabilities itself and drops them here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 1 << 16  # the mask's resolution: a 16-bit uniform sample per element


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """F.dropout(x, p, training), drawn cheaply on the CPU (see the module docstring)."""
    if not training or p == 0.0:
        return x
    if (x.device.type != "cpu" or not x.dtype.is_floating_point or not 0.0 < p < 1.0
            or torch.compiler.is_compiling()):  # a compiled graph fuses torch's own dropout; random_ breaks it
        return F.dropout(x, p, training)
    return _CpuDropout.apply(x, p)


class Dropout(nn.Dropout):
    """nn.Dropout with ``dropout``'s CPU mask (same constructor, same state: none)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def keep_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """A mask shaped and typed as ``x``: 0 where dropped (each element with probability round(p * 65536) /
    65536), 1 / keep elsewhere. Drawn from torch's default generator."""
    numel = x.numel()
    words = torch.empty((numel + 3) // 4, dtype=torch.int64, device=x.device).random_(-(1 << 63), (1 << 63) - 1)
    levels = round(p * _LEVELS)
    samples = words.view(torch.int16)[:numel].view(x.shape)  # uniform on [-32768, 32767]
    return (samples >= levels - _LEVELS // 2).to(x.dtype).mul_(_LEVELS / (_LEVELS - levels))


class _CpuDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        mask = keep_mask(x, p)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False) -> torch.Tensor:
    """F.scaled_dot_product_attention (boolean ``attn_mask``: True = may attend), which also takes ``attn_mask``
    and ``is_causal`` together; with dropout on the CPU the probabilities are computed here and dropped by
    ``dropout``. A query that may attend to nothing gets the mean of the values (F.sdpa's math path gives
    zeros): only padding rows are ever in that case."""
    explicit = dropout_p > 0.0 and q.device.type == "cpu" and not torch.compiler.is_compiling()
    if is_causal and (attn_mask is not None or explicit):  # F.sdpa takes one or the other
        causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
        attn_mask, is_causal = (causal if attn_mask is None else attn_mask & causal), False
    if not explicit:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                                              is_causal=is_causal)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)  # (..., S, T)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, torch.finfo(scores.dtype).min)
    return dropout(scores.softmax(dim=-1), dropout_p) @ v
