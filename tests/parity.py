"""Helpers of the parity tests against transformers."""

import torch


def perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``model`` in eval mode with every weight, bias and norm moved off its initial value (a seeded N(0, 0.05)
    step), so a mis-mapped tensor shows in the numbers (zero biases and unit norms would hide it)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()
