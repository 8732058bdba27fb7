"""ElmoFeatures: ELMo as a feature extractor, a frozen biLM under a learned scalar mix of its layers.

As in the ELMo paper, a task model learns only ``gamma * sum_j softmax(w)_j * h_j``; the biLM runs without
gradients and without dropout (eval mode) even while the task model trains. Sentences are wrapped in
``<S>``/``</S>`` for the biLM and the markers are removed again, so there is one vector per word.
"""

from __future__ import annotations

import torch
from torch import nn

from bertforge.model.elmo.bilm import ElmoBiLM
from bertforge.model.elmo.chars import add_sentence_boundaries, batch_to_char_ids, remove_sentence_boundaries
from bertforge.model.scalar_mix import ScalarMix


class ElmoFeatures(nn.Module):
    """(B, T, C) character ids of words -> (B, T, 2P) mixed ELMo vectors (zero past each sentence)."""

    def __init__(self, bilm: ElmoBiLM):
        super().__init__()
        self.bilm = bilm.requires_grad_(False).eval()
        self.mix = ScalarMix(bilm.num_layers)

    def train(self, mode: bool = True) -> "ElmoFeatures":
        super().train(mode)
        self.bilm.eval()  # the biLM's dropout stays off
        return self

    def forward(self, char_ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = (char_ids > 0).any(-1) if mask is None else mask.bool()  # (B, T)
        char_ids, full_mask = add_sentence_boundaries(char_ids, mask)
        with torch.no_grad():
            layers = self.bilm(char_ids, full_mask)  # (B, L, T + 2, 2P)
        layers, _ = remove_sentence_boundaries(layers, full_mask)  # (B, L, T, 2P)
        return self.mix(layers.unbind(1))

    def embed(self, sentences: list[list[str]]) -> torch.Tensor:
        """The features of a batch of token lists (stateless: each sentence from zero states)."""
        device = next(self.mix.parameters()).device
        return self(batch_to_char_ids(sentences, self.bilm.config.max_characters_per_token).to(device))
