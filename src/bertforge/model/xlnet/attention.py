"""XLNet's two-stream self-attention with Transformer-XL relative positions and relative segments.

The content stream h (B, T, H) attends over memory + itself like an ordinary encoder. The query stream
g (B, N, H) holds one vector per *prediction target*: same weights, same keys and values (from h), but
its query never includes the target's own token. The score of query i for key j is

    ((q_i + r_w_bias) . k_j  +  (q_i + r_r_bias) . r_{i-j}  +  (q_i + r_s_bias) . s_ij) / sqrt(d_head)

with r_{i-j} a projected sinusoid of the relative distance and s_ij one of two learned vectors (same
segment or not). Unlike transformers, which scatters the N targets back to all T positions, the query
stream here is computed only at the targets: identical numbers, N/T of the work.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bertforge.model.dropout import Dropout
from bertforge.model.xlnet.config import XLNetConfig


@dataclass
class AttentionInputs:
    """What every layer needs besides the hidden states, built once per forward pass."""
    pos_emb: torch.Tensor  # (P, R, H) sinusoids of distances K..-T+1; P = 2 with bi_data, else 1
    mask_h: torch.Tensor | None  # (B, 1, T, K) bool, True = may not attend (content stream)
    seg_h: torch.Tensor | None  # (B, 1, T, K) bool, True = key in another segment; None: no segments
    target_pos: torch.Tensor | None = None  # (B, N) position of each prediction target
    target_on: torch.Tensor | None = None  # (B, 1, N, 1) 1.0 for real targets, 0.0 for padding rows
    mask_g: torch.Tensor | None = None  # (B, 1, N, K) query-stream rows of the mask
    seg_g: torch.Tensor | None = None  # (B, 1, N, K)


def relative_positions(qlen: int, klen: int, d_model: int, clamp_len: int, bi_data: bool,
                       device: torch.device) -> torch.Tensor:
    """Sinusoids of the distances klen, klen-1, ..., -qlen+1: (P, klen + qlen, d_model), float32.

    Query i (absolute position klen - qlen + i) meets key j at distance klen - qlen + i - j, the row
    ``klen - (j + qlen - i)`` of this table: see :func:`rel_shift`. With bi_data a second table holds
    the negated distances (the backward-reading half of the batch).
    """
    inv_freq = 1 / torch.pow(10000, torch.arange(0, d_model, 2, device=device).float() / d_model)
    fwd = torch.arange(klen, -qlen, -1, device=device).float()  # (R,)
    seqs = [fwd, -fwd] if bi_data else [fwd]
    if clamp_len > 0:
        seqs = [s.clamp(-clamp_len, clamp_len) for s in seqs]
    angles = torch.stack(seqs)[:, :, None] * inv_freq  # (P, R, H/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (P, R, H)


def rel_shift(x: torch.Tensor, klen: int) -> torch.Tensor:
    """(..., T, klen + T) scores per distance row -> (..., T, klen) per key: out[i, j] = x[i, j + T - i].

    Transformer-XL's shift as pure views: row i of the flattened tail starts i * (R - 1) + T in."""
    T, R = x.shape[-2:]
    return x.flatten(-2)[..., T:].unflatten(-1, (T, R - 1))[..., :klen]


def rel_gather(x: torch.Tensor, pos: torch.Tensor, klen: int) -> torch.Tensor:
    """As rel_shift for queries at arbitrary positions pos (B, N): x (B, A, N, R) -> (B, A, N, klen)."""
    B, A, N, R = x.shape
    T = R - klen
    idx = torch.arange(klen, device=x.device) + (T - pos)[..., None]  # (B, N, K)
    return x.gather(-1, idx[:, None].expand(B, A, N, klen))


class RelativeAttention(nn.Module):
    """Both streams of one layer's attention, then projection, residual and post-LayerNorm.

    Weights are stored as transformers stores them: q, k, v, o, r of shape (H, A, D)."""

    def __init__(self, config: XLNetConfig):
        super().__init__()
        H, A, D = config.d_model, config.n_head, config.d_head
        self.n_head, self.d_head, self.scale = A, D, D ** -0.5
        for name in ("q", "k", "v", "o", "r"):
            setattr(self, name, nn.Parameter(torch.empty(H, A, D)))
        self.r_r_bias = nn.Parameter(torch.empty(A, D))
        self.r_s_bias = nn.Parameter(torch.empty(A, D))
        self.r_w_bias = nn.Parameter(torch.empty(A, D))
        self.seg_embed = nn.Parameter(torch.empty(2, A, D))
        self.layer_norm = nn.LayerNorm(H, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.dropout)

    def _heads(self, x: torch.Tensor, *weights: torch.Tensor) -> list[torch.Tensor]:
        """x (B, L, H) through one fused matmul -> one (B, A, L, D) per weight."""
        B, L, H = x.shape
        w = torch.cat([w.reshape(H, -1) for w in weights], dim=1)  # (H, len(weights) * A * D)
        y = (x @ w).view(B, L, len(weights), self.n_head, self.d_head)
        return list(y.permute(2, 0, 3, 1, 4).unbind(0))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_r: torch.Tensor,
                seg: torch.Tensor | None, mask: torch.Tensor | None,
                pos: torch.Tensor | None) -> torch.Tensor:
        # q: (B, A, S, D) queries; k, v: (B, A, K, D); k_r: (P, A, R, D); pos: (B, S) or None (S = T).
        K = k.shape[2]
        ac = (q + self.r_w_bias[:, None]) @ k.transpose(-1, -2)  # (B, A, S, K)
        bd = (q + self.r_r_bias[:, None]) @ k_r.transpose(-1, -2)  # (B, A, S, R)
        bd = rel_shift(bd, K) if pos is None else rel_gather(bd, pos, K)
        score = ac + bd
        if seg is not None:
            ef = (q + self.r_s_bias[:, None]) @ self.seg_embed.permute(1, 2, 0)  # (B, A, S, 2)
            score = score + torch.where(seg, ef[..., 1:], ef[..., :1])
        score = score * self.scale
        if mask is not None:  # as transformers: a row with nothing visible attends uniformly
            score = score.masked_fill(mask, max(-1e30, torch.finfo(score.dtype).min))
        prob = self.dropout(score.softmax(dim=-1))
        return prob @ v  # (B, A, S, D)

    def _output(self, vec: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        B, A, S, D = vec.shape
        out = vec.transpose(1, 2).reshape(B, S, A * D) @ self.o.reshape(-1, A * D).t()  # (B, S, H)
        return self.layer_norm(self.dropout(out) + residual)

    def forward(self, h: torch.Tensor, g: torch.Tensor | None, mem: torch.Tensor | None,
                inputs: AttentionInputs) -> tuple[torch.Tensor, torch.Tensor | None]:
        # h: (B, T, H) content stream; g: (B, N, H) query stream or None; mem: (B, M, H) or None.
        if mem is None:
            q, k, v = self._heads(h, self.q, self.k, self.v)
        else:
            (q,) = self._heads(h, self.q)
            k, v = self._heads(torch.cat([mem, h], dim=1), self.k, self.v)  # (B, A, K, D)
        P, R, H = inputs.pos_emb.shape
        k_r = (inputs.pos_emb @ self.r.reshape(H, -1)).view(P, R, self.n_head, self.d_head).transpose(1, 2)
        if P > 1:  # bi_data: forward distances for the first half of the batch, backward for the second
            k_r = k_r.repeat_interleave(h.shape[0] // P, dim=0)  # (B, A, R, D)
        h_out = self._output(self._attend(q, k, v, k_r, inputs.seg_h, inputs.mask_h, None), h)
        if g is None:
            return h_out, None
        (q_g,) = self._heads(g, self.q)
        vec_g = self._attend(q_g, k, v, k_r, inputs.seg_g, inputs.mask_g, inputs.target_pos)
        return h_out, self._output(vec_g * inputs.target_on, g)
