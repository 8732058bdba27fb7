"""A pre-training step's FLOPs as counted from what runs: equal to hand counts, and invisible to the run."""

import numpy as np
import torch
from torch import nn

from bertforge.config import BertConfig
from bertforge.data.masking import SpecialIds
from bertforge.model import BertForPreTraining
from bertforge.objectives import LeftToRight, MaskedLM, MaskingSettings
from bertforge.train.flops import step_flops


class SquaredOutput:
    """An 'objective' whose one loss is the mean square of a linear model's output."""

    def losses(self, model, batch):
        return {"x": model(batch["x"]).pow(2).mean()}


def test_a_linear_layer_costs_forward_plus_weight_gradient():
    model = nn.Linear(16, 8, bias=False)
    batches = [{"x": torch.randn(5, 16)}, {"x": torch.randn(3, 16)}]
    # forward 2*B*16*8, backward: the weight's gradient only (the input needs none): the same again
    assert step_flops(SquaredOutput(), model, batches) == 2 * 2 * (5 + 3) * 16 * 8


V, H, L, B, T = 500, 64, 2, 3, 32
SPECIAL = SpecialIds(cls=2, sep=3, mask=4, pad=0, vocab_size=V)


def full_rows():
    tokens = np.random.default_rng(0).integers(5, V, (B, T)).astype(np.uint16)
    tokens[:, 0], tokens[:, -1] = 2, 3
    return {"tokens": tokens, "lengths": np.full(B, T, np.int16), "b_start": np.full(B, T, np.int16),
            "is_random_next": np.zeros(B, np.uint8)}


def config(**kw):
    return BertConfig(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=4, intermediate_size=4 * H,
                      **kw)


# Multiply-adds a token costs in a layer: Q, K, V and the output projection (4 H^2), the FFN (8 H^2), the attention
# scores and the context over T keys (2 T H). The LM head: its transform (H^2) and the tied decoder (H V) at each
# scored position. Backward costs twice the forward of everything that gets a gradient.
def test_left_to_right_step_equals_the_hand_count():
    objective = LeftToRight(SPECIAL, seed=0)
    model = objective.build_model(config(is_decoder=True))
    batch = objective.make_batch(full_rows(), np.arange(B), epoch=0)
    encoder = B * T * L * (12 * H * H + 2 * T * H)
    head = B * (T - 1) * (H * H + H * V)  # every position but the last predicts the next
    assert step_flops(objective, model, [batch]) == 3 * 2 * (encoder + head)


def test_masked_lm_step_equals_the_hand_count():
    objective = MaskedLM(SPECIAL, seed=0, masking=MaskingSettings(masked_lm_prob=0.15, max_predictions_per_seq=T))
    torch.manual_seed(0)
    model = BertForPreTraining(config())
    objective.configure(model)
    batch = objective.make_batch(full_rows(), np.arange(B), epoch=0)
    masked = int((batch["labels"] != -100).sum())
    # The last layer computes K and V at every token, the rest at the masked positions and [CLS] alone (what the
    # heads read); the pooler and the NSP layer (frozen without NSP) run forward only.
    rows = masked + B
    encoder = B * T * (L - 1) * (12 * H * H + 2 * T * H) + B * T * 2 * H * H + rows * (10 * H * H + 2 * T * H)
    head = masked * (H * H + H * V)
    pooler = B * H * H + B * H * 2
    assert step_flops(objective, model, [batch]) == 3 * 2 * (encoder + head) + 2 * pooler


class Attention:
    def losses(self, model, batch):
        q, k, v = batch["q"], batch["k"], batch["v"]
        return {"x": nn.functional.scaled_dot_product_attention(q, k, v).pow(2).mean()}


def test_attention_is_counted_on_the_cpu_kernel_too():
    B, A, T, D = 2, 4, 16, 8
    qkv = {name: torch.randn(B, A, T, D, requires_grad=True) for name in "qkv"}
    # forward: scores and context, two T x T x D products a head; the kernel's backward recomputes the scores and
    # runs five such products (torch's own formula for its CUDA kernels)
    assert step_flops(Attention(), nn.Identity(), [qkv]) == (2 + 5) * 2 * B * A * T * T * D


def test_counting_leaves_weights_gradients_and_random_state_untouched():
    model = nn.Sequential(nn.Linear(16, 16), nn.Dropout(0.5), nn.Linear(16, 1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = {"x": torch.randn(4, 16)}
    state = torch.get_rng_state()
    step_flops(SquaredOutput(), model, [batch])
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
