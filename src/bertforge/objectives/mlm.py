"""Masked language modelling (BERT's MLM, Google's masking rules), alone on packed text ("No NSP",
RoBERTa's FULL-SENTENCES) or with next-sentence prediction on sentence pairs (the original BERT)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from bertforge.constants import IGNORE_INDEX
from bertforge.data.masking import mask_tokens
from bertforge.objectives.base import Objective, instance_generator, packed_inputs


@dataclass(frozen=True)
class MaskingSettings:
    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    whole_word: bool = False
    static_masks: bool = False  # one mask per instance for the whole run (Google's original)


def continuation_mask(vocab: dict[str, int]) -> np.ndarray:
    """(V,) bool: True for ``##`` pieces, for whole-word masking."""
    out = np.zeros(len(vocab), dtype=bool)
    for token, i in vocab.items():
        out[i] = token.startswith("##")
    return out


@dataclass
class MaskedLM(Objective):
    """15% of the tokens chosen (80% [MASK], 10% random, 10% kept), the original predicted at those alone.

    Each instance's mask is drawn from a generator seeded by (seed, epoch, index): new masks every
    epoch (dynamic masking), or one per instance with ``static_masks``.
    """

    masking: MaskingSettings = MaskingSettings()
    is_continuation: np.ndarray | None = None  # (V,) bool, for whole-word masking

    name: ClassVar[str] = "mlm"
    loss_names: ClassVar[tuple[str, ...]] = ("mlm",)

    def model_class(self) -> type:
        from bertforge.model import BertForPreTraining

        return BertForPreTraining

    def configure(self, model: nn.Module) -> None:
        model.bert.pooler.requires_grad_(False)  # no loss reaches the pooler and the NSP head
        model.cls.seq_relationship.requires_grad_(False)

    @classmethod
    def from_args(cls, tokenizer, args, **fields):
        masking = MaskingSettings(args.masked_lm_prob, args.max_predictions_per_seq, args.whole_word_mask,
                                  args.static_masks)
        continuation = continuation_mask(tokenizer.vocab) if masking.whole_word else None
        return super().from_args(tokenizer, args, masking=masking, is_continuation=continuation, **fields)

    def make_batch(self, rows, indices, epoch):
        batch = packed_inputs(rows, self.special.pad)
        input_ids, labels = batch["input_ids"].numpy().copy(), np.full(batch["input_ids"].shape, IGNORE_INDEX)
        m = self.masking
        mask_epoch = 0 if m.static_masks and epoch >= 0 else epoch
        for r, (i, n) in enumerate(zip(indices, rows["lengths"])):
            masked = mask_tokens(rows["tokens"][r, :n], self.special, m.masked_lm_prob, m.max_predictions_per_seq,
                                 rng=instance_generator(self.seed, mask_epoch, i), whole_word=m.whole_word,
                                 is_continuation=self.is_continuation)
            input_ids[r, :n] = masked.input_ids
            labels[r, :n] = masked.labels
        return {**batch, "input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels)}

    def counts(self, batch):
        return {"mlm": int((batch["labels"] != IGNORE_INDEX).sum())}

    def _forward(self, model, batch):
        return model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], labels=batch["labels"],
                     next_sentence_label=batch.get("next_sentence_label"))

    def losses(self, model, batch):
        return {"mlm": self._forward(model, batch).mlm_loss}

    def eval_sums(self, model, batch):
        out = self._forward(model, batch)
        targets = batch["labels"][batch["labels"] != IGNORE_INDEX]
        n = targets.numel()
        return {"mlm_loss": (out.mlm_loss.item() * n, n),
                "mlm_accuracy": ((out.prediction_logits.argmax(-1) == targets).sum().item(), n)}


@dataclass
class MaskedLMWithNSP(MaskedLM):
    """MLM plus next-sentence prediction on ``[CLS] A [SEP] B [SEP]`` pairs whose B is the real next text
    half of the time (Google's instances); the NSP head reads the pooled [CLS] vector."""

    name: ClassVar[str] = "mlm+nsp"
    pairs: ClassVar[str | None] = "random-next"
    loss_names: ClassVar[tuple[str, ...]] = ("mlm", "nsp")

    def configure(self, model):
        pass

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
        targets = batch["labels"][batch["labels"] != IGNORE_INDEX]
        n, b = targets.numel(), len(batch["input_ids"])
        nsp_right = (out.seq_relationship_logits.argmax(-1) == batch["next_sentence_label"]).sum().item()
        return {"mlm_loss": (out.mlm_loss.item() * n, n),
                "mlm_accuracy": ((out.prediction_logits.argmax(-1) == targets).sum().item(), n),
                "nsp_accuracy": (nsp_right, b)}
