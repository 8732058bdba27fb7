"""The Transformer encoder: L post-LN blocks of self-attention then a GELU feed-forward network."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.config import BertConfig
from bertforge.model.attention import BertAttention
from bertforge.model.dropout import Dropout
from bertforge.model.unpadded import Unpadded, packed_rows

ACTIVATIONS = {
    "gelu": F.gelu,  # the exact (erf) GELU of BERT
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACTIVATIONS[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))  # (B, T, 4H)


class BertOutput(nn.Module):
    """Down-projection of the feed-forward network, dropout, residual and LayerNorm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | Unpadded | None, output_attentions: bool = False,
                queries: torch.Tensor | None = None, query_positions: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, probs = self.attention(x, mask, output_attentions, queries, query_positions)
        return self.output(self.intermediate(x), x), probs


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | Unpadded | None, output_hidden_states: bool = False,
                output_attentions: bool = False, output_positions: torch.Tensor | None = None):
        """output_positions: (B, S) indices; when given, the last layer computes its output only there
        (its keys and values still cover every position), so the result is (B, S, H), not (B, T, H).

        With ``mask`` an ``Unpadded`` layout, x is (N, H), the packed real tokens, and so is the result (or
        (B, S, H) with output_positions); hidden states and attentions are then not available."""
        if isinstance(mask, Unpadded):
            return self._unpadded(x, mask, output_positions)
        hidden_states = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        last = len(self.layer) - 1
        for i, layer in enumerate(self.layer):
            queries = positions = None
            if output_positions is not None and i == last:
                positions = output_positions  # the queries' positions (rotary attention reads them)
                queries = x.gather(1, output_positions[..., None].expand(-1, -1, x.shape[-1]))  # (B, S, H)
                if mask is not None and mask.shape[2] > 1:  # a causal mask: keep the queries' rows
                    B, S, T = *output_positions.shape, mask.shape[-1]
                    rows = output_positions[:, None, :, None].expand(B, 1, S, T)
                    mask = mask.expand(B, 1, T, T).gather(2, rows)  # (B, 1, S, T)
            x, probs = layer(x, mask, output_attentions, queries, positions)
            if output_hidden_states:
                hidden_states.append(x)
            if output_attentions:
                attentions.append(probs)
        return (x,
                tuple(hidden_states) if output_hidden_states else None,
                tuple(attentions) if output_attentions else None)

    def _unpadded(self, x: torch.Tensor, layout: Unpadded, output_positions: torch.Tensor | None):
        last = len(self.layer) - 1
        for i, layer in enumerate(self.layer):
            if output_positions is not None and i == last:
                queries = x.index_select(0, packed_rows(layout, output_positions))  # (B * S, H)
                x, _ = layer(x, layout, queries=queries, query_positions=output_positions)
                x = x.view(*output_positions.shape, -1)  # (B, S, H)
            else:
                x, _ = layer(x, layout)
        return x, None, None
