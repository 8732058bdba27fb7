"""Optimizers for BERT: AdamW and LAMB, with BERT's "no weight decay on biases and LayerNorm" rule."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

OPTIMIZERS = ("adamw", "lamb")


def _no_decay(name: str, param: nn.Parameter, module: nn.Module) -> bool:
    """True for parameters that BERT trains without weight decay."""
    # Google's BERT excludes names matching "bias" and "LayerNorm"; we say the same by kind, so that
    # it also holds for modules named differently: biases, anything owned by a LayerNorm, and every
    # other 1-D parameter (norm scales, position-free gains). Matrices and embeddings are decayed.
    return name.endswith("bias") or isinstance(module, nn.LayerNorm) or param.ndim < 2


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decayed group and a no-decay group (biases, LayerNorm, 1-D).

    Each group has ``params``, ``param_names`` and ``weight_decay``; a tied parameter appears once,
    under its first name; frozen parameters are left out; empty groups are dropped.
    """
    seen: set[int] = set()
    decay: dict[str, nn.Parameter] = {}
    no_decay: dict[str, nn.Parameter] = {}
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            name = f"{module_name}.{param_name}" if module_name else param_name
            (no_decay if _no_decay(name, param, module) else decay)[name] = param
    groups = [
        {"params": list(decay.values()), "param_names": list(decay), "weight_decay": weight_decay},
        {"params": list(no_decay.values()), "param_names": list(no_decay), "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al. 2019) as in NVIDIA's BERT (apex FusedLAMB): Adam moments with bias correction,
    ``update = m_hat / (sqrt(v_hat) + eps) + wd * p``, then ``p -= lr * (||p|| / ||update||) * update``.

    The trust ratio is 1 when either norm is 0. Like apex's default (``use_nvlamb=False``), groups with
    ``weight_decay == 0`` (biases, LayerNorm) take the plain Adam step unless ``adapt_no_decay=True``.
    apex also rescales gradients by their global norm (max 1.0): clip gradients in the loop for that.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        adapt_no_decay: bool = False,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid LAMB hyper-parameters: lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        adapt_no_decay=adapt_no_decay)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Take one LAMB step; ``closure`` re-evaluates the loss, as for any torch optimizer."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Lamb does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
                m.lerp_(p.grad, 1 - beta1)  # m = beta1 * m + (1 - beta1) * g
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                update = (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + eps)
                if wd != 0:
                    update.add_(p, alpha=wd)
                if wd != 0 or group["adapt_no_decay"]:
                    w_norm, u_norm = p.norm(), update.norm()
                    trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, 1.0)
                    update.mul_(trust)
                p.add_(update, alpha=-lr)
        return loss


def build_optimizer(
    model: nn.Module,
    name: str = "adamw",
    lr: float = 1e-4,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-6,
) -> torch.optim.Optimizer:
    """AdamW (PyTorch's fused kernel, faster than the per-tensor loop on CPU too: docs/speed.md) or LAMB over
    ``param_groups(model, weight_decay)``; BERT's defaults."""
    groups = param_groups(model, weight_decay)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters to optimize")
    if name == "adamw":
        devices = {p.device.type for g in groups for p in g["params"]}
        fused = len(devices) == 1 and devices <= {"cpu", "cuda"}
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)
    if name == "lamb":
        return Lamb(groups, lr=lr, betas=betas, eps=eps)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")
