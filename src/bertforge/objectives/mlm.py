"""Masked language modelling (BERT's MLM, Google's masking rules), alone on packed text ("No NSP",
RoBERTa's FULL-SENTENCES) or with next-sentence prediction on sentence pairs (the original BERT).

The model is the family's (``model/registry.py``): its masked-LM head for MLM alone (BERT's BertForPreTraining,
ModernBERT's ModernBertForMaskedLM), its pre-training head for MLM with a sentence-pair task. Either returns
``mlm_loss`` and ``prediction_logits`` (N, V) at the N labelled positions, in row-major order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from bertforge.constants import IGNORE_INDEX
from bertforge.data.masking import continuation_mask, mask_tokens
from bertforge.model.registry import MASKED_LM, PRETRAINING, family_of
from bertforge.objectives.base import Objective, instance_generator, packed_inputs


@dataclass(frozen=True)
class MaskingSettings:
    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    whole_word: bool = False
    static_masks: bool = False  # one mask per instance for the whole run (Google's original)
    spans: bool = False  # SpanBERT: geometric spans of whole words, decided per span
    mix: tuple[float, float, float] = (0.8, 0.1, 0.1)  # shares of [MASK], random token, unchanged


@dataclass
class MaskedLM(Objective):
    """15% of the tokens chosen (80% [MASK], 10% random, 10% kept), the original predicted at those alone.

    Each instance's mask is drawn from a generator seeded by (seed, epoch, index): new masks every
    epoch (dynamic masking), or one per instance with ``static_masks``. Whole-word masking groups the pieces
    of a word by the prepared corpus's word boundaries where it stores them (``rows["continues"]``: Chinese
    words, see ``data/segment.py``), else by the ``##`` pieces of the vocabulary.
    """

    masking: MaskingSettings = MaskingSettings()
    is_continuation: np.ndarray | None = None  # (V,) bool, for whole-word masking

    name: ClassVar[str] = "mlm"
    head_kind: ClassVar[str] = MASKED_LM
    loss_names: ClassVar[tuple[str, ...]] = ("mlm",)

    def configure(self, model: nn.Module) -> None:
        unused = family_of(model.config).masked_lm_unused  # BERT's pooler and NSP head: no loss reaches them
        for name, param in model.named_parameters():
            if name.startswith(unused):
                param.requires_grad_(False)

    @classmethod
    def from_args(cls, tokenizer, args, **fields):
        masking = MaskingSettings(args.masked_lm_prob, args.max_predictions_per_seq, args.whole_word_mask,
                                  args.static_masks, args.mask_spans, args.mask_shares)
        continuation = continuation_mask(tokenizer.vocab) if masking.whole_word or masking.spans else None
        return super().from_args(tokenizer, args, masking=masking, is_continuation=continuation, **fields)

    def make_batch(self, rows, indices, epoch):
        batch = packed_inputs(rows, self.special.pad)
        input_ids, labels = batch["input_ids"].numpy().copy(), np.full(batch["input_ids"].shape, IGNORE_INDEX)
        m = self.masking
        mask_epoch = 0 if m.static_masks and epoch >= 0 else epoch
        continues = rows.get("continues") if m.whole_word or m.spans else None  # (B, T) bool
        for r, (i, n) in enumerate(zip(indices, rows["lengths"])):
            masked = mask_tokens(rows["tokens"][r, :n], self.special, m.masked_lm_prob, m.max_predictions_per_seq,
                                 rng=instance_generator(self.seed, mask_epoch, i), whole_word=m.whole_word,
                                 is_continuation=self.is_continuation, mix=m.mix, spans=m.spans,
                                 continues=None if continues is None else continues[r, :n])
            input_ids[r, :n] = masked.input_ids
            labels[r, :n] = masked.labels
        return {**batch, "input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels)}

    def counts(self, batch):
        return {"mlm": int((batch["labels"] != IGNORE_INDEX).sum())}

    def _forward(self, model, batch, **pair_labels):
        return model(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
                     attention_mask=batch["attention_mask"], labels=batch["labels"], **pair_labels)

    def losses(self, model, batch):
        return {"mlm": self._forward(model, batch).mlm_loss}

    def eval_sums(self, model, batch):
        return self._mlm_sums(self._forward(model, batch), batch)

    def _mlm_sums(self, out, batch) -> dict[str, tuple[float, int]]:
        """Loss and accuracy over the predicted positions, and the accuracy at the [MASK]ed ones alone (the
        10% left unchanged can be copied, so the first accuracy flatters a model that merely copies)."""
        chosen = batch["labels"] != IGNORE_INDEX
        targets = batch["labels"][chosen]
        right = out.prediction_logits.argmax(-1) == targets
        at_mask = batch["input_ids"][chosen] == self.special.mask
        n = targets.numel()
        return {"mlm_loss": (out.mlm_loss.item() * n, n), "mlm_accuracy": (right.sum().item(), n),
                "masked_accuracy": ((right & at_mask).sum().item(), int(at_mask.sum()))}


@dataclass
class MaskedLMWithNSP(MaskedLM):
    """MLM plus next-sentence prediction on ``[CLS] A [SEP] B [SEP]`` pairs whose B is the real next text
    half of the time (Google's instances); the NSP head reads the pooled [CLS] vector."""

    name: ClassVar[str] = "mlm+nsp"
    head_kind: ClassVar[str] = PRETRAINING
    pairs: ClassVar[str | None] = "random-next"
    loss_names: ClassVar[tuple[str, ...]] = ("mlm", "nsp")

    def configure(self, model):
        pass

    def _forward(self, model, batch):
        return super()._forward(model, batch, next_sentence_label=batch["next_sentence_label"])

    def make_batch(self, rows, indices, epoch):
        batch = super().make_batch(rows, indices, epoch)
        batch["next_sentence_label"] = torch.from_numpy(rows["is_random_next"].astype(np.int64))
        return batch

    def counts(self, batch):
        return {**super().counts(batch), "nsp": len(batch["input_ids"])}

    def losses(self, model, batch):
        out = self._forward(model, batch)
        return {"mlm": out.mlm_loss, "nsp": out.nsp_loss}

    def eval_sums(self, model, batch):
        out = self._forward(model, batch)
        nsp_right = (out.seq_relationship_logits.argmax(-1) == batch["next_sentence_label"]).sum().item()
        return {**self._mlm_sums(out, batch), "nsp_accuracy": (nsp_right, len(batch["input_ids"]))}


@dataclass
class MaskedLMWithSOP(MaskedLMWithNSP):
    """MLM plus ALBERT's sentence-order prediction on the NSP head: A and B are consecutive text, and
    half of the time (drawn per instance and epoch) they are swapped, ``[CLS] B [SEP] A [SEP]``: label 1.
    (As in ALBERT, a one-sentence chunk takes a random B, also labelled 1.)"""

    name: ClassVar[str] = "mlm+sop"
    pairs: ClassVar[str | None] = "consecutive"
    loss_names: ClassVar[tuple[str, ...]] = ("mlm", "sop")

    def make_batch(self, rows, indices, epoch):
        rows = {k: np.array(v) for k, v in rows.items()}
        epoch_ = 0 if self.masking.static_masks and epoch >= 0 else epoch
        for r, i in enumerate(indices):
            if rows["is_random_next"][r] or not np.random.default_rng([self.seed, epoch_ + 1, int(i), 1]).random() < 0.5:
                continue
            n, b = int(rows["lengths"][r]), int(rows["b_start"][r])
            for name in ("tokens", "continues"):  # the word boundaries move with their pieces
                if name not in rows:
                    continue
                t = rows[name][r]
                a_part, b_part = t[1:b - 1].copy(), t[b:n - 1].copy()
                t[1:1 + len(b_part)] = b_part
                t[1 + len(b_part)] = self.special.sep if name == "tokens" else False
                t[2 + len(b_part):n - 1] = a_part
            rows["b_start"][r] = len(b_part) + 2
            rows["is_random_next"][r] = 1  # "swapped"
        batch = super().make_batch(rows, indices, epoch)
        batch["sentence_order_label"] = batch.pop("next_sentence_label")
        return batch

    def counts(self, batch):
        return {"mlm": int((batch["labels"] != IGNORE_INDEX).sum()), "sop": len(batch["input_ids"])}

    def _forward(self, model, batch):
        return MaskedLM._forward(self, model, batch, next_sentence_label=batch["sentence_order_label"])

    def losses(self, model, batch):
        out = self._forward(model, batch)
        return {"mlm": out.mlm_loss, "sop": out.nsp_loss}

    def eval_sums(self, model, batch):
        sums = super().eval_sums(model, {**batch, "next_sentence_label": batch["sentence_order_label"]})
        sums["sop_accuracy"] = sums.pop("nsp_accuracy")
        return sums
