"""ELMo's fast training paths against straightforward autograd references: the same values and gradients.

The references are the plain implementations the fast paths replaced: the LSTM one step at a time under
autograd, the softmax loss as F.cross_entropy over all logits, the char CNN over all 50 characters.
"""

import pytest
import torch
import torch.nn.functional as F

from bertforge.model.elmo import ElmoConfig
from bertforge.model.elmo.char_cnn import CharCNN
from bertforge.model.elmo.chars import batch_to_char_ids
from bertforge.model.elmo.lstm import ElmoLstm, reverse_padded
from bertforge.model.elmo.softmax_loss import linear_cross_entropy

SMALL = dict(char_embedding_dim=4, filters=[[1, 8], [2, 8], [3, 16]], max_characters_per_token=12, n_highway=1,
             lstm_dim=24, n_layers=2, projection_dim=8, dropout=0.0)


def reference_layer(layer, x, mask, h, c):
    """One direction of one layer, one step at a time under autograd (bilm-tf's LSTMCell)."""
    outputs = []
    for t in range(x.shape[1]):
        i, f, g, o = (layer.input_linear(x[:, t]) + layer.state_linear(h)).chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        if layer.cell_clip:
            c_new = c_new.clamp(-layer.cell_clip, layer.cell_clip)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        if layer.projection is not None:
            h_new = layer.projection(h_new)
            if layer.proj_clip:
                h_new = h_new.clamp(-layer.proj_clip, layer.proj_clip)
        live = mask[:, t, None]
        h, c = torch.where(live, h_new, h), torch.where(live, c_new, c)
        outputs.append(h_new * live)
    return torch.stack(outputs, dim=1), h, c


def reference_lstm(lstm: ElmoLstm, x, mask, state):
    lengths = mask.sum(1)
    h0, c0 = state
    results = []
    for d, (layers, inputs) in enumerate(((lstm.forward_layers, x), (lstm.backward_layers, reverse_padded(x, lengths)))):
        outs, hs, cs = [], [], []
        for i, layer in enumerate(layers):
            out, h, c = reference_layer(layer, inputs, mask, h0[d, i], c0[d, i])
            if lstm.skip_connections and i > 0:
                out = out + inputs
            outs.append(out)
            hs.append(h)
            cs.append(c)
            inputs = out
        results.append((outs, torch.stack(hs), torch.stack(cs)))
    (fwd, hf, cf), (bwd, hb, cb) = results
    layers = [torch.cat([f, reverse_padded(b, lengths)], dim=-1) for f, b in zip(fwd, bwd)]
    return layers, (torch.stack([hf, hb]), torch.stack([cf, cb]))


def outputs_and_grads(fn, lstm, x, mask, state):
    x, h0, c0 = (t.clone().requires_grad_() for t in (x, *state))
    layers, (h, c) = fn(lstm, x, mask, (h0, c0))
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in (*layers, h, c)]
    loss = sum((t * w).sum() for t, w in zip((*layers, h, c), weights))
    grads = torch.autograd.grad(loss, [x, h0, c0, *lstm.parameters()])
    return [*layers, h, c], grads


@pytest.mark.parametrize("overrides", [
    dict(cell_clip=0.5, proj_clip=0.3),  # clips that bind
    dict(cell_clip=None, proj_clip=None, use_skip_connections=False, n_layers=3),
    dict(lstm_dim=8, cell_clip=0.5, proj_clip=None),  # no projection
])
@pytest.mark.parametrize("lengths", [[7, 3, 0, 7], [7, 7, 7, 7]])
def test_lstm_matches_the_step_by_step_reference(overrides, lengths):
    torch.manual_seed(0)
    config = ElmoConfig(**{**SMALL, **overrides})
    lstm = ElmoLstm(config).double()
    B, T = len(lengths), 7
    x = 2 * torch.randn(B, T, config.projection_dim, dtype=torch.double)
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    state = (torch.randn(2, config.n_layers, B, config.projection_dim, dtype=torch.double),  # a carried state
             3 * torch.randn(2, config.n_layers, B, config.lstm_dim, dtype=torch.double))
    ours, our_grads = outputs_and_grads(ElmoLstm.forward, lstm, x, mask, state)
    theirs, their_grads = outputs_and_grads(reference_lstm, lstm, x, mask, state)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    for a, b in zip(our_grads, their_grads):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-11)
    assert all(g.abs().max() > 0 for g in their_grads)
    if config.cell_clip:  # the clip's gradient is exercised
        _, (_, c) = lstm(x, mask, state)
        assert (c.abs() == config.cell_clip).any()


def test_one_layer_alone_matches_the_reference():
    torch.manual_seed(0)
    config = ElmoConfig(**{**SMALL, "cell_clip": 0.5, "proj_clip": 0.3})
    layer = ElmoLstm(config).double().forward_layers[0]
    x = 2 * torch.randn(3, 6, 8, dtype=torch.double)
    mask = torch.arange(6)[None] < torch.tensor([6, 2, 4])[:, None]
    state = (torch.randn(3, 8, dtype=torch.double), torch.randn(3, 24, dtype=torch.double))
    out, (h, c) = layer(x, mask, state)
    expected_out, expected_h, expected_c = reference_layer(layer, x, mask, *state)
    for a, b in zip((out, h, c), (expected_out, expected_h, expected_c)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_lstm_float32_training_step_matches_with_dropout_off():
    torch.manual_seed(0)
    config = ElmoConfig(**{**SMALL, "lstm_dim": 64, "projection_dim": 16})
    lstm = ElmoLstm(config).train()
    x, mask = torch.randn(3, 9, 16), torch.ones(3, 9, dtype=torch.bool)
    state = lstm.zero_state(3)
    ours, our_grads = outputs_and_grads(ElmoLstm.forward, lstm, x, mask, state)
    theirs, their_grads = outputs_and_grads(reference_lstm, lstm, x, mask, state)
    for a, b in zip([*ours, *our_grads], [*theirs, *their_grads]):
        torch.testing.assert_close(a, b, atol=2e-6, rtol=1e-5)


def test_softmax_loss_matches_cross_entropy_in_value_and_gradients():
    torch.manual_seed(0)
    N, P, V = 23, 5, 17
    hidden = torch.randn(N, P, dtype=torch.double, requires_grad=True)
    weight = torch.randn(V, P, dtype=torch.double, requires_grad=True)
    bias = torch.randn(V, dtype=torch.double, requires_grad=True)
    targets = torch.randint(0, V, (N,))
    expected = F.cross_entropy(F.linear(hidden, weight, bias), targets, reduction="sum")
    expected_grads = torch.autograd.grad(3 * expected, [hidden, weight, bias])
    for chunk in (1, 5, N):
        loss = linear_cross_entropy(hidden, weight, bias, targets, chunk)
        torch.testing.assert_close(loss, expected, atol=1e-12, rtol=1e-12)
        for a, b in zip(torch.autograd.grad(3 * loss, [hidden, weight, bias]), expected_grads):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy(hidden, weight, bias, targets, 4), expected)
    half = linear_cross_entropy(hidden.half().requires_grad_(), weight.half(), bias.half(), targets, 5)
    assert half.dtype == torch.float32  # computed in float32
    torch.testing.assert_close(half.double(), expected, atol=0.05, rtol=1e-3)


def test_softmax_loss_stays_finite_for_a_hopeless_target():
    hidden = torch.tensor([[1.0, 0.0]], requires_grad=True)
    weight = torch.tensor([[200.0, 0.0], [-200.0, 0.0]], requires_grad=True)  # target 1 is 400 nats below
    bias = torch.zeros(2, requires_grad=True)
    loss = linear_cross_entropy(hidden, weight, bias, torch.tensor([1]), 1)
    assert loss.item() == pytest.approx(400.0)
    loss.backward()
    torch.testing.assert_close(hidden.grad, torch.tensor([[400.0, 0.0]]))  # d/dh (w0 - w1) . h


def full_length_embedding(cnn: CharCNN, char_ids):
    """The char CNN over every character position, max-pooled with amax (bilm-tf's reduce_max)."""
    chars = cnn.char_embedding(char_ids).transpose(1, 2)
    x = torch.cat([cnn.activation(conv(chars).amax(dim=-1)) for conv in cnn.convs], dim=-1)
    for highway in cnn.highways:
        x = highway(x)
    return cnn.projection(x)


def test_char_cnn_reads_only_the_characters_that_matter():
    torch.manual_seed(0)
    cnn = CharCNN(ElmoConfig(**{**SMALL, "max_characters_per_token": 16})).double()
    cnn.reset_parameters()
    words = [["a", "bb", "a"], ["ccc"], []]
    short = batch_to_char_ids(words, 16).view(-1, 16)  # includes an all-zero row (no token)
    assert cnn.needed_characters(short) == 5 + 3  # "ccc" with its markers, then one widest filter
    long = batch_to_char_ids([["x" * 20, "ab"]], 16).view(-1, 16)  # a word cut to 14 bytes fills the row
    assert cnn.needed_characters(long) == 16
    for char_ids in (short, long):
        ours = cnn.embed_tokens(char_ids)
        theirs = full_length_embedding(cnn, char_ids)
        torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)
        weights = torch.randn(ours.shape, dtype=torch.double)
        for a, b in zip(torch.autograd.grad((ours * weights).sum(), list(cnn.parameters())),
                        torch.autograd.grad((theirs * weights).sum(), list(cnn.parameters()))):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
