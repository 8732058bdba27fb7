"""The projected, clipped LSTM layer of both directions at once, with a hand-written backward pass.

Under autograd every step of the 128-step loop records ~15 small operations per direction and layer, each
with its own saved tensors, and the backward pass replays them one by one. Here a layer is one
``autograd.Function``: the input-to-gate products of all steps are one large matmul, both directions
advance together (one batched matmul per step), each step's activations go into preallocated buffers (no
copies when the weight gradients are taken), and the backward pass walks the steps once, leaving the
weight and input gradients to one large matmul each over all steps.

The arithmetic is bilm-tf's ``LSTMCell``: gates in PyTorch's order (input, forget, cell, output), the
memory clipped to +-cell_clip, the output projected and clipped to +-proj_clip; a row past its end keeps
its state and outputs zeros. The gradients of the clips are those of ``torch.clamp`` (they pass where the
value is within the bounds, ends included).
"""

from __future__ import annotations

import torch


def lstm_layer(x: torch.Tensor, live: torch.Tensor | None, h0: torch.Tensor, c0: torch.Tensor,
               w_input: torch.Tensor, bias: torch.Tensor, w_state: torch.Tensor, w_proj: torch.Tensor | None,
               cell_clip: float | None, proj_clip: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run D independent LSTM layers (the directions), each over its own input, for T steps.

    x (D, T, B, in); live (T, B) bool, or None when every position is real; h0 (D, B, P), c0 (D, B, C);
    w_input (D, 4C, in), bias (D, 4C), w_state (D, 4C, P) and w_proj (D, P, C), or None when P == C.
    Returns the outputs (D, T, B, P), zero where not live, and the final h (D, B, P) and c (D, B, C).
    """
    return _Layer.apply(x, live, h0, c0, w_input, bias, w_state, w_proj, cell_clip or None, proj_clip or None)


def _within(x: torch.Tensor, clip: float) -> torch.Tensor:
    """Where clamp(x, -clip, clip) passes its gradient."""
    return (x >= -clip).logical_and_(x <= clip)


class _Layer(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # mixed precision (CUDA): in fp32
    def forward(ctx, x, live, h0, c0, w_input, bias, w_state, w_proj, cell_clip, proj_clip):
        D, T, B, _ = x.shape
        C4, P = w_state.shape[1:]
        C = C4 // 4
        project = w_proj is not None
        # gates[:, t]: step t's input product, then its activated gates (i, f, g, o)
        x = x.reshape(D, T * B, -1)
        gates = torch.baddbmm(bias[:, None], x, w_input.transpose(1, 2)).view(D, T, B, C4)
        cells = x.new_empty(D, T + 1, B, C)  # carried memory: cells[:, t] enters step t
        states = x.new_empty(D, T + 1, B, P)  # carried output: states[:, t] enters step t
        tanh_cells = x.new_empty(D, T, B, C)
        memory = x.new_empty(D, T, B, C) if project else None  # o * tanh(c), the projection's input
        raw_cells = x.new_empty(D, T, B, C) if cell_clip else None  # before the clip
        raw_out = x.new_empty(D, T, B, P) if project and proj_clip else None
        out = states[:, 1:] if live is None else x.new_empty(D, T, B, P)  # with no padding, out[t] = h[t + 1]
        cells[:, 0], states[:, 0] = c0, h0
        w_state_t = w_state.transpose(1, 2)  # (D, P, 4C)
        w_proj_t = w_proj.transpose(1, 2) if project else None  # (D, C, P)
        for t in range(T):
            g = gates[:, t].baddbmm_(states[:, t], w_state_t)  # (D, B, 4C)
            g[..., : 2 * C].sigmoid_()
            g[..., 2 * C: 3 * C].tanh_()
            g[..., 3 * C:].sigmoid_()
            i, f, cand, o = g.chunk(4, dim=-1)
            c = torch.mul(f, cells[:, t], out=raw_cells[:, t] if cell_clip else cells[:, t + 1]).addcmul_(i, cand)
            if cell_clip:
                c = torch.clamp(c, -cell_clip, cell_clip, out=cells[:, t + 1])
            torch.tanh(c, out=tanh_cells[:, t])
            if project:
                m = torch.mul(o, tanh_cells[:, t], out=memory[:, t])
                if proj_clip:
                    torch.bmm(m, w_proj_t, out=raw_out[:, t])
                    torch.clamp(raw_out[:, t], -proj_clip, proj_clip, out=out[:, t])
                else:
                    torch.bmm(m, w_proj_t, out=out[:, t])
            else:
                torch.mul(o, tanh_cells[:, t], out=out[:, t])
            if live is not None:  # a row past its end keeps its state and outputs zeros
                keep = live[t][:, None]  # (B, 1)
                torch.where(keep, out[:, t], states[:, t], out=states[:, t + 1])
                torch.where(keep, cells[:, t + 1], cells[:, t], out=cells[:, t + 1])
                out[:, t].mul_(keep)
        ctx.save_for_backward(x, live, w_input, w_state, w_proj, gates, cells, states, tanh_cells, memory,
                              raw_cells, raw_out)
        ctx.clips = cell_clip, proj_clip
        return out, states[:, T].clone(), cells[:, T].clone()

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out, grad_h, grad_c):
        x, live, w_input, w_state, w_proj, gates, cells, states, tanh_cells, memory, raw_cells, raw_out = \
            ctx.saved_tensors  # x (D, T B, in)
        cell_clip, proj_clip = ctx.clips
        D, T, B, C4 = gates.shape
        C = C4 // 4
        project = w_proj is not None
        dh = grad_h.clone() if grad_h is not None else states.new_zeros(D, B, states.shape[-1])
        dc = grad_c.clone() if grad_c is not None else cells.new_zeros(D, B, C)
        d_gates = torch.empty_like(gates)
        d_proj = gates.new_empty(D, T, B, states.shape[-1]) if project else None  # d(projection output)
        for t in reversed(range(T)):
            d_new = dh if grad_out is None else dh + grad_out[:, t]  # d(output of step t)
            keep = None if live is None else live[t][:, None]  # (B, 1)
            if keep is not None:  # a finished row passes its state's gradient back untouched
                d_new = d_new * keep
                dh_carry, dc_carry = dh * ~keep, dc * ~keep
                dc = dc * keep
            if project:
                if proj_clip:
                    torch.mul(d_new, _within(raw_out[:, t], proj_clip), out=d_proj[:, t])
                else:
                    d_proj[:, t] = d_new
                d_memory = torch.bmm(d_proj[:, t], w_proj)  # (D, B, C)
            else:
                d_memory = d_new
            i, f, cand, o = gates[:, t].chunk(4, dim=-1)
            di, df, dcand, do = d_gates[:, t].chunk(4, dim=-1)
            tc = tanh_cells[:, t]
            torch.mul(d_memory, tc, out=do).mul_(o).mul_(1 - o)
            d_cell = torch.addcmul(dc, d_memory, o * (1 - tc * tc))  # through tanh into the clipped memory
            if cell_clip:
                d_cell.mul_(_within(raw_cells[:, t], cell_clip))
            torch.mul(d_cell, cand, out=di).mul_(i).mul_(1 - i)
            torch.mul(d_cell, cells[:, t], out=df).mul_(f).mul_(1 - f)
            torch.mul(d_cell, i, out=dcand).mul_(1 - cand * cand)
            dc = d_cell.mul_(f)
            dh = torch.bmm(d_gates[:, t], w_state)  # (D, B, P)
            if keep is not None:
                dh.add_(dh_carry)
                dc.add_(dc_carry)
        flat = d_gates.view(D, T * B, C4)
        d_x = torch.bmm(flat, w_input).view(D, T, B, -1) if ctx.needs_input_grad[0] else None
        d_w_input = torch.bmm(flat.transpose(1, 2), x)  # (D, 4C, in)
        d_bias = flat.sum(1)  # (D, 4C)
        d_w_state = torch.bmm(flat.transpose(1, 2), states[:, :T].reshape(D, T * B, -1))  # (D, 4C, P)
        d_w_proj = None
        if project:
            d_w_proj = torch.bmm(d_proj.reshape(D, T * B, -1).transpose(1, 2), memory.view(D, T * B, C))  # (D, P, C)
        return d_x, None, dh, dc, d_w_input, d_bias, d_w_state, d_w_proj, None, None
