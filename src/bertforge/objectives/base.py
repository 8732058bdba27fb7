"""A pre-training objective as data: what its instances store, how it corrupts a batch of them, which
model it trains, and its losses, each a mean over a count of items known before the forward pass.

The training loop knows nothing else about objectives: it asks for ``counts`` (summed over
micro-batches and ranks), weights each micro-batch's mean losses by its share of those counts (so an
optimizer step's objective is the global mean whatever the process layout), and logs and evaluates
what ``losses`` and ``evaluate`` return. A new objective is one new module.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from bertforge.constants import IGNORE_INDEX
from bertforge.data.masking import SpecialIds
from bertforge.errors import ConfigError
from bertforge.model.directory import ModelDir
from bertforge.model.registry import family_of
from bertforge.objectives.count_lm import CountLM


@dataclass
class Objective:
    """Base of every objective; subclasses set the class variables and implement the methods."""

    special: SpecialIds  # the tokenizer's special ids and vocabulary size
    seed: int  # every random choice of a batch is seeded by (seed, epoch, instance index)

    name: ClassVar[str]
    # The model it trains, by head kind (bertforge.model.registry): every family with that head can train on it.
    head_kind: ClassVar[str]
    pairs: ClassVar[str | None] = None  # instances: "random-next" (NSP) or "consecutive" sentence pairs, or None: packed text
    loss_names: ClassVar[tuple[str, ...]]  # the keys of ``counts`` and ``losses``, in logging order
    # Count baselines of the training split (set by the run): held-out figures then say what frequencies give.
    count_lm: ClassVar[CountLM | None] = None

    @classmethod
    def from_args(cls, tokenizer, args: Any, **fields: Any) -> "Objective":
        """The objective of a run: the tokenizer's special ids, the seed, and whatever fields a subclass
        reads from the run's settings (``PretrainArgs``: masking, --plm-k...)."""
        from bertforge.data.prepare import special_ids

        return cls(special_ids(tokenizer), args.seed, **fields)

    @classmethod
    def adapt_config(cls, config) -> None:
        """Set what the objective needs in a model config (before data is prepared: resume checks see it)."""

    def build_model(self, config) -> nn.Module:
        """A freshly initialised model for this objective, of ``config``'s family."""
        return family_of(config).heads[self.head_kind](config)

    def load_model(self, source: ModelDir | str | os.PathLike, **overrides: Any) -> nn.Module:
        """Continue pre-training a saved model (``--init-from``); ``overrides`` set config fields. A family this
        objective cannot train is a ConfigError listing the objectives that would."""
        from bertforge.objectives import objectives_for

        source = ModelDir.read(source)
        family = source.family
        if self.head_kind not in family.heads:
            raise ConfigError(f"{source.path} holds a {family.name} model, and the {self.name} objective does not "
                              f"train it: its weights do not carry over", hint=f"objectives for a {family.name} "
                              f"model: {', '.join(objectives_for(family)) or 'none (bertforge does not pre-train it)'}")
        return family.heads[self.head_kind].from_pretrained(source.path, **overrides)

    def configure(self, model: nn.Module) -> None:
        """Freeze what no loss of this objective reaches (DDP requires every trained weight to get a gradient)."""

    def make_batch(self, rows: dict[str, np.ndarray], indices: np.ndarray, epoch: int) -> dict[str, torch.Tensor]:
        """Model inputs and targets from stored instances (``rows``: the store's arrays at ``indices``);
        ``epoch`` -1 is for evaluation (fixed corruption)."""
        raise NotImplementedError

    def counts(self, batch: dict[str, torch.Tensor]) -> dict[str, int]:
        """How many items each loss averages over in ``batch`` (computed on the host, before forward)."""
        raise NotImplementedError

    def losses(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each loss of ``batch`` as a mean over its ``counts`` items (0-dim tensors on the model's device)."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: list[dict[str, torch.Tensor]], device: torch.device
                 ) -> dict[str, float]:
        """Held-out figures: ``eval_{loss}_loss`` per loss, ``eval_perplexity`` of the first (the LM loss)
        and what ``eval_sums`` adds; every figure is a total over all batches divided by its count."""
        was_training = model.training
        model.eval()
        sums: dict[str, float] = {}
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            for key, (total, count) in self.eval_sums(model, batch).items():
                s, n = sums.get(key, (0.0, 0))
                sums[key] = (s + total, n + count)
        model.train(was_training)
        result = {f"eval_{k}": s / max(n, 1) for k, (s, n) in sums.items()}
        lm_loss = result.get(f"eval_{self.loss_names[0]}_loss")
        if lm_loss is not None:
            result["eval_perplexity"] = math.exp(min(lm_loss, 50))
            result.update(self._count_baselines(batches, lm_loss))
        return result

    def lm_targets(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor] | None:
        """The targets of the held-out LM loss, in one flat tensor, and the piece before each where the
        objective reads left to right (else None); None when the loss has no single target per item."""
        labels = batch.get("labels")
        return None if labels is None else (None, labels[labels != IGNORE_INDEX])

    def _count_baselines(self, batches: list[dict[str, torch.Tensor]], lm_loss: float) -> dict[str, float]:
        """Unigram (and bigram) perplexity of the same held-out targets, and how far the LM loss is below."""
        if self.count_lm is None:
            return {}
        uni = bi = 0.0
        n = 0
        for batch in batches:
            found = self.lm_targets(batch)
            if found is None:
                return {}
            previous, targets = found
            uni += self.count_lm.unigram_nll(targets.cpu().numpy())
            if previous is not None:
                bi += self.count_lm.bigram_nll(previous.cpu().numpy(), targets.cpu().numpy())
            n += targets.numel()
        if n == 0:
            return {}
        out = {"eval_unigram_perplexity": math.exp(uni / n), "eval_nats_below_unigram": uni / n - lm_loss,
               "eval_perplexity_vs_unigram": math.exp(min(lm_loss - uni / n, 50))}
        if previous is not None:
            out.update(eval_bigram_perplexity=math.exp(bi / n), eval_nats_below_bigram=bi / n - lm_loss)
        return out

    def eval_sums(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, tuple[float, int]]:
        """(total, count) pairs of one evaluation batch, e.g. ``{"mlm_loss": (sum, n), "mlm_accuracy": ...}``."""
        raise NotImplementedError



def packed_inputs(rows: dict[str, np.ndarray], pad: int) -> dict[str, torch.Tensor]:
    """input_ids, token_type_ids and attention_mask (B, T) of stored instances, T the longest of them;
    segment B (token type 1) starts at ``b_start`` (== length when there is none)."""
    width = int(rows["lengths"].max())
    positions = np.arange(width)[None, :]
    lengths, b_start = rows["lengths"][:, None].astype(np.int64), rows["b_start"][:, None]
    input_ids = np.where(positions < lengths, rows["tokens"][:, :width].astype(np.int64), pad)
    return {"input_ids": torch.from_numpy(input_ids),
            "token_type_ids": torch.from_numpy(((positions >= b_start) & (positions < lengths)).astype(np.int64)),
            "attention_mask": torch.from_numpy((positions < lengths).astype(np.int64))}


def instance_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one instance's random choices in one epoch (-1: evaluation), the same wherever the
    instance lands (which rank, which micro-batch), so runs resume and split exactly."""
    return np.random.default_rng([seed, epoch + 1, int(index)])
