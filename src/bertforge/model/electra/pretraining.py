"""ELECTRA's two pre-training models: the discriminator (``ElectraForPreTraining``: is each token the original
or a replacement?) and the generator (``ElectraForMaskedLM``: a small masked LM whose output matrix is the word
embeddings), with `transformers`' weight names and losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.model.electra.config import ElectraConfig
from bertforge.model.electra.model import ElectraModel
from bertforge.model.electra.outputs import ElectraForPreTrainingOutput, MaskedLMOutput
from bertforge.model.electra.pretrained import ElectraPreTrainedModel
from bertforge.model.encoder import ACTIVATIONS
from bertforge.model.heads import check_shape
from bertforge.model.pretraining import masked_lm


class ElectraDiscriminatorPredictions(nn.Module):
    """dense -> activation -> dense_prediction: one logit per token."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACTIVATIONS[config.hidden_act]
        self.dense_prediction = nn.Linear(config.hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense_prediction(self.act(self.dense(x))).squeeze(-1)  # (B, T, H) -> (B, T)


class ElectraGeneratorPredictions(nn.Module):
    """dense (H -> E) -> GELU -> LayerNorm: back to the embedding size, where the tied output matrix lives."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(x)))  # (..., H) -> (..., E); transformers uses gelu whatever hidden_act


def rtd_loss(logits: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean binary cross-entropy of (B, T) logits against 0/1 labels over the real tokens (transformers' loss),
    as a weighted sum: no boolean indexing, so a training step does not wait for the device."""
    check_shape("labels", labels, tuple(logits.shape), f"input_ids of shape {tuple(logits.shape)}")
    weight = torch.ones_like(logits) if attention_mask is None else (attention_mask == 1).to(logits.dtype)
    total = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), weight=weight, reduction="sum")
    return total / weight.sum().clamp(min=1)


class ElectraForPreTraining(ElectraPreTrainedModel):
    """The discriminator: ElectraModel -> discriminator_predictions, one "replaced" logit per token."""

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.electra = ElectraModel(config)
        self.discriminator_predictions = ElectraDiscriminatorPredictions(config)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False) -> ElectraForPreTrainingOutput:
        """input_ids etc.: (B, T); labels: (B, T) 1 = replaced, 0 = original; the loss counts the real tokens.
        The encoder is read by its prefix, so another family's discriminator (RoFormer's) shares this forward."""
        encoder = getattr(self, self.base_model_prefix)
        out = encoder(input_ids, token_type_ids, attention_mask, output_hidden_states, output_attentions)
        logits = self.discriminator_predictions(out.last_hidden_state)  # (B, T)
        loss = None if labels is None else rtd_loss(logits, labels, attention_mask)
        return ElectraForPreTrainingOutput(loss, logits, out.hidden_states, out.attentions)


class ElectraForMaskedLM(ElectraPreTrainedModel):
    """The generator: ElectraModel -> generator_predictions -> generator_lm_head (tied to the word embeddings)."""

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.electra = ElectraModel(config)
        self.generator_predictions = ElectraGeneratorPredictions(config)
        self.generator_lm_head = nn.Linear(config.embedding_size, config.vocab_size)
        self.init_weights()
        if config.tie_word_embeddings:  # after init: the embedding's zeroed padding row stays zero
            self.generator_lm_head.weight = self.electra.embeddings.word_embeddings.weight

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False) -> MaskedLMOutput:
        """labels: (B, T) original ids at the masked positions, -100 elsewhere; logits (B, T, V), or (N, V) at the
        N labelled positions with labels (``model.pretraining.masked_lm``)."""
        return masked_lm(self.electra, self._logits, input_ids, token_type_ids, attention_mask, labels,
                         output_hidden_states, output_attentions)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.generator_lm_head(self.generator_predictions(hidden))  # (..., H) -> (..., V)
