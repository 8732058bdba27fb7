"""RoFormer's self-attention: BERT's, with each query and key (and value, with ``rotary_value``) turned by its
token's position (rotary position embedding, Su et al. 2021).

RoFormer's convention (transformers' ``apply_rotary_position_embeddings``) turns interleaved pairs: dimensions
(2i, 2i + 1) of a head by the angle p * 10000^(-2i/D) at position p. The angles come from one sinusoid table per
model, held as transformers holds it (``encoder.embed_positions.weight``, sin in the first half of a row and cos
in the second), so checkpoints carry it both ways; it is a buffer, never trained. A query and a key then score
by their relative position alone, so the model needs no position table of its own.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from bertforge.model.attention import BertSelfAttention
from bertforge.model.roformer.config import RoFormerConfig
from bertforge.model.unpadded import Unpadded


def sinusoid_table(positions: int, head_size: int) -> torch.Tensor:
    """(positions, D) float32: row p is sin(p * w_i) for the D / 2 frequencies w_i = 10000^(-2i/D), then cos(p * w_i);
    computed in float64 and rounded once, as transformers' numpy table is."""
    inv = 10000.0 ** (torch.arange(0, head_size, 2, dtype=torch.float64) / head_size)  # (D / 2,)
    angles = torch.arange(positions, dtype=torch.float64)[:, None] / inv  # (P, D / 2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).float()


class SinusoidalPositions(nn.Module):
    """The sinusoid table as a buffer named ``weight`` (transformers' name), and its rows by position."""

    def __init__(self, positions: int, head_size: int):
        super().__init__()
        self.register_buffer("weight", sinusoid_table(positions, head_size))  # (P, D): saved, loaded, not trained

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sin and cos of each position's angles: (..., D / 2) each for ``positions`` (...,)."""
        return self.weight[positions].chunk(2, dim=-1)


def rotate(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """x (..., D) with each pair (x[2i], x[2i + 1]) turned by the angle whose sin and cos (..., D / 2) are given
    (broadcast), computed in float32 and returned in x's dtype."""
    even, odd = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # (..., D / 2) each
    return torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1).flatten(-2).to(x.dtype)


class RoFormerSelfAttention(BertSelfAttention):
    """BERT's self-attention (weights, masks, the padded and the unpadded paths) with rotary positions.

    ``angles`` is the encoder's ``SinusoidalPositions`` forward, held as a bound method so the table is one buffer
    of the model (not one per layer) under transformers' name."""

    def __init__(self, config: RoFormerConfig, angles: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]):
        super().__init__(config)
        self.angles = angles
        self.rotary_value = config.rotary_value

    def with_positions(self, q, k, v, mask, query_positions):
        """Turn q, k (and v) by their tokens' positions: 0..T-1 in a padded batch (the queries at
        ``query_positions`` when those are a subset), each packed token's place in its sequence when unpadded."""
        if isinstance(mask, Unpadded):  # rows (N, A, D): one angle per row, shared by the heads
            key_angles = [a.unsqueeze(-2) for a in self.angles(mask.indices % mask.width)]  # (N, 1, D / 2)
            query_angles = key_angles
            if query_positions is not None:
                query_angles = [a.unsqueeze(-2) for a in self.angles(query_positions.flatten())]  # (B * S, 1, D / 2)
        else:  # (B, A, T, D)
            key_angles = self.angles(torch.arange(k.shape[-2], device=k.device))  # (T, D / 2)
            query_angles = key_angles
            if query_positions is not None:
                query_angles = [a.unsqueeze(1) for a in self.angles(query_positions)]  # (B, 1, S, D / 2)
            elif q.shape[-2] != k.shape[-2]:
                raise ValueError("queries at a subset of the positions need their query_positions")
        q, k = rotate(q, *query_angles), rotate(k, *key_angles)
        return q, k, rotate(v, *key_angles) if self.rotary_value else v
