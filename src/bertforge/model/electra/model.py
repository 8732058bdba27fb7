"""ElectraModel: BERT's embeddings at ``embedding_size``, a projection to ``hidden_size`` where the two differ
(``embeddings_project``), then BERT's encoder. No pooler: ELECTRA's heads read the hidden states.

The forward pass is BertModel's (input checks, the real-token path, ``output_positions``); only the modules differ.
"""

from __future__ import annotations

import torch
from torch import nn

from bertforge.model.bert import BertModel
from bertforge.model.electra.config import ElectraConfig
from bertforge.model.electra.pretrained import ElectraPreTrainedModel
from bertforge.model.embeddings import BertEmbeddings
from bertforge.model.encoder import BertEncoder
from bertforge.model.pretrained import BertPreTrainedModel


class ElectraEmbeddings(BertEmbeddings):
    """Token + segment + position embeddings, LayerNorm and dropout at ``embedding_size`` (BERT's module), then
    ``project`` to the hidden size when the model has one.

    ``project`` is the model's ``embeddings_project`` layer, held here as a plain callable, not a submodule, so
    its weight keeps transformers' name (``embeddings_project.weight``, beside ``embeddings.``) and BertModel's
    forward, which calls ``self.embeddings``, needs no ELECTRA branch."""

    project = None  # (..., E) -> (..., H), or None when embedding_size == hidden_size

    def __init__(self, config: ElectraConfig):
        super().__init__(config.embeddings_config())

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        x = super().forward(input_ids, token_type_ids, position_ids)  # (B, T, E) or packed (N, E)
        return x if self.project is None else self.project(x)  # (B, T, H) or (N, H)


class ElectraModel(ElectraPreTrainedModel, BertModel):
    def __init__(self, config: ElectraConfig):
        BertPreTrainedModel.__init__(self, config)  # not BertModel's: other embeddings, no pooler
        self.embeddings = ElectraEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
            self.embeddings.project = self.embeddings_project.forward  # a bound method: not registered twice
        self.encoder = BertEncoder(config)
        self.pooler = None
        self.unpad_threshold: float | None = None  # the device's default (bert.UNPAD_THRESHOLD)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False, output_positions: torch.Tensor | None = None):
        """As BertModel.forward (pooler_output is None); the first hidden state is the projected embedding, as in
        transformers. Rows run on their real tokens only, so last_hidden_state is zero at the padding."""
        return super().forward(input_ids, token_type_ids, attention_mask, output_hidden_states, output_attentions,
                               output_positions)
