"""Multi-head self-attention (bidirectional), with the residual + post-LayerNorm of the original BERT."""

from __future__ import annotations

import math

import torch
from torch import nn

from bertforge.config import BertConfig
from bertforge.model.dropout import Dropout, scaled_dot_product_attention
from bertforge.model.unpadded import Unpadded, attention


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.head_size
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob
        self.dropout = Dropout(config.attention_probs_dropout_prob)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_size).transpose(1, 2)  # (B, A, T, D)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | Unpadded | None, output_attentions: bool = False,
                queries: torch.Tensor | None = None, query_positions: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # x: (B, T, H); mask: bool, True = may attend: (B, 1, 1, T) padding, (B, 1, T, T) or (B, 1, S, T) causal,
        # or None when every position sees every other.
        # queries: (B, S, H) rows of x that alone need an output (default: all of x), at query_positions (B, S).
        # Unpadded (mask is the layout): x (N, H) packed real tokens; queries (B * S, H) at query_positions (B, S).
        if isinstance(mask, Unpadded):
            A, D = self.num_heads, self.head_size
            q = self.query(x if queries is None else queries).view(-1, A, D)  # (N or B * S, A, D)
            k, v = self.key(x).view(-1, A, D), self.value(x).view(-1, A, D)  # (N, A, D)
            q, k, v = self.with_positions(q, k, v, mask, query_positions)
            context = attention(q, k, v, mask, self.dropout_p if self.training else 0.0, query_positions)
            return context.flatten(1), None
        q = self._heads(self.query(x if queries is None else queries))
        k, v = self._heads(self.key(x)), self._heads(self.value(x))
        q, k, v = self.with_positions(q, k, v, mask, query_positions)
        if output_attentions:  # the explicit path, so the probabilities can be returned
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size)  # (B, A, T, T)
            if mask is not None:
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            probs = scores.softmax(dim=-1)
            context = self.dropout(probs) @ v
        else:
            probs = None
            context = scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                   dropout_p=self.dropout_p if self.training else 0.0)
        B, A, S, D = context.shape
        return context.transpose(1, 2).reshape(B, S, A * D), probs

    def with_positions(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | Unpadded | None,
                       query_positions: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Where a model puts positions into attention itself (RoFormer's rotations: model/roformer/); BERT's are
        in its embeddings, so nothing here. q: (B, A, S or T, D), k, v: (B, A, T, D); unpadded q (N or B * S, A, D),
        k, v (N, A, D)."""
        return q, k, v


class BertSelfOutput(nn.Module):
    """Projection of the attention context, dropout, residual and LayerNorm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, context: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(context)) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | Unpadded | None, output_attentions: bool = False,
                queries: torch.Tensor | None = None, query_positions: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        context, probs = self.self(x, mask, output_attentions, queries, query_positions)
        return self.output(context, x if queries is None else queries), probs
