"""The permutation-LM inputs: ceil(n/K) targets per row among the predictable tokens, XLNet's
visibility rules in perm_mask, deterministic for a generator seed."""

import pytest
import torch

from bertforge.errors import UsageError
from bertforge.model.xlnet import XLNetConfig, XLNetLMHeadModel, num_targets, sample_permutation

CLS, SEP, PAD = 3, 4, 5


def batch(B=6, T=24, seed=0):
    """[CLS] tokens [SEP] then padding; row lengths from 2 (no predictable token) to T."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 100, (B, T), generator=g)
    lengths = torch.tensor([T, T - 3, 13, 7, 3, 2])[:B]
    mask = (torch.arange(T) < lengths[:, None]).long()
    ids[mask == 0] = PAD
    ids[:, 0] = CLS
    ids[torch.arange(B), lengths - 1] = SEP
    predictable = (mask == 1) & (ids != CLS) & (ids != SEP)
    return ids, mask, predictable


@pytest.mark.parametrize("k", [1, 2, 6])
def test_targets_rule_labels_and_mapping(k):
    ids, mask, predictable = batch()
    out = sample_permutation(ids, mask, predictable, k=k, generator=torch.Generator().manual_seed(1))
    n = predictable.sum(1)
    expected = num_targets(n, k)
    assert expected.tolist() == [-(-int(x) // k) for x in n]  # ceil(n / k), 0 for no predictable token
    B, N, T = out.target_mapping.shape
    assert N == max(int(expected.max()), 1) and out.labels.shape == (B, N) and out.perm_mask.shape == (B, T, T)
    for b in range(B):
        m = int(expected[b])
        rows = out.target_mapping[b]
        assert torch.equal(rows[m:], torch.zeros(N - m, T)) and (out.labels[b, m:] == -100).all()
        pos = rows[:m].argmax(1)
        assert torch.equal(rows[:m].sum(1), torch.ones(m)) and (pos.diff() > 0).all()  # one-hot, in order
        assert predictable[b, pos].all()  # never a special token or padding
        assert torch.equal(out.labels[b, :m], ids[b, pos])


def test_perm_mask_follows_xlnet_visibility():
    ids, mask, predictable = batch()
    out = sample_permutation(ids, mask, predictable, k=2, generator=torch.Generator().manual_seed(2))
    pm = out.perm_mask.bool()
    for b in range(ids.shape[0]):
        target = out.target_mapping[b].sum(0).bool()  # (T,)
        real = mask[b].bool()
        context = real & ~target
        assert pm[b][:, ~real].all()  # padding is seen by nobody
        assert not pm[b][:, context].any()  # context is seen by everyone
        assert pm[b][context][:, target].all()  # context never sees a target
        t = target.nonzero().flatten()
        sees = ~pm[b][t][:, t]  # (m, m) target i sees target j
        assert not sees.diagonal().any()  # the query stream never sees its own token
        assert not (sees & sees.T).any() and ((sees | sees.T) | torch.eye(len(t), dtype=torch.bool)).all()
        # a strict total order: the number of earlier targets each sees is 0, 1, ..., m-1
        assert sorted(sees.sum(1).tolist()) == list(range(len(t)))
        earlier = sees.float() @ sees.float()  # transitive: seeing j, one sees what j sees
        assert not ((earlier > 0) & ~sees).any()


def test_same_seed_same_inputs_other_seed_other_order():
    ids, mask, predictable = batch()
    run = lambda seed: sample_permutation(ids, mask, predictable, generator=torch.Generator().manual_seed(seed))
    a, b, c = run(7), run(7), run(8)
    for x, y in ((a.perm_mask, b.perm_mask), (a.target_mapping, b.target_mapping), (a.labels, b.labels)):
        assert torch.equal(x, y)
    assert not torch.equal(a.perm_mask, c.perm_mask)


def test_targets_cover_every_predictable_token_over_draws():
    """Uniform orders: over many draws each predictable position is sometimes a target."""
    ids, mask, predictable = batch(B=1)
    g = torch.Generator().manual_seed(0)
    seen = torch.zeros(ids.shape[1])
    for _ in range(200):
        seen += sample_permutation(ids, mask, predictable, generator=g).target_mapping[0].sum(0)
    assert (seen[predictable[0]] > 0).all() and (seen[~predictable[0]] == 0).all()


def test_model_trains_on_the_sampled_inputs():
    """One loss and backward on the sampled inputs: finite, and a gradient reaches mask_emb."""
    ids, mask, predictable = batch()
    out = sample_permutation(ids, mask, predictable, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = XLNetLMHeadModel(XLNetConfig(vocab_size=100, d_model=32, n_layer=2, n_head=4, d_inner=64))
    loss = model(ids, attention_mask=mask, perm_mask=out.perm_mask, target_mapping=out.target_mapping,
                 labels=out.labels).loss
    loss.backward()
    assert torch.isfinite(loss) and model.transformer.mask_emb.grad.abs().sum() > 0


def test_bad_arguments():
    ids, mask, predictable = batch()
    with pytest.raises(UsageError, match="k must"):
        sample_permutation(ids, mask, predictable, k=0)
    with pytest.raises(UsageError, match="predictable"):
        sample_permutation(ids, mask, predictable[:, :3])
