"""Learning-rate schedules: linear warm-up to the peak, then linear or cosine decay to 0, or constant."""

from __future__ import annotations

import math
from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("linear", "cosine", "constant")


def warmup_ratio(ratio: float, total_steps: int) -> int:
    """Warm-up steps for a warm-up given as a fraction of training (BERT fine-tuning uses 0.1)."""
    if not 0 <= ratio <= 1:
        raise ValueError(f"warm-up ratio must be in [0, 1], got {ratio}")
    return math.ceil(ratio * total_steps)


def lr_factor(step: int, warmup_steps: int, total_steps: int, kind: str = "linear") -> float:
    """Multiplier of the peak learning rate at ``step`` (0 at step 0, 1 at ``warmup_steps``)."""
    if step < warmup_steps:
        return step / warmup_steps
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if kind == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine


def build_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, kind: str = "linear"
) -> LambdaLR:
    """Scheduler to ``.step()`` once per optimizer step; lr = each group's initial lr * ``lr_factor``."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; expected one of {SCHEDULES}")
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need 0 <= warmup_steps <= total_steps and total_steps >= 1, "
                         f"got warmup_steps={warmup_steps}, total_steps={total_steps}")
    fn = partial(lr_factor, warmup_steps=warmup_steps, total_steps=total_steps, kind=kind)
    return LambdaLR(optimizer, fn)
