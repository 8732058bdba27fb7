"""The summed cross-entropy of a full softmax, in chunks, with its gradients taken in the forward pass.

The loss is a scalar, so the gradient of its logits is known as soon as they are: softmax minus the
one-hot target. Computing it there, chunk by chunk, keeps at most ``chunk x vocab`` logits alive (as
activation checkpointing did) without computing them twice: three matmuls per chunk (logits, the hidden
states' gradient, the weight's) instead of four, and one exp and five passes over the logits instead of
log-softmax's, cross-entropy's and their backward's. The backward pass only scales the stored gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, targets: torch.Tensor,
                         chunk: int) -> torch.Tensor:
    """sum_n cross_entropy(hidden[n] @ weight.T + bias, targets[n]): hidden (N, P), weight (V, P), bias (V,),
    targets (N,) in [0, V); ``chunk`` rows at a time, in float32 at least (float64 stays float64)."""
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad or bias.requires_grad):
        return _LinearCrossEntropy.apply(hidden, weight, bias, targets, chunk)
    dtype = torch.promote_types(hidden.dtype, torch.float32)
    total = hidden.new_zeros((), dtype=dtype)
    for s in range(0, hidden.shape[0], chunk):
        logits = F.linear(hidden[s: s + chunk].to(dtype), weight.to(dtype), bias.to(dtype))  # (n, V)
        total = total + F.cross_entropy(logits, targets[s: s + chunk], reduction="sum")
    return total


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk):
        with torch.autocast(hidden.device.type, enabled=False):
            dtype = torch.promote_types(hidden.dtype, torch.float32)
            h_all, w, b = hidden.to(dtype), weight.to(dtype), bias.to(dtype)
            d_hidden = torch.empty_like(h_all)  # (N, P)
            d_weight, d_bias = torch.zeros_like(w), torch.zeros_like(b)  # (V, P), (V,)
            total = h_all.new_zeros(())
            for s in range(0, h_all.shape[0], chunk):
                h, y = h_all[s: s + chunk], targets[s: s + chunk]  # (n, P), (n,)
                logits = torch.addmm(b, h, w.t())  # (n, V)
                target = logits.gather(1, y[:, None])[:, 0]  # (n,)
                top = logits.amax(dim=1)  # (n,)
                grad = logits.sub_(top[:, None]).exp_()  # exp(logits - top), in place: one exp per logit
                norm = grad.sum(dim=1)  # (n,)
                total += (norm.log() + top - target).sum()  # log-sum-exp minus the target's logit
                grad.mul_(norm.reciprocal()[:, None])  # softmax ...
                grad[torch.arange(len(y), device=y.device), y] -= 1.0  # ... minus the one-hot target
                torch.mm(grad, w, out=d_hidden[s: s + chunk])
                d_weight.addmm_(grad.t(), h)
                d_bias += grad.sum(0)
        ctx.save_for_backward(d_hidden, d_weight, d_bias)
        ctx.dtypes = hidden.dtype, weight.dtype, bias.dtype
        return total

    @staticmethod
    def backward(ctx, grad_total):
        d_hidden, d_weight, d_bias = ctx.saved_tensors
        return (*(g.mul(grad_total).to(dtype) for g, dtype in zip((d_hidden, d_weight, d_bias), ctx.dtypes)),
                None, None)
