"""ModernBERT's self-attention: one fused Wqkv, rotary positions, global or sliding-window (local) attention.

Rotary positions rotate each head's query and key by an angle per (position, frequency); a layer's base
(``global_rope_theta`` or ``local_rope_theta``) sets the frequencies. A local layer lets a token see the tokens
at most ``local_attention // 2`` positions away. Both run on a padded (B, T) batch with a boolean mask, or on the
packed real tokens of ``model/unpadded.py`` (attention within each sequence).
"""

from __future__ import annotations

import torch
from torch import nn

from bertforge.model.dropout import Dropout, scaled_dot_product_attention
from bertforge.model.modernbert.config import ModernBertConfig
from bertforge.model.unpadded import Unpadded, attention


def rotary(positions: torch.Tensor, head_dim: int, base: float, dtype: torch.dtype
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, (..., D), of ``positions`` (...,) for the rotary base ``base`` (computed in float32)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float, device=positions.device) / head_dim))
    freqs = positions[..., None].float() * inv_freq  # (..., D / 2)
    angles = torch.cat([freqs, freqs], dim=-1)  # (..., D)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary positions applied to x (..., T, A, D) or packed (N, A, D); cos, sin (..., T, D) or (N, D)."""
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)  # broadcast over the heads
    xf = x.float()
    half = x.shape[-1] // 2
    rotated = torch.cat([-xf[..., half:], xf[..., :half]], dim=-1)
    return (xf * cos + rotated * sin).to(x.dtype)


def window_mask(length: int, half: int, device: torch.device) -> torch.Tensor:
    """(T, T) bool: True where query i may see key j in a local layer, |i - j| <= half."""
    pos = torch.arange(length, device=device)
    return (pos[:, None] - pos[None, :]).abs() <= half


class ModernBertAttention(nn.Module):
    """Wqkv -> rotary -> attention (global, or within the window) -> Wo -> dropout. No residual, no norm:
    the layer adds those (pre-norm)."""

    def __init__(self, config: ModernBertConfig, is_global: bool):
        super().__init__()
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.half_window = None if is_global else config.sliding_window
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.attention_bias)
        self.Wo = nn.Linear(config.hidden_size, config.hidden_size, bias=config.attention_bias)
        self.dropout_p = config.attention_dropout
        self.dropout = Dropout(config.attention_dropout)  # of the probabilities, on the explicit path
        self.out_drop = Dropout(config.attention_dropout) if config.attention_dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | Unpadded | None,
                output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        # x: (B, T, H), cos/sin: (B or 1, T, D), mask: bool (B or 1, 1, 1 or T, T), True = may attend, or None.
        # Unpadded (mask is the layout): x (N, H) packed real tokens, cos/sin (N, D).
        A, D = self.num_heads, self.head_dim
        qkv = self.Wqkv(x).view(*x.shape[:-1], 3, A, D)  # (..., 3, A, D)
        q, k, v = qkv.unbind(dim=-3)  # (B, T, A, D) or (N, A, D)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        p = self.dropout_p if self.training else 0.0
        probs = None
        if isinstance(mask, Unpadded):
            if self.half_window is None:
                context = attention(q, k, v, mask, p)
            else:
                context = local_attention(q, k, v, mask, self.half_window, p)
            context = context.flatten(1)  # (N, H)
        else:
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, A, T, D)
            if output_attentions:  # the explicit path, so the probabilities can be returned
                scores = (q * D ** -0.5) @ k.transpose(-1, -2)  # (B, A, T, T)
                if mask is not None:
                    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
                probs = scores.softmax(dim=-1)
                context = self.dropout(probs) @ v
            else:
                context = scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            context = context.transpose(1, 2).flatten(2)  # (B, T, H)
        return self.out_drop(self.Wo(context)), probs


def local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: Unpadded, half: int,
                    dropout_p: float = 0.0) -> torch.Tensor:
    """Sliding-window attention of packed rows (N, A, D) within their own sequence, |i - j| <= half.

    The sequences are grouped by length (``Unpadded.buckets``) and each group padded to its longest, as
    ``unpadded.attention``'s "bucket" variant does, with the window added to each group's key mask. A padding
    slot may also see itself, so no query is left with no key (its output is dropped)."""
    plan = layout.buckets
    outputs = []
    for bucket, *qkv in zip(plan.buckets, *(x.index_select(0, plan.rows).split(plan.sizes) for x in (q, k, v))):
        G, L = bucket.shape
        qb, kb, vb = (x.view(G, L, *x.shape[1:]).transpose(1, 2) for x in qkv)  # (G, A, L, D)
        mask = None
        if L > half + 1:  # else the window covers the whole group
            mask = window_mask(L, half, q.device)  # (L, L)
        if bucket.key_mask is not None:
            own = torch.eye(L, dtype=torch.bool, device=q.device)
            mask = bucket.key_mask if mask is None else (bucket.key_mask & mask) | own  # (G, 1, L, L)
        out = scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, dropout_p=dropout_p)  # (G, A, L, D)
        outputs.append(out.transpose(1, 2).flatten(0, 1))  # (G * L, A, D)
    return torch.cat(outputs).index_select(0, plan.slots)
