"""The model's own invariants: parameter counts, padding invariance, heads, and bad input."""

import pytest
import torch

from bertforge.config import BertConfig, ConfigError
from bertforge.model import BertForPreTraining, BertModel
from bertforge.model.pretraining import labelled_positions


def tiny(**kw) -> BertConfig:
    return BertConfig.preset("tiny", vocab_size=120, max_position_embeddings=64, **kw)


def test_parameter_counts_are_exact():
    assert BertModel(BertConfig.preset("base")).num_parameters() == 109_482_240
    assert BertForPreTraining(BertConfig.preset("base")).num_parameters() == 110_106_428
    with torch.device("meta"):  # large: count without allocating 1.3 GB
        assert BertModel(BertConfig.preset("large")).num_parameters() == 335_141_888


def test_seeds_rule_of_thumb_for_parameters():
    for name in ("base", "large"):
        c = BertConfig.preset(name)
        with torch.device("meta"):
            n = BertModel(c).num_parameters()
        approx = 30_000 * c.hidden_size + 12 * c.num_hidden_layers * c.hidden_size ** 2
        assert abs(n - approx) / n < 0.05


def test_initialisation_follows_bert():
    torch.manual_seed(0)
    m = BertForPreTraining(BertConfig.preset("mini"))
    w = m.bert.encoder.layer[0].intermediate.dense.weight
    assert abs(w.std().item() - 0.02) < 5e-4 and abs(w.mean().item()) < 5e-4
    assert torch.all(m.bert.encoder.layer[1].output.dense.bias == 0)
    assert torch.all(m.bert.embeddings.LayerNorm.weight == 1) and torch.all(m.bert.embeddings.LayerNorm.bias == 0)
    assert torch.all(m.cls.predictions.bias == 0)
    assert torch.all(m.bert.embeddings.word_embeddings.weight[0] == 0)  # [PAD] row, as transformers


def test_padding_does_not_change_results():
    torch.manual_seed(1)
    m = BertModel(tiny()).eval()
    ids = torch.randint(5, 120, (3, 20))
    types = torch.zeros_like(ids)
    types[:, 12:] = 1
    lengths = [20, 13, 7]
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    with torch.no_grad():
        batch = m(ids, types, mask, output_hidden_states=True)
        for i, n in enumerate(lengths):
            alone = m(ids[i:i + 1, :n], types[i:i + 1, :n], output_hidden_states=True)
            assert (alone.last_hidden_state[0] - batch.last_hidden_state[i, :n]).abs().max() < 1e-5
            assert (alone.pooler_output[0] - batch.pooler_output[i]).abs().max() < 1e-5
            for x, y in zip(alone.hidden_states, batch.hidden_states):
                assert (x[0] - y[i, :n]).abs().max() < 1e-5


def test_outputs_have_documented_shapes():
    m = BertModel(tiny()).eval()
    out = m(torch.randint(0, 120, (2, 9)), output_hidden_states=True, output_attentions=True)
    assert out.last_hidden_state.shape == (2, 9, 128) and out.pooler_output.shape == (2, 128)
    assert len(out.hidden_states) == 3 and all(h.shape == (2, 9, 128) for h in out.hidden_states)
    assert len(out.attentions) == 2 and all(a.shape == (2, 2, 9, 9) for a in out.attentions)
    assert torch.allclose(out.attentions[0].sum(-1), torch.ones(2, 2, 9))
    plain = m(torch.randint(0, 120, (2, 9)))
    assert plain.hidden_states is None and plain.attentions is None


def test_sparse_mlm_loss_equals_dense_computation():
    torch.manual_seed(2)
    m = BertForPreTraining(tiny()).eval()
    ids = torch.randint(5, 120, (4, 16))
    labels = torch.full_like(ids, -100)
    chosen = torch.rand(ids.shape) < 0.2
    chosen[0, 3] = True
    labels[chosen] = ids[chosen]
    nsp = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        sparse = m(ids, labels=labels, next_sentence_label=nsp)
        dense = m(ids)
    assert dense.prediction_logits.shape == (4, 16, 120)
    assert sparse.prediction_logits.shape == (int(chosen.sum()), 120)
    assert (sparse.prediction_logits - dense.prediction_logits[chosen]).abs().max() < 1e-5
    ref_mlm = torch.nn.functional.cross_entropy(dense.prediction_logits.view(-1, 120), labels.view(-1))
    ref_nsp = torch.nn.functional.cross_entropy(dense.seq_relationship_logits, nsp)
    assert abs(sparse.mlm_loss.item() - ref_mlm.item()) < 1e-5
    assert abs(sparse.nsp_loss.item() - ref_nsp.item()) < 1e-5
    assert abs(sparse.loss.item() - (ref_mlm + ref_nsp).item()) < 1e-5


def test_labelled_positions_put_cls_first_then_labels_in_order():
    labels = torch.tensor([[-100, -100, 7, -100, 9],
                           [-100, 5, -100, -100, -100],
                           [-100, -100, -100, -100, -100]])
    positions, gathered = labelled_positions(labels)
    assert positions.tolist() == [[0, 2, 4], [0, 1, 0], [0, 0, 0]]
    assert gathered.tolist() == [[-100, 7, 9], [-100, 5, -100], [-100, -100, -100]]


def test_last_layer_at_labelled_positions_gives_the_full_models_loss_and_gradients():
    """The training path computes the last layer only at [CLS] and labelled positions: same loss and
    same gradient for every parameter as the full computation, with padding and uneven label counts."""
    torch.manual_seed(3)
    m = BertForPreTraining(tiny(num_hidden_layers=3)).eval()
    ids = torch.randint(5, 120, (4, 24))
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    mask[3, 9:] = 0
    types = (torch.arange(24) >= 10).long().expand(4, -1) * mask
    labels = torch.full_like(ids, -100)
    chosen = (torch.rand(ids.shape) < 0.2) & mask.bool()
    chosen[:, 0] = False
    chosen[2] = False  # a row without labels
    chosen[0, 5] = True
    labels[chosen] = ids[chosen]
    nsp = torch.tensor([0, 1, 1, 0])

    def grads(loss):
        m.zero_grad()
        loss.backward()
        return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    fast = m(ids, types, mask, labels=labels, next_sentence_label=nsp)
    fast_grads = grads(fast.loss)
    full = m(ids, types, mask, next_sentence_label=nsp)  # no labels: every position computed
    ref_mlm = torch.nn.functional.cross_entropy(full.prediction_logits.view(-1, 120), labels.view(-1))
    ref_grads = grads(ref_mlm + full.nsp_loss)
    assert abs(fast.loss.item() - (ref_mlm + full.nsp_loss).item()) < 1e-5
    assert (fast.prediction_logits - full.prediction_logits[chosen]).abs().max() < 1e-5
    assert fast_grads.keys() == ref_grads.keys()
    for name, g in ref_grads.items():
        assert (fast_grads[name] - g).abs().max() < 1e-5, name


def test_output_positions_refuse_hidden_states():
    m = BertModel(tiny())
    ids = torch.randint(0, 120, (2, 8))
    with pytest.raises(ValueError, match="output_positions cannot be combined"):
        m(ids, output_hidden_states=True, output_positions=torch.zeros(2, 1, dtype=torch.long))
    assert m(ids, output_positions=torch.tensor([[0, 3], [0, 5]])).last_hidden_state.shape == (2, 2, 128)


def test_decoder_is_tied_to_word_embeddings():
    m = BertForPreTraining(tiny())
    ids = torch.randint(0, 120, (2, 8))
    labels = ids.clone()
    m(ids, labels=labels).loss.backward()
    g = m.bert.embeddings.word_embeddings.weight.grad
    assert g is not None and g[ids.unique()].abs().sum() > 0
    unused = torch.ones(120, dtype=torch.bool)
    unused[ids.unique()] = False
    assert g[unused].abs().sum() > 0  # gradient from the decoder reaches rows never looked up


@pytest.mark.parametrize("make, message", [
    (lambda: dict(input_ids=torch.tensor([[1, 2, 120]])), r"token id 120 is outside the vocabulary \[0, 120\)"),
    (lambda: dict(input_ids=torch.tensor([[1, -3, 2]])), r"token id -3 is outside"),
    (lambda: dict(input_ids=torch.ones(1, 65, dtype=torch.long)), r"length 65 exceeds max_position_embeddings \(64\)"),
    (lambda: dict(input_ids=torch.ones(1, 4, dtype=torch.long), token_type_ids=torch.tensor([[0, 0, 1, 2]])),
     r"token_type_ids must be in \[0, 2\)"),
    (lambda: dict(input_ids=torch.ones(2, 4, dtype=torch.long), attention_mask=torch.ones(2, 5)),
     r"attention_mask has shape \(2, 5\) but input_ids has \(2, 4\)"),
    (lambda: dict(input_ids=torch.ones(2, 4, dtype=torch.long), token_type_ids=torch.zeros(2, 3, dtype=torch.long)),
     r"token_type_ids has shape \(2, 3\)"),
    (lambda: dict(input_ids=torch.ones(4, dtype=torch.long)), r"input_ids must be a \(batch, length\) tensor"),
    (lambda: dict(input_ids=torch.ones(1, 4)), r"must hold integer token ids"),
])
def test_bad_inputs_are_clear_errors(make, message):
    m = BertModel(tiny())
    with pytest.raises(ValueError, match=message):
        m(**make())


def test_hidden_size_must_divide_by_heads():
    with pytest.raises(ConfigError, match="divisible"):
        BertModel(BertConfig(hidden_size=130, num_attention_heads=4))


@pytest.mark.parametrize("family", ["bert", "roformer"])
def test_pretraining_losses_are_the_same_when_hidden_states_or_attentions_are_asked_for(family):
    """Asking for them runs the last layer at every position instead of the labelled ones alone."""
    from bertforge.model.registry import PRETRAINING, get_family

    registered = get_family(family)
    torch.manual_seed(0)
    model = registered.heads[PRETRAINING](registered.preset("tiny", vocab_size=120,
                                                               max_position_embeddings=64)).eval()
    ids = torch.randint(5, 120, (2, 12))
    labels = torch.full_like(ids, -100)
    labels[0, 3], labels[1, 5], labels[1, 9] = 7, 8, 9
    nsp = torch.tensor([0, 1])
    plain = model(ids, labels=labels, next_sentence_label=nsp)
    for asked in ({"output_hidden_states": True}, {"output_attentions": True}):
        out = model(ids, labels=labels, next_sentence_label=nsp, **asked)
        assert torch.allclose(out.loss, plain.loss, atol=1e-6)
        assert torch.allclose(out.mlm_loss, plain.mlm_loss, atol=1e-6)
        assert out.prediction_logits.shape == plain.prediction_logits.shape == (3, 120)
