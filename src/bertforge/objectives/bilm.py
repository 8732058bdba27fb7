"""ELMo's objective: a forward LSTM language model predicts each next token and a backward one each
previous token, over the shared WordPiece vocabulary (``model/elmo/pieces.py``), on packed text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from torch import nn

from bertforge.model.registry import BILM, family_of
from bertforge.objectives.base import Objective, packed_inputs


@dataclass
class BidirectionalLM(Objective):
    pieces: list[str] = field(default_factory=list)  # the vocabulary, for the pieces' character table

    name: ClassVar[str] = "bilm"
    head_kind: ClassVar[str] = BILM
    loss_names: ClassVar[tuple[str, ...]] = ("forward", "backward")

    @classmethod
    def from_args(cls, tokenizer, args, **fields):
        vocab = tokenizer.vocab
        return super().from_args(tokenizer, args, pieces=sorted(vocab, key=vocab.__getitem__), **fields)

    def build_model(self, config) -> nn.Module:
        return family_of(config).heads[self.head_kind](config, self.pieces)

    def make_batch(self, rows, indices, epoch):
        return packed_inputs(rows, self.special.pad)

    def counts(self, batch):
        n = int(batch["attention_mask"].sum()) - len(batch["attention_mask"])  # every token but one per row
        return {"forward": n, "backward": n}

    def _forward(self, model, batch):
        return model(batch["input_ids"], batch["attention_mask"])

    def losses(self, model, batch):
        out = self._forward(model, batch)
        return {"forward": out.forward_loss, "backward": out.backward_loss}

    def eval_sums(self, model, batch):
        out = self._forward(model, batch)
        return {"forward_loss": (out.forward_sum.item(), int(out.forward_count)),
                "backward_loss": (out.backward_sum.item(), int(out.backward_count))}
