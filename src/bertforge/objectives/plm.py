"""Permutation language modelling (XLNet): a random factorisation order per sequence, the last 1/K of it
predicted from the tokens before it in the order, with two-stream attention (``model/xlnet``).

Targets are plain random orders over each sequence's real, non-special tokens (not XLNet's span
sampling, which needs word-start marks a WordPiece vocabulary does not carry); see
``model/xlnet/permutation.py``. Each sequence's order is drawn from its own generator, seeded by
(seed, epoch, index), so runs resume and split across ranks exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from bertforge.constants import IGNORE_INDEX
from bertforge.model.registry import PERMUTATION_LM
from bertforge.objectives.base import Objective, instance_generator, packed_inputs


@dataclass
class PermutationLM(Objective):
    k: int = 6  # predict the last 1/K of each order (XLNet's partial prediction)

    name: ClassVar[str] = "plm"
    head_kind: ClassVar[str] = PERMUTATION_LM
    loss_names: ClassVar[tuple[str, ...]] = ("plm",)

    @classmethod
    def from_args(cls, tokenizer, args, **fields):
        return super().from_args(tokenizer, args, k=args.plm_k, **fields)

    def make_batch(self, rows, indices, epoch):
        from bertforge.model.xlnet import sample_permutation

        batch = packed_inputs(rows, self.special.pad)
        ids, B, T = batch["input_ids"], *batch["input_ids"].shape
        special = torch.tensor(sorted(set(self.special.all)))
        perm_mask = torch.ones(B, T, T)
        mappings, labels = [], []
        for r, (i, n) in enumerate(zip(indices, rows["lengths"])):
            row = ids[r:r + 1, :n]
            seed = int(instance_generator(self.seed, epoch, i).integers(1 << 62))
            p = sample_permutation(row, None, ~torch.isin(row, special), self.k,
                                   torch.Generator().manual_seed(seed))
            perm_mask[r, :n, :n] = p.perm_mask[0]
            mappings.append(p.target_mapping[0])  # (N_r, n)
            labels.append(p.labels[0])
        N = max(len(x) for x in labels)
        target_mapping = torch.zeros(B, N, T)
        batch["labels"] = torch.full((B, N), IGNORE_INDEX, dtype=torch.long)
        for r, (m, lab) in enumerate(zip(mappings, labels)):
            target_mapping[r, :m.shape[0], :m.shape[1]] = m
            batch["labels"][r, :len(lab)] = lab
        batch["perm_mask"], batch["target_mapping"] = perm_mask, target_mapping
        return batch

    def counts(self, batch):
        return {"plm": int((batch["labels"] != IGNORE_INDEX).sum())}

    def _forward(self, model, batch):
        return model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                     perm_mask=batch["perm_mask"], target_mapping=batch["target_mapping"], labels=batch["labels"])

    def losses(self, model, batch):
        return {"plm": self._forward(model, batch).loss}

    def eval_sums(self, model, batch):
        out = self._forward(model, batch)
        real = batch["labels"] != IGNORE_INDEX
        n = int(real.sum())
        right = (out.logits.argmax(-1)[real] == batch["labels"][real]).sum().item()
        return {"plm_loss": (out.loss.item() * n, n), "plm_accuracy": (right, n)}
