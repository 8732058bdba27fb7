"""RoFormerModel: BERT without its position table. Token + segment embeddings at ``embedding_size`` (projected to
``hidden_size`` where the two differ, as ELECTRA does), then BERT's encoder whose self-attention turns queries
and keys by position (``attention.py``). No pooler, as in transformers (the pre-training head adds BERT's).

The forward pass is BertModel's (input checks, the real-token path, ``output_positions``); only the modules differ.
"""

from __future__ import annotations

import torch
from torch import nn

from bertforge.model.bert import BertModel, BertPooler
from bertforge.model.dropout import Dropout
from bertforge.model.encoder import BertEncoder
from bertforge.model.pretrained import BertPreTrainedModel
from bertforge.model.roformer.attention import RoFormerSelfAttention, SinusoidalPositions
from bertforge.model.roformer.config import RoFormerConfig
from bertforge.model.roformer.pretrained import RoFormerPreTrainedModel


class RoFormerEmbeddings(nn.Module):
    """Token + segment embeddings, LayerNorm and dropout at ``embedding_size``, then ``project`` to the hidden size
    when the model has one. No positions: attention adds them.

    ``project`` is the model's ``embeddings_project`` layer, held as a plain callable (as ELECTRA's embeddings hold
    it), so its weight keeps transformers' name beside ``embeddings.`` and BertModel's forward needs no branch."""

    project = None  # (..., E) -> (..., H), or None when embedding_size == hidden_size

    def __init__(self, config: RoFormerConfig):
        super().__init__()
        E = config.embedding_size
        self.word_embeddings = nn.Embedding(config.vocab_size, E, padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, E)
        self.LayerNorm = nn.LayerNorm(E, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        # (B, T) -> (B, T, H), or packed (N,) -> (N, H); position_ids (which BertModel passes) are not read here
        x = self.dropout(self.LayerNorm(self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)))
        return x if self.project is None else self.project(x)


class RoFormerEncoder(BertEncoder):
    """BERT's encoder with RoFormer's self-attention in every layer, which reads the one sinusoid table here."""

    def __init__(self, config: RoFormerConfig):
        super().__init__(config)
        self.embed_positions = SinusoidalPositions(config.max_position_embeddings, config.head_size)
        for layer in self.layer:
            layer.attention.self = RoFormerSelfAttention(config, self.embed_positions.forward)


class RoFormerModel(RoFormerPreTrainedModel, BertModel):
    def __init__(self, config: RoFormerConfig, add_pooling_layer: bool = False):
        """``add_pooling_layer``: BERT's pooler (tanh(dense([CLS]))), which transformers' RoFormer does not have; the
        pre-training model's sentence-pair head reads it."""
        BertPreTrainedModel.__init__(self, config)  # not BertModel's: other embeddings and encoder
        self.embeddings = RoFormerEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
            self.embeddings.project = self.embeddings_project.forward  # a bound method: not registered twice
        self.encoder = RoFormerEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.unpad_threshold: float | None = None  # the device's default (bert.UNPAD_THRESHOLD); 0: always, > 1: never
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False, output_positions: torch.Tensor | None = None):
        """As BertModel.forward (pooler_output is None without a pooler); the first hidden state is the projected
        embedding, as in transformers. Rows run on their real tokens only when padding is at least
        ``unpad_threshold`` of the batch, and last_hidden_state is then zero at the padding."""
        return super().forward(input_ids, token_type_ids, attention_mask, output_hidden_states, output_attentions,
                               output_positions)
