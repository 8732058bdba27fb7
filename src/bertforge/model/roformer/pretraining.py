"""RoFormer's language-model heads, with `transformers`' weight names: the masked LM and the left-to-right LM
(transformers' RoFormerForMaskedLM and RoFormerForCausalLM), and bertforge's pre-training model for MLM with a
sentence-pair task (NSP or SOP), as BertForPreTraining. The LM head is BERT's, ending at ``embedding_size``, where
the tied output matrix (the word embeddings) lives."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bertforge.constants import IGNORE_INDEX
from bertforge.errors import ConfigError
from bertforge.model.encoder import ACTIVATIONS
from bertforge.model.heads import check_shape
from bertforge.model.pretrained import BertPreTrainedModel
from bertforge.model.pretraining import (BertForPreTraining, BertLMHeadModel, BertLMPredictionHead,
                                         BertPredictionHeadTransform, labelled_rows)
from bertforge.model.roformer.config import RoFormerConfig
from bertforge.model.roformer.model import RoFormerModel
from bertforge.model.roformer.pretrained import RoFormerHeadModel
from bertforge.model.unpadded import host_values


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


@dataclass
class MaskedLMOutput:
    loss: torch.Tensor | None = None  # mean cross-entropy over the labelled positions
    logits: torch.Tensor | None = None  # (B, T, V) without labels, (N, V) at the N labelled positions with
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None

    # BertForPreTraining's names for the same two, which the masked-LM objective and fill-mask read.
    @property
    def mlm_loss(self) -> torch.Tensor | None:
        return self.loss

    @property
    def prediction_logits(self) -> torch.Tensor | None:
        return self.logits


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
        """labels: (B, T) original ids at the masked positions, -100 elsewhere.

        Without labels, logits are (B, T, V). With labels, only the N labelled positions are projected onto the
        vocabulary, (N, V) in row-major order, and (without hidden states or attentions asked for) the last layer
        runs at those positions alone: the loss is transformers', the work a fraction.
        """
        if labels is not None:
            check_shape("labels", labels, tuple(input_ids.shape), f"input_ids of shape {tuple(input_ids.shape)}")
        if labels is None or output_hidden_states or output_attentions:
            out = self.roformer(input_ids, token_type_ids, attention_mask, output_hidden_states, output_attentions)
            hidden, selected = out.last_hidden_state, labels  # (B, T, H)
            if labels is not None:
                rows = torch.from_numpy(np.flatnonzero(host_values(labels, read=True) != IGNORE_INDEX))
                rows = rows.to(labels.device, non_blocking=True)
        else:
            positions, selected, rows = labelled_rows(labels)  # (B, S) positions and labels, (N,) flat rows
            out = self.roformer(input_ids, token_type_ids, attention_mask, output_positions=positions)
            hidden = out.last_hidden_state  # (B, S, H)
        decoder = self.roformer.embeddings.word_embeddings.weight
        if labels is None:
            return MaskedLMOutput(None, self.cls.predictions(hidden, decoder), out.hidden_states, out.attentions)
        logits = self.cls.predictions(hidden.flatten(0, 1).index_select(0, rows), decoder)  # (N, V)
        targets = selected.flatten().index_select(0, rows)
        loss = F.cross_entropy(logits, targets) if targets.numel() else logits.sum() * 0.0
        return MaskedLMOutput(loss, logits, out.hidden_states, out.attentions)


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
