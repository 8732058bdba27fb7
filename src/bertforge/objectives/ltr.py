"""Left-to-right language modelling: GPT's objective on BERT's encoder with a causal mask (the paper's
"LTR & No NSP"): every position predicts the next token of packed text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from bertforge.constants import IGNORE_INDEX
from bertforge.model.registry import CAUSAL_LM
from bertforge.objectives.base import Objective, packed_inputs


@dataclass
class LeftToRight(Objective):
    name: ClassVar[str] = "ltr"
    head_kind: ClassVar[str] = CAUSAL_LM
    loss_names: ClassVar[tuple[str, ...]] = ("ltr",)

    @classmethod
    def adapt_config(cls, config) -> None:
        config.is_decoder = True

    def load_model(self, source, **overrides) -> nn.Module:
        """A bidirectional checkpoint continues as a left-to-right one (its attention becomes causal)."""
        return super().load_model(source, **{"is_decoder": True, **overrides})

    def make_batch(self, rows, indices, epoch):
        batch = packed_inputs(rows, self.special.pad)
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
        return batch

    def counts(self, batch):
        return {"ltr": int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())}  # tokens with a token before them

    def _forward(self, model, batch):
        return model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], labels=batch["labels"])

    def losses(self, model, batch):
        return {"ltr": self._forward(model, batch).loss}

    def lm_targets(self, batch):
        targets, previous = batch["labels"][:, 1:], batch["labels"][:, :-1]
        real = targets != IGNORE_INDEX
        return previous[real], targets[real]

    def eval_sums(self, model, batch):
        out = self._forward(model, batch)
        targets = batch["labels"][:, 1:]
        targets = targets[targets != IGNORE_INDEX]
        n = targets.numel()
        return {"ltr_loss": (out.loss.item() * n, n), "ltr_accuracy": ((out.logits.argmax(-1) == targets).sum().item(), n)}
