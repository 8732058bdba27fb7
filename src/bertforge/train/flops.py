"""The compute a pre-training step costs, counted from the model and the objective rather than timed: the
floating-point operations (2 per multiply-add) of the matrix products, convolutions and attention that one
forward and backward pass of the objective's losses runs, as ``torch.utils.flop_counter`` counts them.

Counting what runs, not a formula per family, covers every objective alike: masked LM scores 15% of the
positions, a left-to-right LM every position, ELECTRA runs a generator and a discriminator, ELMo runs
LSTMs; the ELECTRA paper compares such systems at equal pre-training FLOPs, and so can ``ablate``.
Element-wise work (GELU, LayerNorm, softmax) is not counted, as is usual: it is a few percent.
"""

from __future__ import annotations

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

# torch counts the CUDA kernels of scaled_dot_product_attention but not the CPU one: the same formulas apply.
def _attention(query, key, value, *args, out_val=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query.shape, key.shape, value.shape)


def _attention_backward(grad_out, query, key, value, *args, out_val=None, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape)


_attention._get_raw = _attention_backward._get_raw = True  # called with the tensors, not their shapes
_CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention,
                  torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _attention_backward}


def step_flops(objective, model: torch.nn.Module, micro_batches: list[dict[str, torch.Tensor]],
               device: torch.device | None = None) -> int:
    """FLOPs of one optimizer step over ``micro_batches``: each micro-batch's forward and backward. The
    model's weights, gradients and every random generator are left as they were, so a run that counts
    its steps trains exactly as one that does not."""
    was_training = model.training
    model.train()
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION) as counter:
        for batch in micro_batches:
            batch = {k: v.to(device) if device is not None else v for k, v in batch.items()}
            losses = objective.losses(model, batch)
            torch.stack([loss.float() for loss in losses.values()]).sum().backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return int(counter.get_total_flops())
