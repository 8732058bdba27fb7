"""The CPU dropout (model/dropout.py): the rate, the scale, the gradient, the seed, and attention with dropout
equal to the probabilities dropped by the same mask."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bertforge.config import BertConfig
from bertforge.model import BertForSequenceClassification
from bertforge.model.dropout import Dropout, dropout, keep_mask, scaled_dot_product_attention

SCALE = 65536 / (65536 - 6554)  # p = 0.1: 6,554 of 65,536 levels dropped


def test_drops_at_the_rate_and_scales_the_rest_exactly():
    torch.manual_seed(0)
    x = torch.rand(1000, 1000) + 1  # no zeros of its own
    y = dropout(x, 0.1)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 6554 / 65536) < 1e-3  # 1e6 draws: std 3e-4
    assert torch.equal(y[kept], x[kept] * SCALE)
    per_row = 1 - kept.float().mean(1)
    assert per_row.std() < 0.02  # no row is special (the 16-bit slices of one word are independent)


def test_the_gradient_is_the_mask_and_the_seed_fixes_it():
    x = torch.randn(37, 5, requires_grad=True)  # an element count that is not a multiple of 4
    torch.manual_seed(3)
    y = dropout(x, 0.3)
    y.backward(torch.ones_like(y))
    mask = keep_mask(x, 0.3)  # the next draw: a different mask
    assert not torch.equal(mask != 0, y != 0)
    assert torch.equal(x.grad, torch.where(y != 0, 65536 / (65536 - round(0.3 * 65536)), 0.0))
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.3), y)  # torch's generator: seeded runs and resumed runs repeat


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_off_in_eval_and_at_the_ends(p):
    x = torch.randn(4, 6)
    assert dropout(x, 0.5, training=False) is x
    assert torch.equal(dropout(x, p), F.dropout(x, p, True))  # p = 0: x; p = 1: zeros
    assert torch.equal(Dropout(0.5).eval()(x), x)


def test_the_model_uses_it_everywhere():
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32))
    kinds = {type(m) for m in model.modules() if isinstance(m, nn.Dropout)}
    assert kinds == {Dropout}


@pytest.mark.parametrize("causal", [False, True])
def test_attention_with_dropout_is_the_dropped_probabilities(causal):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 4, generator=g) for _ in range(3))
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[1, ..., 5:] = False  # padding keys in the second row
    full = mask & torch.ones(7, 7, dtype=torch.bool).tril() if causal else mask
    torch.manual_seed(1)
    out = scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.2, is_causal=causal)
    probs = (q @ k.transpose(-1, -2) / 2).masked_fill(~full, float("-inf")).softmax(-1)
    torch.manual_seed(1)
    expected = (probs * keep_mask(probs, 0.2)) @ v
    assert (out - expected).abs().max() < 1e-6
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=full)  # with no element dropped
    assert (scaled_dot_product_attention(q, k, v, mask, dropout_p=1e-9, is_causal=causal) - reference
            ).abs().max() < 1e-6


def test_the_pretraining_forward_compiles_as_one_graph_with_dropout_on():
    """Under torch.compile dropout is torch's own (the CPU mask's ``random_`` cannot be traced) and the masked
    positions, host work of a data-dependent size, are left out of the trace cleanly: no graph breaks."""
    from bertforge.model import BertForPreTraining

    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                          intermediate_size=64, max_position_embeddings=64)).train()
    ids = torch.randint(5, 100, (4, 32))
    labels = torch.full_like(ids, -100)
    labels[:, 3], labels[1:, 9] = 7, 8
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(ids, torch.zeros_like(ids), torch.ones_like(ids), labels=labels,
                                             next_sentence_label=torch.zeros(4, dtype=torch.long))
    assert explained.graph_break_count == 0, [str(b.reason)[:200] for b in explained.break_reasons]
    assert explained.graph_count == 1
