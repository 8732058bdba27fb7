"""RoFormer's language-model heads, with `transformers`' weight names: the masked LM and the left-to-right LM
(transformers' RoFormerForMaskedLM and RoFormerForCausalLM), and bertforge's pre-training model for MLM with a
sentence-pair task (NSP or SOP), as BertForPreTraining. The LM head is BERT's, ending at ``embedding_size``, where
the tied output matrix (the word embeddings) lives."""

from __future__ import annotations

import torch
from torch import nn

from bertforge.errors import ConfigError
from bertforge.model.encoder import ACTIVATIONS
from bertforge.model.outputs import MaskedLMOutput
from bertforge.model.pretrained import BertPreTrainedModel
from bertforge.model.pretraining import (BertForPreTraining, BertLMHeadModel, BertLMPredictionHead,
                                         BertPredictionHeadTransform, masked_lm)
from bertforge.model.roformer.config import RoFormerConfig
from bertforge.model.roformer.model import RoFormerModel
from bertforge.model.roformer.pretrained import RoFormerHeadModel


class RoFormerPredictionHeadTransform(BertPredictionHeadTransform):
    """BERT's dense -> activation -> LayerNorm, from the hidden size to ``embedding_size``."""

    def __init__(self, config: RoFormerConfig):
        nn.Module.__init__(self)
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self.act = ACTIVATIONS[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)


class RoFormerLMPredictionHead(BertLMPredictionHead):
    """transform -> x @ word_embeddings^T + bias (BERT's; transformers' ``decoder`` is this tied matrix and bias)."""

    def __init__(self, config: RoFormerConfig):
        nn.Module.__init__(self)
        self.transform = RoFormerPredictionHeadTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))


class RoFormerOnlyMLMHead(nn.Module):
    def __init__(self, config: RoFormerConfig):
        super().__init__()
        self.predictions = RoFormerLMPredictionHead(config)


class RoFormerPreTrainingHeads(RoFormerOnlyMLMHead):
    def __init__(self, config: RoFormerConfig):
        super().__init__(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)


class RoFormerForMaskedLM(RoFormerHeadModel):
    """RoFormerModel -> cls.predictions: the masked LM alone (what ``--objective mlm`` trains)."""

    def __init__(self, config: RoFormerConfig):
        BertPreTrainedModel.__init__(self, config)
        self.roformer = RoFormerModel(config)
        self.cls = RoFormerOnlyMLMHead(config)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False) -> MaskedLMOutput:
        """labels: (B, T) original ids at the masked positions, -100 elsewhere; logits (B, T, V), or (N, V) at the
        N labelled positions with labels (``model.pretraining.masked_lm``)."""
        decoder = self.roformer.embeddings.word_embeddings.weight
        return masked_lm(self.roformer, lambda hidden: self.cls.predictions(hidden, decoder), input_ids,
                         token_type_ids, attention_mask, labels, output_hidden_states, output_attentions)


class RoFormerForCausalLM(RoFormerHeadModel, BertLMHeadModel):
    """A left-to-right RoFormer (``--objective ltr``): ``config.is_decoder`` must be true. BertLMHeadModel's
    forward and loss (transformers': position t predicts token t + 1) on RoFormer's encoder and LM head."""

    def __init__(self, config: RoFormerConfig):
        BertPreTrainedModel.__init__(self, config)
        if not config.is_decoder:
            raise ConfigError("RoFormerForCausalLM is a left-to-right model: set is_decoder to true in its config")
        self.roformer = RoFormerModel(config)
        self.cls = RoFormerOnlyMLMHead(config)
        self.init_weights()


class RoFormerForPreTraining(RoFormerHeadModel, BertForPreTraining):
    """bertforge's own (transformers has no RoFormer pre-training class): the masked LM plus BERT's next-sentence
    head on the pooled first token (``roformer.pooler``, ``cls.seq_relationship``), for the NSP and SOP objectives.
    BertForPreTraining's forward and losses.

    transformers' RoFormerForMaskedLM (or RoFormerModel) loads a checkpoint of this class: the encoder and the
    masked-LM head, with the pooler and the NSP head reported unused."""

    def __init__(self, config: RoFormerConfig):
        BertPreTrainedModel.__init__(self, config)
        self.roformer = RoFormerModel(config, add_pooling_layer=True)
        self.cls = RoFormerPreTrainingHeads(config)
        self.init_weights()
