import numpy as np
import pytest
import torch
from torch import nn

from bertforge.train.optim import Lamb, build_optimizer, param_groups


class TinyBert(nn.Module):
    """Names like BERT's: embeddings + LayerNorm, a dense layer, a decoder tied to the embeddings."""

    def __init__(self, vocab: int = 11, hidden: int = 4):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.LayerNorm = nn.LayerNorm(hidden)
        self.dense = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden)  # a LayerNorm not named "LayerNorm"
        self.scale = nn.Parameter(torch.ones(hidden))  # a bare 1-D gain
        self.decoder = nn.Linear(hidden, vocab)
        self.decoder.weight = self.word_embeddings.weight  # tied
        self.frozen = nn.Linear(hidden, hidden)
        self.frozen.requires_grad_(False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.dense(self.LayerNorm(self.word_embeddings(ids)))) * self.scale
        return self.decoder(h)


def test_param_groups_decay_only_matrices_and_list_tied_once():
    groups = param_groups(TinyBert(), weight_decay=0.01)
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert decay["param_names"] == ["word_embeddings.weight", "dense.weight"]  # decoder.weight is tied
    assert no_decay["param_names"] == ["scale", "LayerNorm.weight", "LayerNorm.bias", "dense.bias",
                                       "norm.weight", "norm.bias", "decoder.bias"]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == 9  # every trainable tensor exactly once, frozen ones absent


def test_build_adamw_uses_groups_and_bert_defaults():
    opt = build_optimizer(TinyBert(), "adamw", lr=1e-4)
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert all(g["eps"] == 1e-6 and g["betas"] == (0.9, 0.999) for g in opt.param_groups)
    assert isinstance(build_optimizer(TinyBert(), "lamb", lr=1e-3), Lamb)
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(TinyBert(), "sgd")


def _lamb_reference(p, grads, lr, wd, b1=0.9, b2=0.999, eps=1e-6, adapt=True):
    """LAMB written out in float64 numpy, step by step."""
    p, m, v = p.astype(np.float64), np.zeros_like(p, np.float64), np.zeros_like(p, np.float64)
    for t, g in enumerate(grads, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps) + wd * p
        wn, un = np.linalg.norm(p), np.linalg.norm(u)
        ratio = wn / un if adapt and wn > 0 and un > 0 else 1.0
        p = p - lr * ratio * u
    return p


@pytest.mark.parametrize("init", [[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]])  # the second: ||p|| = 0 -> ratio 1
def test_lamb_matches_hand_computed_steps(init):
    grads = [np.array([0.5, -1.0, 2.0]), np.array([-0.3, 0.2, 1.0]), np.array([0.1, 0.1, -0.4])]
    p = torch.tensor(init, dtype=torch.float64, requires_grad=True)
    opt = Lamb([p], lr=0.1, weight_decay=0.01)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    expected = _lamb_reference(np.array(init), grads, lr=0.1, wd=0.01)
    np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    # first step by hand: m_hat = g, v_hat = g^2, so update = sign(g) (+ eps, wd terms)
    q = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
    q.grad = torch.tensor([1.0, -2.0], dtype=torch.float64)
    Lamb([q], lr=0.5, weight_decay=0.0, eps=0.0, adapt_no_decay=True).step()
    ratio = 5.0 / np.sqrt(2.0)  # ||p|| / ||(1, -1)||
    np.testing.assert_allclose(q.detach().numpy(), [3.0 - 0.5 * ratio, 4.0 + 0.5 * ratio], rtol=1e-12)


def test_lamb_no_decay_group_takes_the_adam_step():
    grads = [np.array([0.5, -1.0]), np.array([0.2, 0.3])]
    p = torch.tensor([2.0, 3.0], dtype=torch.float64, requires_grad=True)
    opt = Lamb([p], lr=0.01, weight_decay=0.0)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    expected = _lamb_reference(np.array([2.0, 3.0]), grads, lr=0.01, wd=0.0, adapt=False)
    np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-12)


def test_lamb_trains_a_toy_regression():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g) + 0.5
    model = nn.Linear(8, 1)
    opt = build_optimizer(model, "lamb", lr=0.05, weight_decay=0.0)
    first = None
    for _ in range(300):
        loss = nn.functional.mse_loss(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3 * first
