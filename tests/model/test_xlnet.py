"""XLNet encoder and PLM head: parity with transformers (two streams, memory, both load directions),
the query stream's blindness to its own token, left-to-right as a special order, config round trips."""

import json
import warnings

import pytest
import torch

from bertforge.errors import CheckpointError, ConfigError, UsageError
from bertforge.model.xlnet import (XLNetConfig, XLNetForSequenceClassification, XLNetLMHeadModel, XLNetModel,
                                   permutation_mask, sample_permutation)
from parity import perturb

TOL = 1e-5
TINY = dict(vocab_size=100, d_model=32, n_layer=2, n_head=4, d_inner=64)
VARIANTS = {  # config fields on top of TINY, each a code path of its own
    "bi": {},
    "uni-same-length": dict(attn_type="uni", same_length=True),
    "bi-data-clamp": dict(bi_data=True, clamp_len=3),
    "relu-untied": dict(ff_activation="relu", tie_word_embeddings=False),
}


def twins(hf, tmp_path, direction, cls="XLNetLMHeadModel", ours_cls=XLNetLMHeadModel, **fields):
    """(transformers model, bertforge model) holding the same weights, loaded the given direction."""
    if direction == "hf->ours":
        torch.manual_seed(0)
        theirs = perturb(getattr(hf, cls)(hf.XLNetConfig(**TINY, **fields)), 0)
        theirs.save_pretrained(tmp_path)
        ours = ours_cls.from_pretrained(tmp_path).eval()
    else:
        torch.manual_seed(1)
        ours = perturb(ours_cls(XLNetConfig(**TINY, **fields)), 1)
        ours.save_pretrained(tmp_path)
        theirs = getattr(hf, cls).from_pretrained(tmp_path).eval()
    return theirs, ours


def batch(B=4, T=12, seed=0, pad=True):
    """input_ids, token_type_ids, attention_mask (B, T): two segments; row 1 padded after 8 if pad."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 100, (B, T), generator=g)
    types = torch.zeros_like(ids)
    types[:, T // 2:] = 1
    mask = torch.ones_like(ids)
    if pad:
        mask[1, 8:] = 0
    return dict(input_ids=ids, token_type_ids=types, attention_mask=mask)


def plm(inputs, seed=0, k=3):
    """perm_mask, target_mapping, labels from our sampler (every real token predictable)."""
    p = sample_permutation(inputs["input_ids"], inputs["attention_mask"], inputs["attention_mask"].bool(), k=k,
                           generator=torch.Generator().manual_seed(seed))
    return dict(perm_mask=p.perm_mask, target_mapping=p.target_mapping), p.labels


def diff(a, b):
    return (a - b).abs().max().item()


# --- parity with transformers --------------------------------------------------------------------------

@pytest.mark.parametrize("direction", ["hf->ours", "ours->hf"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_lm_parity_plain_and_two_stream(hf, tmp_path, direction, variant):
    theirs, ours = twins(hf, tmp_path, direction, **VARIANTS[variant])
    inputs = batch()
    two, labels = plm(inputs)
    if variant.startswith("uni"):  # transformers' "uni" fails on any attention_mask or perm_mask
        del inputs["attention_mask"], two["perm_mask"]
    with torch.no_grad():
        a, b = theirs(**inputs), ours(**inputs)
        assert b.logits.shape == (4, 12, 100) and diff(a.logits, b.logits) < TOL  # content stream only
        a = theirs(**inputs, **two, labels=labels)
        b = ours(**inputs, **two, labels=labels)
    assert b.logits.shape == a.logits.shape == (4, labels.shape[1], 100)
    assert diff(a.logits, b.logits) < TOL
    assert abs(a.loss.item() - b.loss.item()) < TOL


@pytest.mark.parametrize("direction", ["hf->ours", "ours->hf"])
@pytest.mark.parametrize("fields", [dict(mem_len=7), dict(mem_len=20, reuse_len=8), dict(mem_len=0)])
def test_lm_parity_with_memory(hf, tmp_path, direction, fields):
    """Segment 1 caches memory; segment 2 attends to it, with and without the query stream."""
    theirs, ours = twins(hf, tmp_path, direction, **fields)
    first, second = batch(seed=1, pad=False), batch(seed=2, pad=False)
    with torch.no_grad():
        a1, b1 = theirs(**first, use_mems=True), ours(**first, use_mems=True)
        assert len(b1.mems) == 2
        for m_a, m_b in zip(a1.mems, b1.mems):  # transformers keeps (M, B, H), we keep (B, M, H)
            assert diff(m_a.transpose(0, 1), m_b) < TOL
        two, labels = plm(second, seed=3)
        for extra in ({}, two):
            a2 = theirs(**second, **extra, mems=a1.mems, use_mems=True)
            b2 = ours(**second, **extra, mems=b1.mems, use_mems=True)
            assert diff(a2.logits, b2.logits) < TOL
            for m_a, m_b in zip(a2.mems, b2.mems):
                assert diff(m_a.transpose(0, 1), m_b) < TOL
    expected = {7: 7, 20: 16, 0: 24}[fields["mem_len"]]  # reuse_len 8 caches 8 per segment
    assert b2.mems[0].shape == (4, expected, 32)


@pytest.mark.parametrize("fields", [{}, dict(bi_data=True, mem_len=5)])
def test_gradients_match(hf, tmp_path, fields):
    """Backward through both streams (and memory): every parameter's gradient agrees."""
    theirs, ours = twins(hf, tmp_path, "hf->ours", **fields)
    inputs = batch()
    two, labels = plm(inputs)
    mems = {}
    if fields:
        with torch.no_grad():
            prev = batch(seed=5, pad=False)
            mems = dict(a=theirs(**prev, use_mems=True).mems, b=ours(**prev, use_mems=True).mems)
    theirs(**inputs, **two, labels=labels, mems=mems.get("a")).loss.backward()
    ours(**inputs, **two, labels=labels, mems=mems.get("b")).loss.backward()
    grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert diff(p.grad, grads[name].grad) < TOL, name


def test_base_model_parity_and_prefix_both_ways(hf, tmp_path):
    """A bare XLNetModel (no prefix) loads from an LM checkpoint and the other way round."""
    theirs, ours = twins(hf, tmp_path / "lm", "hf->ours")
    inputs = batch()
    with pytest.warns(UserWarning, match="ignored 1 checkpoint tensors"):  # the LM head's bias
        base = XLNetModel.from_pretrained(tmp_path / "lm").eval()
    with torch.no_grad():
        two, _ = plm(inputs)
        assert diff(theirs.transformer(**inputs, **two).last_hidden_state,
                    base(**inputs, **two).last_hidden_state) < TOL
        base.save_pretrained(tmp_path / "base")
        with pytest.warns(UserWarning, match="lm_loss.bias"):  # the head's bias is not in an encoder
            lm = XLNetLMHeadModel.from_pretrained(tmp_path / "base").eval()
        assert diff(lm.transformer(**inputs).last_hidden_state, base(**inputs).last_hidden_state) == 0
        back = hf.XLNetModel.from_pretrained(tmp_path / "base").eval()
        assert diff(back(**inputs).last_hidden_state, base(**inputs).last_hidden_state) < TOL


def test_saved_checkpoint_is_transformers_layout(hf, tmp_path):
    from safetensors.torch import load_file

    torch.manual_seed(0)
    hf.XLNetLMHeadModel(hf.XLNetConfig(**TINY)).save_pretrained(tmp_path / "hf")
    XLNetLMHeadModel.from_pretrained(tmp_path / "hf").save_pretrained(tmp_path / "ours")
    assert set(load_file(tmp_path / "ours" / "model.safetensors")) == set(load_file(tmp_path / "hf" /
                                                                                     "model.safetensors"))
    ours, theirs = (json.loads((tmp_path / d / "config.json").read_text()) for d in ("ours", "hf"))
    assert ours["architectures"] == ["XLNetLMHeadModel"] and ours["model_type"] == "xlnet"
    assert {k: v for k, v in theirs.items() if k != "dtype"}.items() <= ours.items()


def test_lm_head_is_tied_to_the_word_embedding():
    model = XLNetLMHeadModel(XLNetConfig(**TINY))
    assert model.lm_loss.weight is model.transformer.word_embedding.weight
    untied = XLNetLMHeadModel(XLNetConfig(**TINY, tie_word_embeddings=False))
    assert untied.lm_loss.weight is not untied.transformer.word_embedding.weight


# --- what the objective guarantees ---------------------------------------------------------------------

def test_query_stream_never_sees_its_own_token():
    """Targets 5 -> 2 -> 6 in the order: changing token 2 leaves the logits at 2 (itself) and at 5
    (earlier) unchanged, and changes them at 6 (later, sees 2)."""
    torch.manual_seed(0)
    model = perturb(XLNetLMHeadModel(XLNetConfig(**TINY)), 0)
    T = 8
    ids = torch.randint(10, 100, (2, T))
    rank = torch.arange(T).repeat(2, 1)
    rank[:, 5], rank[:, 2], rank[:, 6] = 10, 11, 12
    is_target = torch.zeros(2, T, dtype=torch.bool)
    is_target[:, [2, 5, 6]] = True
    perm_mask = permutation_mask(rank, is_target)
    target_mapping = torch.zeros(2, 3, T)
    target_mapping[:, [0, 1, 2], [2, 5, 6]] = 1
    changed = ids.clone()
    changed[:, 2] = (ids[:, 2] + 7) % 100
    with torch.no_grad():
        a = model(ids, perm_mask=perm_mask, target_mapping=target_mapping).logits
        b = model(changed, perm_mask=perm_mask, target_mapping=target_mapping).logits
    assert diff(a[:, 0], b[:, 0]) == 0 and diff(a[:, 1], b[:, 1]) == 0
    assert diff(a[:, 2], b[:, 2]) > 1e-4
    # ... while the content stream at position 2 does read token 2
    with torch.no_grad():
        h_a = model.transformer(ids, perm_mask=perm_mask).last_hidden_state
        h_b = model.transformer(changed, perm_mask=perm_mask).last_hidden_state
    assert diff(h_a[:, 2], h_b[:, 2]) > 1e-4


def test_identity_order_is_left_to_right():
    """Every token a target in the order 0, 1, ..., T-1: perm_mask is causal (j >= i hidden) and the
    prediction at t reads only tokens < t. Position 0 has nothing visible (transformers then attends
    uniformly, so it reads everything); with memory from a previous segment it is causal too."""
    T = 10
    rank, every = torch.arange(T).repeat(2, 1), torch.ones(2, T, dtype=torch.bool)
    perm_mask = permutation_mask(rank, every)
    assert torch.equal(perm_mask[0], torch.ones(T, T).triu()) and torch.equal(perm_mask[1], perm_mask[0])
    torch.manual_seed(0)
    model = perturb(XLNetLMHeadModel(XLNetConfig(**TINY, mem_len=6)), 0)
    target_mapping = torch.eye(T).repeat(2, 1, 1)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 100, (2, T), generator=g)
    mems = model(torch.randint(10, 100, (2, 6), generator=g), use_mems=True).mems
    with torch.no_grad():
        for memory, first in ((None, 1), (mems, 0)):
            base = model(ids, perm_mask=perm_mask, target_mapping=target_mapping, mems=memory).logits
            for t in range(first, T):
                changed = ids.clone()
                changed[:, t:] = torch.randint(10, 100, (2, T - t), generator=g)
                out = model(changed, perm_mask=perm_mask, target_mapping=target_mapping, mems=memory).logits
                assert diff(out[:, first:t + 1], base[:, first:t + 1]) == 0
                if t + 1 < T:
                    assert diff(out[:, t + 1:], base[:, t + 1:]) > 1e-5


def test_padding_targets_and_padding_tokens_change_nothing():
    """A zero row of target_mapping pads the targets; padded tokens are invisible."""
    torch.manual_seed(0)
    model = perturb(XLNetLMHeadModel(XLNetConfig(**TINY)), 0)
    inputs = batch(B=2, pad=False)
    two, _ = plm(inputs)
    with torch.no_grad():
        base = model(**inputs, **two).logits
        extra = dict(two, target_mapping=torch.cat([two["target_mapping"], torch.zeros(2, 2, 12)], 1))
        assert diff(model(**inputs, **extra).logits[:, :base.shape[1]], base) < TOL
        padded = {k: torch.cat([v, v[:, :3] * 0 + (1 if k == "input_ids" else 0)], 1) for k, v in inputs.items()}
        pm = torch.nn.functional.pad(two["perm_mask"], (0, 3, 0, 3))
        tm = torch.nn.functional.pad(two["target_mapping"], (0, 3))
        out = model(**padded, perm_mask=pm, target_mapping=tm).logits
    assert diff(out, base) < TOL


# --- boundaries ----------------------------------------------------------------------------------------

def test_bad_inputs_are_usage_errors():
    model = XLNetLMHeadModel(XLNetConfig(**TINY)).eval()
    ids = torch.randint(0, 100, (2, 6))
    with pytest.raises(UsageError, match="perm_mask"):
        model(ids, perm_mask=torch.zeros(2, 6, 5))
    with pytest.raises(UsageError, match="one-hot"):
        model(ids, target_mapping=torch.full((2, 1, 6), 0.5))
    with pytest.raises(UsageError, match="mems"):
        model(ids, mems=[torch.zeros(2, 3, 32)])
    with pytest.raises(UsageError, match="not both"):
        model(ids, attention_mask=torch.ones(2, 6), input_mask=torch.zeros(2, 6))
    with pytest.raises(UsageError, match="even batch"):
        XLNetModel(XLNetConfig(**TINY, bi_data=True))(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(UsageError, match="labels"):
        model(ids, labels=torch.zeros(2, 5, dtype=torch.long))


def test_config_round_trip_keeps_unknown_keys(tmp_path):
    config = XLNetConfig(**TINY, mem_len=None, extra={"task_specific_params": {"x": 1}, "foo": "bar"})
    config.to_json_file(tmp_path / "config.json")
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["model_type"] == "xlnet" and data["d_head"] == 8 and data["foo"] == "bar"
    back = XLNetConfig.from_json_file(tmp_path / "config.json")
    assert back == config and back.extra["task_specific_params"] == {"x": 1}
    assert XLNetConfig.from_dict({**TINY, "n_token": 7}).vocab_size == 7  # the old name


@pytest.mark.parametrize("data, message", [
    ({**TINY, "model_type": "bert"}, "model_type"),
    ({**TINY, "d_head": 5}, "d_head"),
    ({**TINY, "n_head": 5}, "divisible"),
    ({**TINY, "ff_activation": "tanh"}, "ff_activation"),
    ({**TINY, "summary_type": "attn"}, "summary_type"),
    ({**TINY, "dropout": "x"}, "bad value"),
])
def test_bad_config_names_file_and_field(tmp_path, data, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message) as e:
        XLNetConfig.from_json_file(path)
    assert str(path) in str(e.value)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="JSON"):
        XLNetConfig.from_json_file(path)


def test_checkpoint_errors(tmp_path):
    torch.manual_seed(0)
    XLNetLMHeadModel(XLNetConfig(**TINY)).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="shape"):
        XLNetLMHeadModel.from_pretrained(tmp_path, d_inner=48)
    with pytest.raises(CheckpointError, match="lacks encoder weights"):
        XLNetLMHeadModel.from_pretrained(tmp_path, n_layer=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = XLNetForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
    assert clf.num_labels == 3 and any("logits_proj.weight" in str(w.message) for w in caught)
    assert any("lm_loss.bias" in str(w.message) for w in caught)  # unused, reported
