"""Input representation: token + segment + learned position embeddings, then LayerNorm and dropout."""

from __future__ import annotations

import torch
from torch import nn

from bertforge.config import BertConfig
from bertforge.model.dropout import Dropout


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                            padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        # input_ids, token_type_ids: (B, T) -> (B, T, H); or packed (N,) with their position_ids (N,) -> (N, H)
        positions = torch.arange(input_ids.shape[-1], device=input_ids.device) if position_ids is None \
            else position_ids
        x = (self.word_embeddings(input_ids)
             + self.token_type_embeddings(token_type_ids)
             + self.position_embeddings(positions))
        return self.dropout(self.LayerNorm(x))
