"""BERT variants for the recipe study that are not flags: each patches bertforge's BERT, then runs
``bertforge pretrain`` with the remaining arguments. They answer "is it post-LN, or the position embeddings,
that holds a small BERT at the unigram stage?" (docs/recipes.md).

    VARIANT=pre-ln .venv/bin/python experiments/recipe_variants.py pretrain --corpus ... --objective mlm ...
    VARIANT=sinusoidal-positions .venv/bin/python experiments/recipe_variants.py pretrain ...

- ``pre-ln``: each layer normalises its input instead of its output (x + f(LN(x))), with the same weights.
- ``sinusoidal-positions``: the learned position embeddings start as the Transformer's sinusoids (scaled to
  ``SCALE``, default 0.03, about the size of BERT's initial embeddings) instead of N(0, 0.02).
Without VARIANT the script is plain ``bertforge``.
"""

from __future__ import annotations

import math
import os
import sys

import torch

from bertforge.cli import main as bertforge
from bertforge.model import encoder
from bertforge.objectives import mlm

VARIANT = os.environ.get("VARIANT", "")


def sinusoids(n: int, d: int, scale: float) -> torch.Tensor:
    position = torch.arange(n).float()[:, None]
    frequency = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2).float() / d)
    table = torch.zeros(n, d)
    table[:, 0::2], table[:, 1::2] = torch.sin(position * frequency), torch.cos(position * frequency)
    return table * scale


def pre_ln_layer(self, x, mask, output_attentions=False, queries=None, query_positions=None):
    """BertLayer.forward with each sub-layer's LayerNorm moved in front of it."""
    attention, output = self.attention, self.output
    norm = attention.output.LayerNorm
    context, probs = attention.self(norm(x), mask, output_attentions, None if queries is None else norm(queries),
                                    query_positions)
    x = (x if queries is None else queries) + attention.output.dropout(attention.output.dense(context))
    return x + output.dropout(output.dense(self.intermediate(output.LayerNorm(x)))), probs


def patch() -> None:
    if VARIANT == "pre-ln":
        encoder.BertLayer.forward = pre_ln_layer
    elif VARIANT == "sinusoidal-positions":
        build = mlm.MaskedLM.build_model
        scale = float(os.environ.get("SCALE", "0.03"))

        def build_with_sinusoids(self, config):
            model = build(self, config)
            weight = model.bert.embeddings.position_embeddings.weight
            with torch.no_grad():
                weight.copy_(sinusoids(*weight.shape, scale))
            return model

        mlm.MaskedLM.build_model = build_with_sinusoids
    elif VARIANT:
        raise SystemExit(f"VARIANT must be pre-ln or sinusoidal-positions, not {VARIANT!r}")


if __name__ == "__main__":
    patch()
    bertforge(sys.argv[1:])
