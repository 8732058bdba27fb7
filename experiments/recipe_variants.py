"""BERT variants for the recipe study that are not flags: each patches bertforge's BERT, then runs
``bertforge pretrain`` with the remaining arguments. They answer "is it post-LN, or the position embeddings,
that holds a small BERT at the unigram stage?" (docs/recipes.md).

    VARIANT=pre-ln .venv/bin/python experiments/recipe_variants.py pretrain --corpus ... --objective mlm ...
    VARIANT=sinusoidal-positions .venv/bin/python experiments/recipe_variants.py pretrain ...
    VARIANT=rotary .venv/bin/python experiments/recipe_variants.py pretrain ...

- ``pre-ln``: each layer normalises its input instead of its output (x + f(LN(x))), with the same weights.
- ``sinusoidal-positions``: the learned position embeddings start as the Transformer's sinusoids (scaled to
  ``SCALE``, default 0.03, about the size of BERT's initial embeddings) instead of N(0, 0.02).
- ``rotary``: RoFormer's positions: no position table (zeroed and frozen), queries and keys rotated by their
  positions (base ``THETA``, default 10,000, as ModernBERT's local layers) in every self-attention layer. The
  padded attention path is forced (the patch does not reach the packed one); the results are the same. With
  ``--objective electra`` both the generator and the discriminator are patched.
Without VARIANT the script is plain ``bertforge``.
"""

from __future__ import annotations

import math
import os
import sys

import torch

from bertforge.cli import main as bertforge
from bertforge.model import attention, encoder
from bertforge.model.modernbert.attention import rotary, rotate
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


_OUTPUT_POSITIONS = [None]  # the encoder's output_positions, which the padded path does not pass to the layers


def encoder_keeping_positions(forward):
    def patched(self, x, mask, output_hidden_states=False, output_attentions=False, output_positions=None):
        _OUTPUT_POSITIONS[0] = output_positions
        return forward(self, x, mask, output_hidden_states, output_attentions, output_positions)
    return patched


def rotary_self_attention(self, x, mask, output_attentions=False, queries=None, query_positions=None):
    """BertSelfAttention.forward (padded path) with RoFormer's rotary positions on the queries and keys."""
    B, T, _ = x.shape
    theta = float(os.environ.get("THETA", "10000"))
    key_pos = torch.arange(T, device=x.device)
    q_pos = key_pos if queries is None else _OUTPUT_POSITIONS[0]  # (T,) or (B, S): the masked LM's positions
    q = self.query(x if queries is None else queries).view(B, -1, self.num_heads, self.head_size)  # (B, S, A, D)
    k = self.key(x).view(B, T, self.num_heads, self.head_size)
    q, k = rotate(q, *rotary(q_pos, self.head_size, theta, q.dtype)), rotate(k, *rotary(key_pos, self.head_size,
                                                                                        theta, k.dtype))
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), self._heads(self.value(x))
    context = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                               dropout_p=self.dropout_p if self.training else 0.0)
    return context.transpose(1, 2).reshape(B, q.shape[2], -1), None


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
    elif VARIANT == "rotary":
        attention.BertSelfAttention.forward = rotary_self_attention
        encoder.BertEncoder.forward = encoder_keeping_positions(encoder.BertEncoder.forward)
        build = mlm.MaskedLM.build_model

        def build_rotary(self, config):
            model = build(self, config)
            model.bert.unpad_threshold = 2.0  # never unpad: the patched attention is the padded path
            table = model.bert.embeddings.position_embeddings.weight
            with torch.no_grad():
                table.zero_()
            table.requires_grad_(False)
            return model

        mlm.MaskedLM.build_model = build_rotary

        from bertforge.objectives import electra
        build_pair = electra.ReplacedTokenDetection.build_model

        def build_rotary_pair(self, config):  # ELECTRA: the generator and the discriminator, one shared table
            pair = build_pair(self, config)
            for model in (pair.generator.electra, pair.discriminator.electra):
                model.unpad_threshold = 2.0
                table = model.embeddings.position_embeddings.weight
                with torch.no_grad():
                    table.zero_()
                table.requires_grad_(False)
            return pair

        electra.ReplacedTokenDetection.build_model = build_rotary_pair
    elif VARIANT:
        raise SystemExit(f"VARIANT must be pre-ln, sinusoidal-positions or rotary, not {VARIANT!r}")


if __name__ == "__main__":
    patch()
    bertforge(sys.argv[1:])
