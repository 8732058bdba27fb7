"""A task layer on any encoder's per-token features, for the set-ups transformers has no class for:

- feature-based BERT (the paper §5.3): a frozen encoder's ``last`` layer, its ``concat-last-4`` or an
  ELMo-style ``scalar-mix`` of all layers;
- ELMo (frozen biLM under a scalar mix), the paper's ELMo baseline; static word2vec vectors (frozen);
- ``+BiLSTM`` (the paper's ablation, and its best feature-based NER): a randomly initialised 2-layer
  BiLSTM between the encoder (fine-tuned or frozen) and the task layer.

Per-token tasks (tagging, QA) read every position; sequence tasks (classify, regress, choice) read the
BiLSTM's final states (forward at the last token, backward at the first) when there is one, else the
first position ([CLS]), or the last real token for a left-to-right encoder. Which of these the task layer is
(its head kind: sequence, token, choice or span, ``model/registry.py``) is the task's. A model directory holds the
encoder's config.json, ``task.json`` (this head's settings, labels and head kind) and one model.safetensors; each
family's ``features`` (below for BERT, ELMo and static vectors) builds its encoder.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from bertforge.errors import ConfigError, UsageError
from bertforge.io.atomic import atomic_write_text
from bertforge.io.weights import read_state_dict, save_state_dict
from bertforge.model.bert import BertModel, sentence_vector
from bertforge.model.dropout import Dropout
from bertforge.model.elmo.lstm import reverse_padded
from bertforge.model.heads import choice_loss, problem_type, sequence_loss, span_loss, token_loss
from bertforge.model.outputs import (MultipleChoiceModelOutput, QuestionAnsweringOutput, SequenceClassifierOutput,
                                     TokenClassifierOutput)
from bertforge.model.scalar_mix import ScalarMix

TASK_FILE = "task.json"
FEATURES = ("last", "concat-last-4", "scalar-mix")
# The fine-tuning head kinds (model/registry.py names them for every family): one output per sequence, per
# token, per choice of a multiple-choice question, or a start and an end score per token (a span).
SEQUENCE, TOKEN, CHOICE, SPAN = "sequence", "token", "choice", "span"
FUSED_MAX_SIZE = 256  # the widest BiLSTM direction that runs as fused calls on the padded batch (BiLSTM)


class BiLSTM(nn.Module):
    """2 bidirectional LSTM layers, ``hidden // 2`` per direction: (B, T, D) -> (B, T, hidden) per token, zero at
    the padding, and (B, hidden) per sequence (the forward state at the last token, the backward one at the first).

    Two ways to the same numbers (tests/model/test_bilstm_head.py), chosen by width:
    - up to ``FUSED_MAX_SIZE`` units a direction, each direction of each layer is one call of the LSTM op on the
      padded batch, the backward one reading every row reversed within its own length (the padding comes after a
      row's tokens in both, so it never reaches a real position). On CPU that is the op's fused (oneDNN) path
      with its own backward, where over packed sequences autograd records every step's small operations: at the
      studies' widths (128, 256) 1.6-3.5x faster to train and 1.0-1.3x to infer;
    - wider, ``nn.LSTM`` over packed sequences, which skips the padding's work: at 768 (base) the fused path's
      work on the padding costs about what it saves (benchmarks/finetune.py --bilstm, docs/speed.md)."""

    def __init__(self, input_dim: int, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(input_dim, hidden // 2, num_layers=2, bidirectional=True, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = mask.long().sum(1).clamp(min=1)  # a row with no token reads its first position
        return self.fused(x, lengths) if self.lstm.hidden_size <= FUSED_MAX_SIZE else self.packed(x, lengths)

    def packed(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h, _) = self.lstm(packed)
        seq, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return seq, torch.cat([h[-2], h[-1]], dim=-1)

    def fused(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        real = (torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
        for layer in range(self.lstm.num_layers):
            forward = self._direction(x, f"_l{layer}")
            backward = reverse_padded(self._direction(reverse_padded(x, lengths), f"_l{layer}_reverse"), lengths)
            x = torch.cat([forward, backward], dim=-1) * real
        last = forward.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, forward.shape[-1])).squeeze(1)
        return x, torch.cat([last, backward[:, 0]], dim=-1)

    def _direction(self, x: torch.Tensor, suffix: str) -> torch.Tensor:
        """One direction of one layer over the padded batch x (B, T, D), from a zero state: (B, T, hidden // 2)."""
        lstm = self.lstm
        weights = [getattr(lstm, f"{name}{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        zeros = x.new_zeros(1, x.shape[0], lstm.hidden_size)
        out, _, _ = torch.lstm(x, (zeros, zeros), weights, True, 1, 0.0, self.training, False, True)  # nn.LSTM's op
        return out


def check_features(features: str, frozen: bool, layers: int) -> None:
    """Refuse a --features choice the encoder cannot give (checked before any data is read, and again when the
    model is built)."""
    if features not in FEATURES:
        raise UsageError(f"unknown features {features!r}", setting="features", hint=f"use {', '.join(FEATURES)}")
    if features != "last" and not frozen:
        raise UsageError(f"{features} is for a frozen encoder", setting="features", hint="add --freeze-encoder")
    if features == "concat-last-4" and layers < 4:
        raise UsageError(f"concat-last-4 needs 4 layers, the model has {layers}", setting="features",
                         hint="use --features scalar-mix or last")


class BertFeatures(nn.Module):
    """BertModel as a source of per-token features: fine-tuned (``last`` layer), or frozen, without dropout
    and gradients, giving its ``last`` layer, ``concat-last-4`` or a learned ``scalar-mix`` of all layers."""

    def __init__(self, bert: BertModel, features: str = "last", frozen: bool = False):
        super().__init__()
        config = bert.config
        check_features(features, frozen, config.num_hidden_layers)
        self.config, self.features, self.frozen = config, features, frozen
        self.bert = bert
        self.bert.pooler = None  # the task layer reads token features, never the pooler
        self.mix = ScalarMix(config.num_hidden_layers + 1) if features == "scalar-mix" else None
        self.hidden_size = config.hidden_size
        self.output_dim = config.hidden_size * (4 if features == "concat-last-4" else 1)
        if frozen:
            self.bert.requires_grad_(False)

    def train(self, mode: bool = True) -> "BertFeatures":
        super().train(mode)
        if self.frozen:
            self.bert.eval()  # frozen features are computed without dropout, as ELMo's are
        return self

    @property
    def cacheable(self) -> bool:
        """Whether the encoder's part ends where the learning starts (``frozen_part``, then ``learned_part``)."""
        return self.frozen

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> torch.Tensor:
        if self.frozen:
            return self.learned_part(self.frozen_part(input_ids, token_type_ids, attention_mask))
        return self.bert(input_ids, token_type_ids, attention_mask).last_hidden_state

    def frozen_part(self, input_ids, token_type_ids=None, attention_mask=None) -> torch.Tensor:
        """What the frozen encoder gives the learned part: its ``last`` layer (B, T, H), ``concat-last-4``
        (B, T, 4H), or for a ``scalar-mix`` every layer (B, T, L + 1, H)."""
        with torch.no_grad():
            out = self.bert(input_ids, token_type_ids, attention_mask, output_hidden_states=self.features != "last")
        if self.features == "last":
            return out.last_hidden_state
        if self.features == "concat-last-4":
            return torch.cat(out.hidden_states[-4:], dim=-1)
        return torch.stack(out.hidden_states, dim=2)

    def learned_part(self, frozen: torch.Tensor) -> torch.Tensor:
        """The features from ``frozen_part``'s output: the scalar mix, if any, learns."""
        return frozen if self.mix is None else self.mix(frozen.unbind(2))


class ElmoFeaturesAdapter(nn.Module):
    """ELMo's frozen biLM under a scalar mix, with the encoder call signature of ``BertFeatures``."""

    cacheable = True

    def __init__(self, features: nn.Module):
        super().__init__()
        self.elmo = features
        self.output_dim = self.hidden_size = features.bilm.output_dim
        self.config = features.bilm.config

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> torch.Tensor:
        return self.elmo(input_ids, attention_mask)

    def frozen_part(self, input_ids, token_type_ids=None, attention_mask=None) -> torch.Tensor:
        """The biLM's layers, (B, T, L + 1, 2P)."""
        return self.elmo.layers(input_ids, attention_mask).movedim(1, 2)

    def learned_part(self, frozen: torch.Tensor) -> torch.Tensor:
        return self.elmo.mix(frozen.unbind(2))


class TaskModel(nn.Module):
    """encoder features -> [BiLSTM] -> dropout -> the task layer of head kind ``kind``; losses as the BERT heads'."""

    def __init__(self, encoder: nn.Module, settings: dict[str, Any], kind: str | None = None):
        super().__init__()
        kind = kind or settings.get("head_kind")  # task.json records it (a file written before may not)
        if kind not in (SEQUENCE, TOKEN, CHOICE, SPAN):
            raise ConfigError(f"a task model's head_kind is one of {SEQUENCE}, {TOKEN}, {CHOICE} or {SPAN}, "
                              f"got {kind!r}")
        settings["head_kind"] = kind
        self.encoder, self.settings, self.kind = encoder, settings, kind
        width = encoder.output_dim
        if settings.get("bilstm"):
            settings.setdefault("bilstm_size", encoder.hidden_size)  # the encoder's width, as the paper's
            self.bilstm = BiLSTM(width, settings["bilstm_size"])
            width = settings["bilstm_size"]
        else:
            self.bilstm = None
        self.num_labels = len(settings.get("id2label", {})) or 1
        outputs = {SEQUENCE: self.num_labels, TOKEN: self.num_labels, CHOICE: 1, SPAN: 2}[self.kind]
        self.dropout = Dropout(settings.get("dropout", 0.1))
        self.classifier = nn.Linear(width, outputs)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    @property
    def config(self):
        """The encoder's config (max positions, family...)."""
        return self.encoder.config

    @property
    def id2label(self) -> dict[int, str]:
        return {int(i): n for i, n in self.settings.get("id2label", {}).items()}

    @property
    def label2id(self) -> dict[str, int]:
        return {n: int(i) for n, i in self.settings.get("label2id", {}).items()}

    @property
    def caches_features(self) -> bool:
        """Whether the training inputs' ``frozen_features`` can be computed once and passed to ``forward``: the
        encoder is frozen (no dropout, no gradients) and the head is not multiple choice's."""
        return self.kind != CHOICE and getattr(self.encoder, "cacheable", False)

    def frozen_features(self, input_ids, token_type_ids=None, attention_mask=None) -> torch.Tensor:
        """The frozen encoder's output (``BertFeatures.frozen_part``): the same for a given input all run long."""
        return self.encoder.frozen_part(input_ids, token_type_ids, attention_mask)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None, start_positions=None,
                end_positions=None, frozen_features=None, **_):
        """``frozen_features``: ``frozen_features`` of these inputs, computed before (padded to their length):
        the frozen encoder is not run again."""
        shape = input_ids.shape
        if self.kind == CHOICE:  # (B, C, T): every choice its own row
            input_ids, token_type_ids, attention_mask = (
                None if t is None else t.reshape(-1, shape[-1]) for t in (input_ids, token_type_ids, attention_mask))
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        if frozen_features is not None:
            features = self.encoder.learned_part(frozen_features)
        else:
            features = self.encoder(input_ids, token_type_ids, mask)  # (B, T, D)
        if self.bilstm is not None:
            tokens, sentence = self.bilstm(features, mask)
        else:
            tokens = features
            sentence = sentence_vector(features, mask, bool(getattr(self.config, "is_decoder", False)))
        if self.kind in (TOKEN, SPAN):
            logits = self.classifier(self.dropout(tokens))  # (B, T, n)
            if self.kind == TOKEN:
                return TokenClassifierOutput(None if labels is None else token_loss(logits, labels), logits)
            start, end = logits[..., 0].contiguous(), logits[..., 1].contiguous()
            return QuestionAnsweringOutput(span_loss(start, end, start_positions, end_positions), start, end)
        logits = self.classifier(self.dropout(sentence))  # (B, n)
        if self.kind == CHOICE:
            logits = logits.view(shape[0], shape[1])
            return MultipleChoiceModelOutput(None if labels is None else choice_loss(logits, labels), logits)
        loss = None
        if labels is not None:
            loss = sequence_loss(logits, labels, problem_type(self.settings.get("problem_type"), self.num_labels,
                                                              labels))
        return SequenceClassifierOutput(loss, logits)

    # --- saving and loading ------------------------------------------------------------------------

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """config.json (the encoder's), task.json (this head), model.safetensors (everything)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = self.config
        if hasattr(config, "to_json_file"):
            config.to_json_file(path / "config.json", architectures=["TaskModel"])
        else:
            config.save(path / "config.json")
        atomic_write_text(path / TASK_FILE, json.dumps(self.settings, indent=2, sort_keys=True) + "\n")
        save_state_dict(self.state_dict(), path / "model.safetensors")

    @classmethod
    def from_pretrained(cls, source, kind: str | None = None) -> "TaskModel":
        """A fine-tuned task model saved by ``save_pretrained``, from its directory (or ``model.directory.ModelDir``);
        ``kind``: its task's head kind, for a task.json that does not record it."""
        from bertforge.model.directory import ModelDir

        source = ModelDir.read(source)
        if source.task is None:
            raise ConfigError(f"has no {TASK_FILE}: it is not a task model", source=source.path)
        settings = dict(source.task)
        model = cls(_encoder(source, settings, pretrained=False), settings, kind)
        state = read_state_dict(source.path)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ConfigError(f"the weights do not fit the model in task.json: missing {missing[:4]}, "
                              f"unexpected {unexpected[:4]}", source=source.path)
        return model.eval()

    @classmethod
    def for_task(cls, source, settings: dict[str, Any], kind: str) -> "TaskModel":
        """A new task layer (random) of head kind ``kind`` on the pre-trained encoder of the model directory
        ``source`` (a ``model.directory.ModelDir``)."""
        return cls(_encoder(source, settings, pretrained=True), settings, kind)


def _encoder(source, settings: dict[str, Any], pretrained: bool) -> nn.Module:
    """The encoder a task model's settings describe, with the pre-trained weights of ``source`` or empty."""
    from bertforge.model.registry import FAMILIES

    family = source.family
    if family.features is None:
        able = [f.name for f in FAMILIES.values() if f.features is not None]
        raise UsageError(f"feature-based and BiLSTM heads read {', '.join(able)} models, not {family.name}",
                         setting="model", hint=f"fine-tune {family.name} without --freeze-encoder and --head-bilstm")
    return family.features(source, settings, pretrained)


def bert_features(source, settings: dict[str, Any], pretrained: bool) -> BertFeatures:
    """The encoder of a family that runs BERT's forward (BERT, RoFormer: its registry ENCODER class) as a task model's
    features (``features``, ``frozen`` and ``encoder_dropout`` of ``settings``)."""
    from bertforge.model.registry import ENCODER  # the registry imports this module

    encoder_class = source.family.heads[ENCODER]
    overrides = {}
    if settings.get("encoder_dropout") is not None:
        overrides = {name: settings["encoder_dropout"] for name in source.family.dropout_fields}
    if pretrained:
        bert = encoder_class.from_pretrained(source.path, **overrides)
    else:
        config = copy.deepcopy(source.config)
        for key, value in overrides.items():
            setattr(config, key, value)
        bert = encoder_class(config)
    return BertFeatures(bert, settings.get("features", "last"), settings.get("frozen", False))


def elmo_features(source, settings: dict[str, Any], pretrained: bool) -> ElmoFeaturesAdapter:
    """ELMo's frozen biLM (without its softmax) under a scalar mix."""
    from bertforge.model.elmo import ElmoBiLM
    from bertforge.model.elmo.pieces import ElmoPieceFeatures, vocabulary

    bilm = ElmoBiLM.from_pretrained(source.path) if pretrained else ElmoBiLM(source.config)
    return ElmoFeaturesAdapter(ElmoPieceFeatures(bilm, vocabulary(source.path)))


def static_features(source, settings: dict[str, Any], pretrained: bool) -> nn.Module:
    """Static word vectors (always frozen)."""
    from bertforge.model.static import StaticEmbeddings

    return StaticEmbeddings.from_pretrained(source.path) if pretrained else StaticEmbeddings(source.config)
