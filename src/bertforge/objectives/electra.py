"""ELECTRA (Clark et al., 2020): replaced-token detection. A small generator (a masked LM, ``generator_size`` of
the discriminator's width, sharing its embeddings) fills BERT's masked positions with tokens sampled from its
softmax; the discriminator, the model kept for fine-tuning, tells for every real token whether it is the original
or a replacement. Loss: MLM(generator) + ``disc_weight`` (lambda = 50) x BCE(discriminator), on packed text.

The masks are the masked-LM objective's (``objectives/mlm.py``: the same settings and rules). The generator's
draws are inverse-CDF samples at uniforms drawn per instance from (seed, epoch, index), like the masks, so a run
repeats, resumes and splits over ranks exactly; no gradient flows through the sampling (``model/electra/pair.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from bertforge.constants import IGNORE_INDEX
from bertforge.errors import ConfigError
from bertforge.model.directory import ModelDir
from bertforge.model.registry import REPLACED_TOKEN, family_of
from bertforge.objectives.mlm import MaskedLM

SAMPLING_STREAM = 2  # the instance generator's extra key for the sampling uniforms (the masks use none, SOP 1)


@dataclass
class ReplacedTokenDetection(MaskedLM):
    generator_size: float = 0.25  # the generator's hidden size as a share of the discriminator's
    disc_weight: float = 50.0  # lambda: the weight of the discriminator's loss

    name: ClassVar[str] = "electra"
    head_kind: ClassVar[str] = REPLACED_TOKEN
    loss_names: ClassVar[tuple[str, ...]] = ("mlm", "weighted_rtd")  # weighted_rtd = disc_weight x BCE

    def __post_init__(self) -> None:
        from bertforge.model.electra.config import check_generator_size

        check_generator_size(self.generator_size)
        if not self.disc_weight > 0:
            raise ConfigError(f"setting 'disc_weight' must be > 0, got {self.disc_weight!r}")

    @classmethod
    def from_args(cls, tokenizer, args, **fields):
        return super().from_args(tokenizer, args, generator_size=args.generator_size, **fields)

    def build_model(self, config) -> nn.Module:
        return family_of(config).heads[self.head_kind](config, self.generator_size)

    def load_model(self, source, **overrides) -> nn.Module:
        """Continue an ELECTRA run's model directory (the discriminator, its generator in ``generator/``);
        ``overrides`` set config fields of both."""
        source = ModelDir.read(source)
        if self.head_kind not in source.family.heads:
            return super().load_model(source)  # the error that lists what would train it
        return source.family.heads[self.head_kind].from_pretrained(source.path, self.generator_size, **overrides)

    def configure(self, model: nn.Module) -> None:
        pass  # every weight gets a gradient: the generator from the MLM loss, the discriminator from RTD

    def make_batch(self, rows, indices, epoch):
        batch = super().make_batch(rows, indices, epoch)
        uniforms = np.zeros(batch["input_ids"].shape, dtype=np.float32)
        for r, (i, n) in enumerate(zip(indices, rows["lengths"])):
            uniforms[r, :n] = np.random.default_rng([self.seed, epoch + 1, int(i), SAMPLING_STREAM]).random(n)
        batch["uniforms"] = torch.from_numpy(uniforms)  # (B, T): read at the masked positions only
        return batch

    def counts(self, batch):
        return {"mlm": int((batch["labels"] != IGNORE_INDEX).sum()), "weighted_rtd": int(batch["attention_mask"].sum())}

    def _forward(self, model, batch):
        return model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch["labels"],
                     batch["uniforms"])

    def losses(self, model, batch):
        out = self._forward(model, batch)
        return {"mlm": out.mlm_loss, "weighted_rtd": self.disc_weight * out.rtd_loss}

    def eval_sums(self, model, batch):
        """The generator's MLM figures (``mlm_loss`` first: the held-out perplexity is the generator's), the
        discriminator's BCE (``rtd_loss``, and weighted as trained), its accuracy over the real tokens, and the
        share of real tokens the generator's samples replaced (falls as the generator learns)."""
        out = self._forward(model, batch)
        real = batch["attention_mask"].bool()
        n = int(real.sum())
        right = ((out.rtd_logits > 0).long() == out.rtd_labels)[real].sum().item()
        rtd = out.rtd_loss.item() * n
        return {**self._mlm_sums(out, batch), "weighted_rtd_loss": (self.disc_weight * rtd, n), "rtd_loss": (rtd, n),
                "rtd_accuracy": (right, n), "replaced_share": (out.rtd_labels[real].sum().item(), n)}
