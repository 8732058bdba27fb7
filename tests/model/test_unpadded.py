"""The unpadded encoder path (model/unpadded.py) gives the padded path's outputs and gradients (1e-5): uneven
lengths, sentence pairs, an all-full batch, the causal mask, the sparse last layer of pre-training, every
attention variant; it steps aside for hidden states, attentions, left padding and light padding."""

import numpy as np
import pytest
import torch

from bertforge.config import BertConfig
from bertforge.model import (BertForMultipleChoice, BertForPreTraining, BertForSequenceClassification,
                             BertForTokenClassification, BertLMHeadModel, BertModel)
from bertforge.model import unpadded
from bertforge.model.bert import unpads
from bertforge.model.encoder import BertEncoder

TOL = 1e-5


def config(**kw):
    return BertConfig(**{**dict(vocab_size=120, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                intermediate_size=128, max_position_embeddings=64), **kw})


def padded_batch(lengths, pairs=True, seed=0):
    """Right-padded ids, token types (a second segment from the middle of each row when ``pairs``), mask."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    mask = (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).long()
    ids = torch.randint(5, 120, (len(lengths), T), generator=g) * mask
    types = (torch.arange(T)[None] >= torch.tensor(lengths)[:, None] // 2).long() * mask if pairs else None
    return ids, types, mask


def both_paths(model, bert, run):
    """(output, {name: gradient}) of ``run(model)`` on the padded path, then on the unpadded path."""
    results = []
    for threshold in (float("inf"), 0.0):
        bert.unpad_threshold = threshold
        model.zero_grad()
        out = run(model)
        out[0].backward()
        results.append((out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    return results


def assert_close(a, b):
    assert a.shape == b.shape
    assert (a - b).abs().max() <= TOL * max(1.0, b.abs().max().item()), (a - b).abs().max()


def assert_same_gradients(ga, gb):
    assert ga.keys() == gb.keys()
    for name in ga:
        assert_close(ga[name], gb[name])


@pytest.mark.parametrize("variant", ["repad", "loop", "bucket", "jagged"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lengths, pairs", [([9, 3, 12, 7], True), ([12, 12, 12], True), ([5, 11, 2, 8], False)])
def test_outputs_and_gradients_equal_the_padded_path(monkeypatch, variant, causal, lengths, pairs):
    monkeypatch.setitem(unpadded.ATTENTION, "cpu", variant)
    torch.manual_seed(0)
    model = BertModel(config(is_decoder=causal)).train()  # dropout is 0.1: the same modules, train mode
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    for layer in model.encoder.layer:
        layer.attention.self.dropout_p = 0.0
    ids, types, mask = padded_batch(lengths, pairs)
    real = mask.bool()

    def run(m):
        out = m(ids, types, mask)
        hidden = out.last_hidden_state * mask[..., None]
        return (hidden.pow(2).sum() + out.pooler_output.sum(), hidden, out.pooler_output)

    (padded, g_padded), (packed, g_packed) = both_paths(model, model, run)
    assert_close(packed[1][real], padded[1][real])
    assert (packed[1][~real] == 0).all()  # zero at the padding
    assert_close(packed[2], padded[2])
    assert_close(packed[0], padded[0])
    assert_same_gradients(g_packed, g_padded)


def test_the_unpadded_path_runs_and_steps_aside(monkeypatch):
    calls = []
    original = BertEncoder._unpadded
    monkeypatch.setattr(BertEncoder, "_unpadded", lambda self, *a: calls.append(1) or original(self, *a))
    model = BertModel(config()).eval()
    ids, types, mask = padded_batch([9, 3, 12, 7])
    model(ids, types, mask)
    assert calls == [1]
    out = model(ids, types, mask, output_hidden_states=True, output_attentions=True)
    assert calls == [1] and len(out.hidden_states) == 4 and len(out.attentions) == 3
    model(ids, types, torch.ones_like(mask))  # no padding: the threshold keeps the padded path
    left = mask.flip(1)  # left padding: only the padded path handles it
    model(ids.flip(1), types.flip(1), left)
    model(ids, types)  # no mask at all
    assert calls == [1]
    light = torch.ones(8, 40, dtype=torch.long)
    light[0, 38:] = 0  # 0.6% padding: below the threshold
    model(light * 7, None, light)
    assert calls == [1]



def test_only_the_cpu_unpads_by_default_and_a_set_threshold_decides_everywhere():
    """Measured: the CPU gains from 3% padding on, a GPU loses at 45% (bert.UNPAD_THRESHOLD)."""
    lengths = np.array([9, 3, 12, 7])  # 35% padding at T = 12
    assert unpads(lengths, 12, torch.device("cpu"), None)
    assert not unpads(np.array([12, 12, 11]), 12, torch.device("cpu"), None)  # 3% padding
    for device in (torch.device("cuda"), torch.device("mps"), torch.device("meta")):
        assert not unpads(lengths, 12, device, None)
        assert unpads(lengths, 12, device, 0.0) and unpads(lengths, 12, device, 0.35)
        assert not unpads(lengths, 12, device, 0.36)
    assert not unpads(lengths, 12, torch.device("cpu"), float("inf"))

def test_heads_equal_the_padded_path():
    torch.manual_seed(0)
    cfg = config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, extra={"id2label": {"0": "a", "1": "b"}})
    ids, types, mask = padded_batch([9, 3, 12, 7])
    labels = torch.tensor([0, 1, 1, 0])
    model = BertForSequenceClassification(cfg)
    (a, ga), (b, gb) = both_paths(model, model.bert, lambda m: (m(ids, types, mask, labels=labels).loss,))
    assert_close(b[0], a[0])
    assert_same_gradients(gb, ga)

    model = BertForTokenClassification(cfg)
    tags = torch.where(mask.bool(), torch.randint(0, 2, mask.shape), -100)
    (a, ga), (b, gb) = both_paths(model, model.bert, lambda m: (m(ids, types, mask, labels=tags).loss,
                                                                  m(ids, types, mask).logits))
    assert_close(b[0], a[0])
    assert_close(b[1][mask.bool()], a[1][mask.bool()])
    assert_same_gradients(gb, ga)

    model = BertForMultipleChoice(cfg)
    choice = [t.view(2, 2, -1) for t in (ids, types, mask)]
    (a, ga), (b, gb) = both_paths(model, model.bert, lambda m: (m(*choice, labels=torch.tensor([0, 1])).loss,))
    assert_close(b[0], a[0])
    assert_same_gradients(gb, ga)


@pytest.mark.parametrize("variant", ["repad", "loop", "bucket"])
def test_pretraining_losses_and_gradients_equal_the_padded_path(monkeypatch, variant):
    """The sparse last layer (queries at [CLS] and the labelled positions) and the causal LM head."""
    monkeypatch.setitem(unpadded.ATTENTION, "cpu", variant)
    torch.manual_seed(0)
    cfg = config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ids, types, mask = padded_batch([9, 3, 12, 7])
    labels = torch.full_like(ids, -100)
    labels[0, [2, 5]], labels[1, 1], labels[2, [3, 4, 10]] = 7, 8, 9  # row 3 has none
    model = BertForPreTraining(cfg)
    nsp = torch.tensor([0, 1, 0, 1])
    (a, ga), (b, gb) = both_paths(model, model.bert, lambda m: (
        m(ids, types, mask, labels=labels, next_sentence_label=nsp).loss,))
    assert_close(b[0], a[0])
    assert_same_gradients(gb, ga)

    model = BertLMHeadModel(config(is_decoder=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    lm_labels = ids.masked_fill(mask == 0, -100)
    (a, ga), (b, gb) = both_paths(model, model.bert, lambda m: (m(ids, types, mask, labels=lm_labels).loss,))
    assert_close(b[0], a[0])
    assert_same_gradients(gb, ga)


def test_unpad_and_pad_are_inverse_and_the_layout_is_exact():
    layout = unpadded.unpadding([3, 1, 4], width=4, device="cpu")
    assert layout.indices.tolist() == [0, 1, 2, 4, 8, 9, 10, 11]
    assert layout.cu_seqlens.tolist() == [0, 3, 4, 8] and layout.max_seqlen == 4 and layout.batch == 3
    x = torch.randn(3, 4, 5)
    packed = unpadded.unpad_input(x, layout.indices)
    assert packed.shape == (8, 5) and torch.equal(packed[3], x[1, 0])
    back = unpadded.pad_output(packed, layout.indices, 3, 4)
    assert torch.equal(back[layout.key_mask], x[layout.key_mask]) and (back[~layout.key_mask] == 0).all()
    assert unpadded.packed_rows(layout, torch.tensor([[0, 2], [0, 0], [1, 3]])).tolist() == [0, 2, 3, 3, 5, 7]
    assert unpadded.prefix_lengths(np.array([[1, 1, 0], [1, 0, 0]])).tolist() == [2, 1]
    assert unpadded.prefix_lengths(np.array([[0, 1, 1], [1, 0, 0]])) is None  # left padding
    assert unpadded.prefix_lengths(np.array([[1, 0, 1]])) is None  # a hole


def test_host_copies_travel_with_the_tensor_and_nothing_else_is_read(monkeypatch):
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    moved = unpadded.to_device(mask, "cpu")
    assert not hasattr(moved, "_bertforge_host")  # on the CPU there is nothing to wait for: no copy
    mask[0, 1] = 0
    assert unpadded.host_values(moved).tolist() == [[1, 0, 0], [1, 0, 0]]  # the values now
    monkeypatch.setattr(unpadded, "free_to_read", lambda t: False)  # as on an accelerator
    moved = unpadded.to_device(mask, "cpu")
    mask[0, 0] = 0
    assert unpadded.host_values(moved).tolist() == [[1, 0, 0], [1, 0, 0]]  # the copy made at the move
    fresh = torch.tensor([[1, 0]])
    assert unpadded.host_values(fresh) is None  # would wait for the device: not read
    assert unpadded.host_values(fresh, read=True).tolist() == [[1, 0]]  # allowed outside a training step
    assert unpadded.host_values(unpadded.to_device(fresh, "cpu")).tolist() == [[1, 0]]


def test_a_training_step_without_host_copies_runs_padded_and_still_checks_nothing_on_the_device(monkeypatch):
    """On an accelerator, a batch that did not come through to_device takes the padded path in training
    (its lengths would need a device read) and the unpadded one in evaluation (a read is allowed there)."""
    calls = []
    original = BertEncoder._unpadded
    monkeypatch.setattr(BertEncoder, "_unpadded", lambda self, *a: calls.append(1) or original(self, *a))
    monkeypatch.setattr(unpadded, "free_to_read", lambda t: False)
    model = BertModel(config())
    ids, types, mask = padded_batch([9, 3, 12, 7])
    model.train()(ids, types, mask)
    assert calls == []
    model.train()(*(unpadded.to_device(t, "cpu") for t in (ids, types, mask)))
    assert calls == [1]
    with torch.no_grad():
        model.eval()(ids, types, mask)
    assert calls == [1, 1]
    with pytest.raises(ValueError, match="outside the vocabulary"):  # checked on the host copy
        model.train()(*(unpadded.to_device(t, "cpu") for t in (ids + 200, types, mask)))


def test_weight_names_are_unchanged():
    names = set(BertModel(config()).state_dict())
    assert "encoder.layer.0.attention.self.query.weight" in names
    assert not any("unpad" in n for n in names)


@pytest.mark.parametrize("variant, calls_per_layer", [("loop", 4), ("bucket", 3)])
@pytest.mark.parametrize("causal", [False, True])
def test_inference_attention_takes_the_fused_cpu_kernel(monkeypatch, variant, calls_per_layer, causal):
    """Inference on CPU: every attention call (one per sequence, or one per bucket of similar lengths: here
    {12, 9}, {7}, {3}) goes to PyTorch's fused (flash) kernel, which takes only 4-D inputs; 3-D ones fall back
    to the unfused math path, ~1.7x slower a call on short sentences."""
    from torch.profiler import profile

    monkeypatch.setitem(unpadded.ATTENTION, "cpu", variant)
    model = (BertLMHeadModel if causal else BertModel)(config(is_decoder=causal)).eval()
    ids, types, mask = padded_batch([9, 3, 12, 7])
    with torch.inference_mode(), profile() as prof:
        model(ids, types, mask)
    calls = {e.key: e.count for e in prof.key_averages() if "scaled_dot_product" in e.key}
    assert calls.get("aten::_scaled_dot_product_flash_attention_for_cpu") == calls_per_layer * 3, calls
    assert not any("math" in key for key in calls), calls


def test_buckets_group_similar_lengths_and_put_every_row_back():
    layout = unpadded.unpadding([9, 3, 12, 7, 12], width=12, device="cpu")
    plan = layout.buckets
    assert [b.shape for b in plan.buckets] == [(3, 12), (1, 7), (1, 3)]  # 12, 12, 9 (>= 0.7 x 12); 7; 3
    assert plan.buckets[0].key_mask[:, 0, 0].sum(1).tolist() == [12, 12, 9]
    assert plan.buckets[1].key_mask is None  # no padding: no mask
    assert plan.sizes == [36, 7, 3] and plan.rows.shape == (46,)
    assert torch.equal(plan.rows[plan.slots], torch.arange(sum([9, 3, 12, 7, 12])))  # every packed row, once
    # bucket 0 holds sequences 2, 4, 0 (longest first), whose packed rows start at 12, 31 and 0
    assert plan.rows[:12].tolist() == list(range(12, 24)) and plan.rows[24:36].tolist() == list(range(9)) + [0] * 3
    assert unpadded.length_buckets([], "cpu").buckets == ()
