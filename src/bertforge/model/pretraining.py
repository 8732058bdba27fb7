"""BertForPreTraining: BertModel + the masked-LM head (tied decoder) + the next-sentence head; and the masked-LM
forward the families whose encoder is BERT-shaped share (``masked_lm``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bertforge.config import BertConfig
from bertforge.constants import IGNORE_INDEX
from bertforge.errors import ConfigError
from bertforge.model.bert import BertModel
from bertforge.model.encoder import ACTIVATIONS
from bertforge.model.heads import check_shape
from bertforge.model.outputs import CausalLMOutput, MaskedLMOutput, PreTrainingOutput
from bertforge.model.pretrained import BertPreTrainedModel
from bertforge.model.unpadded import host_values


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACTIVATIONS[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """dense -> GELU -> LayerNorm -> x @ word_embeddings^T + bias (the decoder is the embedding matrix)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(x), word_embeddings, self.bias)  # (..., V)


class BertPreTrainingHeads(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)


class BertForPreTraining(BertPreTrainedModel):
    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config)
        self.cls = BertPreTrainingHeads(config)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                next_sentence_label: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False) -> PreTrainingOutput:
        """labels: (B, T) original ids at masked positions, -100 elsewhere; next_sentence_label: (B,).

        With labels (and no hidden states or attentions asked for), the last layer runs only at the
        labelled positions and [CLS]: the heads read nothing else, and the losses are the same.
        """
        if labels is not None and labels.shape != input_ids.shape:
            raise ValueError(f"labels has shape {tuple(labels.shape)} but input_ids has "
                             f"{tuple(input_ids.shape)}")
        decoder = self.bert.embeddings.word_embeddings.weight
        mlm_loss = nsp_loss = None
        if labels is None or output_hidden_states or output_attentions:
            out = self.bert(input_ids, token_type_ids, attention_mask, output_hidden_states, output_attentions)
            hidden = out.last_hidden_state
            rows = None if labels is None else labelled_flat_rows(labels)
        else:
            positions, labels, rows = labelled_rows(labels)  # (B, S), [CLS] first; labels now (B, S)
            out = self.bert(input_ids, token_type_ids, attention_mask, output_positions=positions)
            hidden = out.last_hidden_state  # (B, S, H)
        nsp_logits = self.cls.seq_relationship(out.pooler_output)  # (B, 2)
        if labels is None:
            mlm_logits = self.cls.predictions(hidden, decoder)  # (B, T, V)
        else:
            # Only ~15% of positions carry a label: project those alone onto the vocabulary.
            mlm_logits = self.cls.predictions(hidden.flatten(0, 1).index_select(0, rows), decoder)  # (N, V)
            targets = labels.flatten().index_select(0, rows)
            mlm_loss = (F.cross_entropy(mlm_logits, targets) if targets.numel()
                        else mlm_logits.sum() * 0.0)
        if next_sentence_label is not None:
            nsp_loss = F.cross_entropy(nsp_logits, next_sentence_label.view(-1))
        losses = [x for x in (mlm_loss, nsp_loss) if x is not None]
        loss = sum(losses) if losses else None
        return PreTrainingOutput(loss, mlm_loss, nsp_loss, mlm_logits, nsp_logits,
                                 out.hidden_states, out.attentions)


@torch.compiler.disable  # host work of a data-dependent size: one clean graph break, not a failed trace of numpy
def labelled_rows(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``labelled_positions`` and the (N,) flat indices of the labelled entries of its (B, S) labels, worked out
    on the host copy of ``labels`` when there is one (``unpadded.to_device``): a training step then never
    waits for the device (without one, the labels are read once)."""
    positions, selected, rows = _labelled(host_values(labels, read=True))
    return tuple(torch.from_numpy(a).to(labels.device, non_blocking=True) for a in (positions, selected, rows))


def labelled_flat_rows(labels: torch.Tensor) -> torch.Tensor:
    """The (N,) flat indices of the labelled entries of (B, T) ``labels``, from their host copy when there is one."""
    rows = torch.from_numpy(np.flatnonzero(host_values(labels, read=True) != IGNORE_INDEX))
    return rows.to(labels.device, non_blocking=True)


def masked_lm(encoder: nn.Module, logits_of: Callable[[torch.Tensor], torch.Tensor], input_ids: torch.Tensor,
              token_type_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, labels: torch.Tensor | None,
              output_hidden_states: bool, output_attentions: bool) -> MaskedLMOutput:
    """A masked LM's forward: ``encoder`` takes BERT's arguments (``output_positions`` too) and ``logits_of``
    projects its states onto the vocabulary (RoFormer's LM head, ELECTRA's generator head).

    labels: (B, T) original ids at the masked positions, -100 elsewhere. Without labels, logits are (B, T, V).
    With labels, only the N labelled positions are projected onto the vocabulary, (N, V) in row-major order, and
    (without hidden states or attentions asked for) the last layer runs at those positions alone: the loss is
    transformers', the work a fraction.
    """
    if labels is not None:
        check_shape("labels", labels, tuple(input_ids.shape), f"input_ids of shape {tuple(input_ids.shape)}")
    if labels is None or output_hidden_states or output_attentions:
        out = encoder(input_ids, token_type_ids, attention_mask, output_hidden_states, output_attentions)
        hidden, selected = out.last_hidden_state, labels  # (B, T, H)
        rows = None if labels is None else labelled_flat_rows(labels)
    else:
        positions, selected, rows = labelled_rows(labels)  # (B, S) positions and labels, (N,) flat rows
        out = encoder(input_ids, token_type_ids, attention_mask, output_positions=positions)
        hidden = out.last_hidden_state  # (B, S, H)
    if labels is None:
        return MaskedLMOutput(None, logits_of(hidden), out.hidden_states, out.attentions)
    logits = logits_of(hidden.flatten(0, 1).index_select(0, rows))  # (N, V)
    targets = selected.flatten().index_select(0, rows)
    loss = F.cross_entropy(logits, targets) if targets.numel() else logits.sum() * 0.0
    return MaskedLMOutput(loss, logits, out.hidden_states, out.attentions)


def labelled_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions a pre-training step reads: [CLS] (0) then each labelled one, in order.

    Returns (positions, labels) of shape (B, S), S = 1 + the most labels in a row; rows with fewer
    are filled with position 0 and label -100, so they add nothing to the loss.
    """
    return labelled_rows(labels)[:2]


def _labelled(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    wanted = labels != IGNORE_INDEX
    wanted[:, 0] = True
    counts = wanted.sum(1)
    count = int(counts.max(initial=1))
    # A stable sort puts the wanted positions first, in their original order ([CLS] leading).
    order = np.argsort(~wanted, axis=1, kind="stable")[:, :count]
    filled = np.arange(count)[None, :] < counts[:, None]
    positions = np.where(filled, order, 0)
    selected = np.where(filled, np.take_along_axis(labels, positions, 1), IGNORE_INDEX)
    return positions, selected, np.flatnonzero(selected != IGNORE_INDEX)


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)


class BertLMHeadModel(BertPreTrainedModel):
    """A left-to-right BERT: the paper's "LTR & No NSP" row, GPT's objective on BERT's encoder.

    ``config.is_decoder`` must be true: every position attends only to itself and the ones before it, and
    position t predicts token t + 1. Weights and the loss are those of ``transformers.BertLMHeadModel``.
    """

    def __init__(self, config: BertConfig):
        super().__init__(config)
        if not config.is_decoder:
            raise ConfigError("BertLMHeadModel is a left-to-right model: set is_decoder to true in its config")
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False) -> CausalLMOutput:
        """labels: (B, T) the tokens (usually input_ids, -100 at padding); position t is scored on labels[t + 1].

        Without labels, logits are (B, T, V); with labels, only the N positions that have a next token
        are projected onto the vocabulary, (N, V) in row-major order, and loss is their mean cross-entropy.
        """
        out = self.bert(input_ids, token_type_ids, attention_mask, output_hidden_states, output_attentions)
        decoder = self.bert.embeddings.word_embeddings.weight
        if labels is None:
            return CausalLMOutput(None, self.cls.predictions(out.last_hidden_state, decoder),
                                  out.hidden_states, out.attentions)
        if labels.shape != input_ids.shape:
            raise ValueError(f"labels has shape {tuple(labels.shape)} but input_ids has {tuple(input_ids.shape)}")
        # The scored rows, from the host copy of the labels when there is one (no device sync).
        rows = np.flatnonzero(host_values(labels, read=True)[:, 1:] != IGNORE_INDEX)
        rows = torch.from_numpy(rows).to(labels.device, non_blocking=True)
        targets = labels[:, 1:].flatten().index_select(0, rows)  # (N,): the next token of each scored position
        logits = self.cls.predictions(out.last_hidden_state[:, :-1].flatten(0, 1).index_select(0, rows),
                                      decoder)  # (N, V)
        loss = F.cross_entropy(logits, targets) if rows.numel() else logits.sum() * 0.0
        return CausalLMOutput(loss, logits, out.hidden_states, out.attentions)
