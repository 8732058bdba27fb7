"""ELMo's scalar mix: a task-learned softmax-weighted sum of a model's layers, times a scale gamma."""

from __future__ import annotations

import torch
from torch import nn


class ScalarMix(nn.Module):
    """gamma * sum_j softmax(w)_j * h_j over the encoder's L + 1 hidden states."""

    def __init__(self, n_layers: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(n_layers))
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, layers: tuple[torch.Tensor, ...]) -> torch.Tensor:
        w = self.weights.softmax(0)
        return self.gamma * sum(w[j] * h for j, h in enumerate(layers))
