"""ELMo's forward and backward LSTM stacks, as bilm-tf builds them with TF's ``LSTMCell``.

Each layer is an LSTM whose memory is clipped to +-cell_clip and whose output is projected to
``projection_dim`` and clipped to +-proj_clip; from the second layer on, the layer's input is added
to its output (the skip connection). The backward stack reads each sentence reversed within its own
length, as ``tf.reverse_sequence`` does, so padding never reaches a real position. Gates are in
PyTorch's order (input, forget, cell, output); TF's forget bias of 1.0 lives inside the bias.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.model.elmo.config import ElmoConfig

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
        h, c = state  # (B, P), (B, cell)
        if x.shape[1] == 0:
            return x.new_zeros(x.shape[0], 0, self.output_dim), (h, c)
        # (B, 4 cell) per step, all steps projected at once; unbind (not x[:, t]) keeps the backward pass
        # linear in T: indexing one step at a time makes autograd allocate a whole (B, T, .) gradient per step.
        gates_x = self.input_linear(x).unbind(1)
        live_at = mask[..., None].unbind(1)  # (B, 1) per step
        outputs = []
        for gates, live in zip(gates_x, live_at):
            i, f, g, o = (gates + self.state_linear(h)).chunk(4, dim=-1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            if self.cell_clip:
                c_new = c_new.clamp(-self.cell_clip, self.cell_clip)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            if self.projection is not None:  # TF clips only a projected output
                h_new = self.projection(h_new)
                if self.proj_clip:
                    h_new = h_new.clamp(-self.proj_clip, self.proj_clip)
            h, c = torch.where(live, h_new, h), torch.where(live, c_new, c)  # rows past their end keep their state
            outputs.append(h_new * live)
        return torch.stack(outputs, dim=1), (h, c)  # (B, T, P)


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
        fwd, (hf, cf) = self._stack(self.forward_layers, x, mask, h0[0], c0[0])
        bwd, (hb, cb) = self._stack(self.backward_layers, reverse_padded(x, lengths), mask, h0[1], c0[1])
        layers = [torch.cat([f, reverse_padded(b, lengths)], dim=-1) for f, b in zip(fwd, bwd)]  # (B, T, 2P)
        return layers, (torch.stack([hf, hb]), torch.stack([cf, cb]))

    def _stack(self, layers: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor,
               h0: torch.Tensor, c0: torch.Tensor) -> tuple[list[torch.Tensor], State]:
        outputs, hs, cs = [], [], []
        for i, layer in enumerate(layers):
            x_in = F.dropout(x, self.dropout, self.training)  # bilm-tf's DropoutWrapper(input_keep_prob)
            out, (h, c) = layer(x_in, mask, (h0[i], c0[i]))
            if self.skip_connections and i > 0:
                out = out + x_in  # ResidualWrapper, inside the dropout wrapper
            outputs.append(out)
            hs.append(h)
            cs.append(c)
            x = out
        return outputs, (torch.stack(hs), torch.stack(cs))
