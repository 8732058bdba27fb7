"""ELMo's forward and backward LSTM stacks, as bilm-tf builds them with TF's ``LSTMCell``.

Each layer is an LSTM whose memory is clipped to +-cell_clip and whose output is projected to
``projection_dim`` and clipped to +-proj_clip; from the second layer on, the layer's input is added
to its output (the skip connection). The backward stack reads each sentence reversed within its own
length, as ``tf.reverse_sequence`` does, so padding never reaches a real position. Gates are in
PyTorch's order (input, forget, cell, output); TF's forget bias of 1.0 lives inside the bias.

Both directions of a layer run together through ``recurrence.lstm_layer`` (one batched matmul per step,
a hand-written backward pass).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bertforge.model.dropout import dropout
from bertforge.model.elmo.config import ElmoConfig
from bertforge.model.elmo.recurrence import lstm_layer

State = tuple[torch.Tensor, torch.Tensor]  # h (..., B, P), c (..., B, cell)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row of x (B, T, D) within its first ``lengths[b]`` positions; the rest stays put."""
    T = x.shape[1]
    t = torch.arange(T, device=x.device)[None]  # (1, T)
    index = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (B, T)
    return x.gather(1, index[..., None].expand_as(x))


class LstmLayer(nn.Module):
    """One direction of one layer: (B, T, in) -> (B, T, P) outputs (zero past each row's end) and final (h, c)."""

    def __init__(self, input_dim: int, cell_dim: int, output_dim: int,
                 cell_clip: float | None, proj_clip: float | None):
        super().__init__()
        self.cell_dim, self.output_dim = cell_dim, output_dim
        self.cell_clip, self.proj_clip = cell_clip, proj_clip
        self.input_linear = nn.Linear(input_dim, 4 * cell_dim, bias=False)
        self.state_linear = nn.Linear(output_dim, 4 * cell_dim)
        self.projection = nn.Linear(cell_dim, output_dim, bias=False) if output_dim < cell_dim else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """TF's defaults: Glorot-uniform over the joint [input; state] kernel, zero bias, forget bias 1."""
        fan_in = self.input_linear.in_features + self.output_dim
        bound = math.sqrt(6.0 / (fan_in + 4 * self.cell_dim))
        with torch.no_grad():
            nn.init.uniform_(self.input_linear.weight, -bound, bound)
            nn.init.uniform_(self.state_linear.weight, -bound, bound)
            self.state_linear.bias.zero_()
            self.state_linear.bias[self.cell_dim: 2 * self.cell_dim] = 1.0
            if self.projection is not None:
                bound = math.sqrt(6.0 / (self.cell_dim + self.output_dim))
                nn.init.uniform_(self.projection.weight, -bound, bound)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """This direction alone: x (B, T, in), mask (B, T), state (B, P), (B, cell)."""
        live = None if bool(mask.all()) else mask.t().contiguous()  # (T, B)
        out, (h, c) = run_layers([self], x.transpose(0, 1)[None], live, state[0][None], state[1][None])
        return out[0].transpose(0, 1), (h[0], c[0])


def run_layers(layers: list[LstmLayer], x: torch.Tensor, live: torch.Tensor | None, h0: torch.Tensor,
               c0: torch.Tensor) -> tuple[torch.Tensor, State]:
    """D same-shaped layers (the directions), each over its own input: x (D, T, B, in), live (T, B) or None
    when every position is real, h0 (D, B, P), c0 (D, B, cell) -> outputs (D, T, B, P), zero past each row's
    end, and the final h, c."""
    D, T, B, _ = x.shape
    if T == 0:
        return x.new_zeros(D, 0, B, layers[0].output_dim), (h0, c0)
    first = layers[0]

    def stacked(name: str) -> torch.Tensor:
        return torch.stack([layer.get_parameter(name) for layer in layers])

    w_proj = stacked("projection.weight") if first.projection is not None else None  # (D, P, cell)
    out, h, c = lstm_layer(x, live, h0, c0, stacked("input_linear.weight"), stacked("state_linear.bias"),
                           stacked("state_linear.weight"), w_proj, first.cell_clip, first.proj_clip)
    return out, (h, c)


class ElmoLstm(nn.Module):
    """Forward and backward stacks over (B, T, P) token embeddings -> n_layers tensors (B, T, 2P)."""

    def __init__(self, config: ElmoConfig):
        super().__init__()
        P, C = config.projection_dim, config.lstm_dim

        def stack() -> nn.ModuleList:
            return nn.ModuleList(LstmLayer(P, C, P, config.cell_clip, config.proj_clip)
                                 for _ in range(config.n_layers))

        self.forward_layers, self.backward_layers = stack(), stack()
        self.skip_connections = config.use_skip_connections
        self.dropout = config.dropout

    def zero_state(self, batch_size: int) -> State:
        """h (2, L, B, P) and c (2, L, B, cell): direction, layer, row (on the weights' device and dtype)."""
        L, layer = len(self.forward_layers), self.forward_layers[0]
        weight = layer.input_linear.weight
        return (weight.new_zeros(2, L, batch_size, layer.output_dim), weight.new_zeros(2, L, batch_size, layer.cell_dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, state: State | None = None
                ) -> tuple[list[torch.Tensor], State]:
        mask = mask.bool()
        lengths = mask.long().sum(1)  # (B,)
        h0, c0 = state if state is not None else self.zero_state(x.shape[0])
        live = None if bool(mask.all()) else mask.t().contiguous()  # (T, B)
        # the backward direction reads each row reversed; both run as one stack: direction, step, row
        x = torch.stack([x, reverse_padded(x, lengths)]).transpose(1, 2)  # (2, T, B, P)
        outputs, hs, cs = [], [], []
        for i, layers in enumerate(zip(self.forward_layers, self.backward_layers)):
            x_in = dropout(x, self.dropout, self.training)  # bilm-tf's DropoutWrapper(input_keep_prob)
            out, (h, c) = run_layers(list(layers), x_in, live, h0[:, i], c0[:, i])
            if self.skip_connections and i > 0:
                out = out + x_in  # ResidualWrapper, inside the dropout wrapper
            outputs.append(out)
            hs.append(h)
            cs.append(c)
            x = out
        layers = [torch.cat([out[0].transpose(0, 1), reverse_padded(out[1].transpose(0, 1), lengths)], dim=-1)
                  for out in outputs]  # (B, T, 2P) each
        return layers, (torch.stack(hs, dim=1), torch.stack(cs, dim=1))
