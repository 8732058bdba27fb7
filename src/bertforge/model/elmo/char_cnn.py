"""The context-free token embedder: char embeddings -> convolutions max-pooled over the word -> highway -> projection.

As bilm-tf's ``_build_word_char_embeddings``: each filter is max-pooled over the character positions and
then activated; a highway layer is ``t * relu(x W_t + b_t) + (1 - t) * x`` with ``t = sigmoid(x W_c + b_c)``
(bilm-tf calls ``t`` the carry gate); the projection is skipped when the filters already have its size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.model.elmo.config import ElmoConfig


class Highway(nn.Module):
    """One bilm-tf highway layer over (N, D)."""

    def __init__(self, dim: int):
        super().__init__()
        self.carry = nn.Linear(dim, dim)
        self.transform = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.carry(x))
        return gate * F.relu(self.transform(x)) + (1.0 - gate) * x


class CharCNN(nn.Module):
    """(B, T, C) character ids (0 = padding) -> (B, T, projection_dim) token embeddings."""

    def __init__(self, config: ElmoConfig):
        super().__init__()
        self.output_dim = config.projection_dim
        self.char_embedding = nn.Embedding(config.n_characters, config.char_embedding_dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(config.char_embedding_dim, n, w) for w, n in config.filters)
        self.activation = torch.tanh if config.activation == "tanh" else F.relu
        self.highways = nn.ModuleList(Highway(config.n_filters) for _ in range(config.n_highway))
        self.projection = (nn.Linear(config.n_filters, config.projection_dim)
                           if config.n_filters != config.projection_dim else nn.Identity())

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        """Each distinct token of the batch is embedded once (on the CPU, where finding them is free).

        The embedding of a token depends on its characters alone, so this is exact. The convolutions dominated
        a training step, and a batch repeats most of its tokens: tiny preset, 32 x 128 Chinese pieces (439
        distinct of 4,096), a step took 2.0 s against 3.2 s with 2 threads. On an accelerator ``unique`` would
        wait for the device, so every position is embedded there.
        """
        B, T, C = char_ids.shape
        flat = char_ids.reshape(B * T, C)
        if flat.device.type != "cpu":
            return self.embed_tokens(flat).view(B, T, self.output_dim)
        distinct, where = torch.unique(flat, dim=0, return_inverse=True)
        return self.embed_tokens(distinct)[where].view(B, T, self.output_dim)  # (B, T, P)

    def embed_tokens(self, char_ids: torch.Tensor) -> torch.Tensor:
        """(N, C) character ids -> (N, projection_dim): one embedding per row."""
        chars = self.char_embedding(char_ids[:, : self.needed_characters(char_ids)]).transpose(1, 2)  # (N, E, C')
        x = torch.cat([self.activation(conv(chars).max(dim=-1).values) for conv in self.convs], dim=-1)  # (N, F)
        for highway in self.highways:
            x = highway(x)
        return self.projection(x)

    def needed_characters(self, char_ids: torch.Tensor) -> int:
        """How many leading characters of (N, C) ids give every row's max-pooled filters exactly.

        A row ends in a run of one id (bilm-tf's padding character after the word; 0 for no token), and every
        window inside that run has the same value. So the max over all windows equals the max over the windows
        that start before the run, plus one inside it: the characters past the longest row's word and one
        widest filter change nothing. A piece has a few characters of 50, so this skips most of the convolution.
        The max's gradient is unchanged too: windows inside the run have identical inputs.
        """
        C = char_ids.shape[1]
        differs = char_ids != char_ids[:, -1:]  # (N, C): before the row's final run
        positions = torch.arange(1, C + 1, device=char_ids.device)
        word = int((differs * positions).amax()) if char_ids.numel() else 0
        return min(C, word + max(conv.kernel_size[0] for conv in self.convs))

    def reset_parameters(self) -> None:
        """bilm-tf's initialisation: uniform chars, Kim et al.'s convolutions, highway gates biased to carry."""
        with torch.no_grad():
            nn.init.uniform_(self.char_embedding.weight, -1.0, 1.0)
            self.char_embedding.weight[0].zero_()
            for conv in self.convs:
                width, dim = conv.kernel_size[0], conv.in_channels
                if self.activation is torch.tanh:
                    nn.init.normal_(conv.weight, 0.0, (1.0 / (width * dim)) ** 0.5)
                else:
                    nn.init.uniform_(conv.weight, -0.05, 0.05)
                conv.bias.zero_()
            for highway in self.highways:
                dim = highway.carry.in_features
                for linear, bias in ((highway.carry, -2.0), (highway.transform, 0.0)):
                    nn.init.normal_(linear.weight, 0.0, (1.0 / dim) ** 0.5)
                    linear.bias.fill_(bias)
            if isinstance(self.projection, nn.Linear):
                nn.init.normal_(self.projection.weight, 0.0, (1.0 / self.projection.in_features) ** 0.5)
                self.projection.bias.zero_()
