"""ElmoLanguageModel (the LM loss, by hand and by training), WordVocab, and ElmoFeatures."""

import math

import pytest
import torch

from bertforge.errors import DataFormatError
from bertforge.model.elmo import (ElmoBiLM, ElmoConfig, ElmoFeatures, ElmoLanguageModel, WordVocab,
                                  batch_to_char_ids)

TINY = dict(char_embedding_dim=4, filters=[[1, 8], [2, 8], [3, 16]], max_characters_per_token=12, n_highway=1,
            lstm_dim=24, n_layers=2, projection_dim=8, dropout=0.0)
TEXT = ["the cat sat on the mat", "a dog ran in the park", "the cat saw a dog", "birds sing in the morning"]


def tiny_lm(**overrides) -> ElmoLanguageModel:
    torch.manual_seed(0)
    vocab = WordVocab.build(s.split() for s in TEXT)
    return ElmoLanguageModel(ElmoConfig(**{**TINY, **overrides}), vocab)


def test_vocab_puts_markers_first_then_frequency(tmp_path):
    vocab = WordVocab.build([["b", "a", "b", "c"], ["c", "b", "<S>"]], max_words=2)
    assert vocab.words == ["<S>", "</S>", "<UNK>", "b", "c"]  # ties in order of first appearance
    assert vocab.encode(["c", "zzz", "</S>"]) == [4, vocab.unk, vocab.eos]
    vocab.save(tmp_path / "vocab.txt")
    assert WordVocab.load(tmp_path / "vocab.txt").words == vocab.words
    (tmp_path / "bad.txt").write_text("<S>\n</S>\nword\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt: no <UNK> line"):
        WordVocab.load(tmp_path / "bad.txt")
    (tmp_path / "dup.txt").write_text("<S>\n</S>\n<UNK>\n<S>\n")
    with pytest.raises(DataFormatError, match=r"dup\.txt:4: '<S>' repeats line 1"):
        WordVocab.load(tmp_path / "dup.txt")


def test_loss_is_the_hand_computed_cross_entropy():
    model = tiny_lm().eval()
    words = "the cat sat zebra a mat".split()  # "zebra" is not in the vocabulary: <UNK>
    char_ids, word_ids, mask = model.batch([words])
    out = model(char_ids, word_ids, mask)

    ids = model.vocab.encode(["<S>", *words, "</S>"])
    assert word_ids[0].tolist() == ids and ids[4] == model.vocab.unk
    with torch.no_grad():
        top = model.bilm(char_ids)[0, -1].double()  # (T, 16)
    W, b = model.softmax.weight.detach().double(), model.softmax.bias.detach().double()

    def nll(h, target):
        scores = [float(W[v] @ h + b[v]) for v in range(len(model.vocab))]
        return math.log(sum(math.exp(s) for s in scores)) - scores[target]

    n = len(ids)
    forward = [nll(top[t, :8], ids[t + 1]) for t in range(n - 1)]  # predicts the next word
    backward = [nll(top[t, 8:], ids[t - 1]) for t in range(1, n)]  # predicts the previous word
    assert out.forward_count.item() == out.backward_count.item() == n - 1
    assert out.forward_sum.item() == pytest.approx(sum(forward), rel=1e-5)
    assert out.backward_sum.item() == pytest.approx(sum(backward), rel=1e-5)
    assert out.forward_loss.item() == pytest.approx(sum(forward) / (n - 1), rel=1e-5)
    assert out.loss.item() == pytest.approx((sum(forward) + sum(backward)) / (2 * (n - 1)), rel=1e-5)


def test_padding_and_chunking_do_not_change_the_loss(monkeypatch):
    model = tiny_lm().eval()
    sentences = [s.split() for s in TEXT]
    batch = model(*model.batch(sentences))
    singles = [model(*model.batch([s])) for s in sentences]
    total = sum(o.forward_sum for o in singles)
    assert batch.forward_count.item() == sum(o.forward_count.item() for o in singles)
    torch.testing.assert_close(batch.forward_sum, total, atol=1e-4, rtol=1e-5)

    import bertforge.model.elmo.lm as lm
    monkeypatch.setattr(lm, "LOGITS_PER_CHUNK", 3 * len(model.vocab))  # 3 tokens a chunk, checkpointed
    model.train()
    chunked = model(*model.batch(sentences))
    torch.testing.assert_close(chunked.loss, batch.loss)
    chunked.loss.backward()
    assert model.softmax.weight.grad is not None and model.bilm.char_cnn.convs[0].weight.grad is not None


def test_loss_decreases_on_repeated_text():
    model = tiny_lm().train()
    batch = model.batch([s.split() for s in TEXT])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(200):
        loss = model(*batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    print(f"LM loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert losses[0] == pytest.approx(math.log(len(model.vocab)), rel=0.2)
    assert losses[-1] < 0.25 * losses[0]


def test_save_load_keeps_vocab_and_outputs(tmp_path):
    model = tiny_lm().eval()
    model.save_pretrained(tmp_path / "lm")
    assert (tmp_path / "lm" / "vocab.txt").read_text().splitlines()[:3] == ["<S>", "</S>", "<UNK>"]
    loaded = ElmoLanguageModel.from_pretrained(tmp_path / "lm")
    assert loaded.vocab.words == model.vocab.words and loaded.config == model.config
    batch = model.batch([TEXT[0].split()])
    assert torch.equal(loaded(*batch).loss, model(*batch).loss)
    bilm = ElmoBiLM.from_pretrained(tmp_path / "lm")  # the biLM alone, for features
    assert torch.equal(bilm(batch[0]), model.bilm(batch[0]))


def test_features_learn_only_the_mix():
    model = tiny_lm(dropout=0.5)
    features = ElmoFeatures(model.bilm).train()
    assert not features.bilm.training
    assert {n for n, p in features.named_parameters() if p.requires_grad} == {"mix.weights", "mix.gamma"}
    sentences = [["the", "cat"], ["a", "dog", "ran"]]
    out = features.embed(sentences)
    assert out.shape == (2, 3, 16) and not out[0, 2:].any()
    assert torch.equal(out, features.embed(sentences))  # no dropout in the biLM
    out.sum().backward()
    assert features.mix.weights.grad is not None and features.mix.gamma.grad is not None
    # mixing with weights (1, 0, 0) and gamma 1 gives layer 0, the token embedding duplicated
    with torch.no_grad():
        features.mix.weights.copy_(torch.tensor([50.0, 0.0, 0.0]))
        tokens = model.bilm.char_cnn(batch_to_char_ids([["the", "cat"]], 12))[0]
    torch.testing.assert_close(features.embed([["the", "cat"]])[0], torch.cat([tokens, tokens], -1))
