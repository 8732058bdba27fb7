"""Sentence vectors and fill-mask on small random models: batched, length-sorted encoding equals one
sentence at a time, in input order; fill-mask's guesses are the MLM head's softmax, sorted."""

from __future__ import annotations

import pytest
import torch

from bertforge.config import BertConfig
from bertforge.errors import UsageError
from bertforge.inference import encode, fill_mask
from bertforge.model import BertForPreTraining, BertModel
from bertforge.tokenization import BertTokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = "the a cat dog sat on mat paris is capital of france big small red . , ##s ##ing".split()
VOCAB = {t: i for i, t in enumerate(SPECIALS + WORDS)}
# lengths 1..12 words, deliberately out of length order, and one empty text
TEXTS = ["the cat sat on the mat .", "dog", "a big red dog sat on a small red mat , the cat sat",
         "", "paris is the capital of france .", "cats", "the dog", "a small cat sat on the big red mats .",
         "the mat", "france , paris , a cat ."]


@pytest.fixture(scope="module")
def tok() -> BertTokenizer:
    return BertTokenizer(VOCAB)


@pytest.fixture(scope="module")
def config() -> BertConfig:
    return BertConfig.preset("tiny", vocab_size=len(VOCAB), max_position_embeddings=64)


@pytest.fixture(scope="module")
def model(config) -> BertModel:
    torch.manual_seed(0)
    return BertModel(config).eval()


def one_by_one(model, tok, texts, pairs=None):
    """(last_hidden_state, pooler_output) of each input on its own: no padding, no batching."""
    out = []
    with torch.no_grad():
        for i, text in enumerate(texts):
            enc = tok(text, None if pairs is None else pairs[i])
            r = model(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"])
            out.append((r.last_hidden_state[0], r.pooler_output[0]))
    return out


def test_mean_cls_and_pooler_equal_unbatched_per_sentence_vectors_in_input_order(model, tok):
    reference = one_by_one(model, tok, TEXTS)
    for pooling, pick in (("mean", lambda h, p: h.mean(0)), ("cls", lambda h, p: h[0]), ("pooler", lambda h, p: p)):
        # at most 3 rows a batch: the ten texts are sorted by length into several padded batches
        got = encode(model, tok, TEXTS, pooling=pooling, max_batch_size=3)
        expected = torch.stack([pick(h, p) for h, p in reference])
        assert got.shape == (len(TEXTS), 128)
        torch.testing.assert_close(got, expected, rtol=0, atol=2e-5, msg=pooling)
    # the three poolings really differ (so the comparisons above are not one thing three times)
    mean, cls = encode(model, tok, TEXTS, pooling="mean"), encode(model, tok, TEXTS, pooling="cls")
    assert (mean - cls).abs().max() > 1e-2


def test_order_is_restored_and_batching_does_not_matter(model, tok):
    full = encode(model, tok, TEXTS)
    reversed_ = encode(model, tok, TEXTS[::-1], max_batch_size=2)
    torch.testing.assert_close(reversed_, full.flip(0), rtol=0, atol=2e-5)
    single = torch.cat([encode(model, tok, [t]) for t in TEXTS])
    torch.testing.assert_close(single, full, rtol=0, atol=2e-5)
    # a token budget of 16 pieces per batch forces batches of one or two rows: still the same vectors
    torch.testing.assert_close(encode(model, tok, TEXTS, max_tokens=16), full, rtol=0, atol=2e-5)


def test_pairs_normalize_and_truncation(model, tok):
    pairs = ["the mat", "a dog", "paris", "france .", "cat", "the cat sat", "red", "small", "big", "on"]
    reference = one_by_one(model, tok, TEXTS, pairs)
    got = encode(model, tok, TEXTS, pairs, pooling="cls", max_batch_size=4)
    torch.testing.assert_close(got, torch.stack([h[0] for h, _ in reference]), rtol=0, atol=2e-5)

    unit = encode(model, tok, TEXTS, normalize=True)
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(len(TEXTS)), rtol=0, atol=1e-6)
    plain = encode(model, tok, TEXTS)
    torch.testing.assert_close(unit, plain / plain.norm(dim=-1, keepdim=True), rtol=0, atol=1e-6)

    # max_length cuts the 15-piece text to [CLS] + 4 pieces + [SEP]
    cut = encode(model, tok, [TEXTS[2]], max_length=6, pooling="mean")
    enc = tok(TEXTS[2], max_length=6)
    assert enc["input_ids"].shape == (1, 6)
    with torch.no_grad():
        expected = model(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]).last_hidden_state[0].mean(0)
    torch.testing.assert_close(cut[0], expected, rtol=0, atol=2e-5)


def test_training_mode_is_restored_and_bad_pooling_is_refused(model, tok, config):
    model.train()
    try:
        encode(model, tok, TEXTS[:2])
        assert model.training  # put back as it was
    finally:
        model.eval()
    with pytest.raises(UsageError, match="pooling must be 'mean', 'cls' or 'pooler', got 'max'"):
        encode(model, tok, TEXTS, pooling="max")
    no_pooler = BertModel(config, add_pooling_layer=False)
    with pytest.raises(UsageError, match="no pooler"):
        encode(no_pooler, tok, TEXTS, pooling="pooler")


# --------------------------------------------------------------------------------------------
# fill-mask


@pytest.fixture(scope="module")
def mlm(config) -> BertForPreTraining:
    torch.manual_seed(1)
    return BertForPreTraining(config).eval()


def test_fill_mask_is_the_heads_softmax_sorted(mlm, tok):
    text = "the [MASK] sat on the [MASK] ."
    guesses = fill_mask(mlm, tok, text, top_k=5)
    assert len(guesses) == 2 and all(len(g) == 5 for g in guesses)  # one list per [MASK]
    enc = tok(text)
    with torch.no_grad():
        logits = mlm(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]).prediction_logits[0]
    positions = (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten().tolist()
    assert positions == [2, 6]
    for g, position in zip(guesses, positions):
        probs = [p for _, p in g]
        assert probs == sorted(probs, reverse=True)
        assert 0 < sum(probs) <= 1 + 1e-6
        full = logits[position].softmax(-1)
        top = full.topk(5)
        assert [t for t, _ in g] == tok.convert_ids_to_tokens(top.indices.tolist())
        assert probs == pytest.approx(top.values.tolist(), abs=1e-6)
    all_of_them = fill_mask(mlm, tok, text, top_k=len(VOCAB))
    assert sum(p for _, p in all_of_them[0]) == pytest.approx(1.0, abs=1e-5)  # the whole vocabulary


def test_fill_mask_guesses_what_the_head_favours(mlm, tok):
    head = mlm.cls.predictions
    saved = head.bias.detach().clone()
    try:
        with torch.no_grad():
            head.bias[VOCAB["paris"]] = 50.0  # a decoder bias this large wins at every position
        [[(token, p), *rest]] = fill_mask(mlm, tok, "[MASK] is the capital of france .", top_k=3)
    finally:
        with torch.no_grad():
            head.bias.copy_(saved)
    assert token == "paris" and p > 0.99 and all(q < 0.01 for _, q in rest)


def test_fill_mask_refuses_bad_input(mlm, tok):
    with pytest.raises(UsageError, match=r"no \[MASK\] token"):
        fill_mask(mlm, tok, "the cat sat")
    with pytest.raises(UsageError, match=rf"must be in \[1, {len(VOCAB)}\].*got 0"):
        fill_mask(mlm, tok, "the [MASK]", top_k=0)
    with pytest.raises(UsageError, match="got 1000"):
        fill_mask(mlm, tok, "the [MASK]", top_k=1000)
