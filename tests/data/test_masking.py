"""Masked-LM rules of Google's create_masked_lm_predictions, for mask_tokens and mask_batch."""

import numpy as np
import pytest
import torch

from bertforge.data.masking import (
    IGNORE_INDEX,
    SpecialIds,
    _greedy_take_np,
    _greedy_take_torch,
    _random_ids_np,
    mask_batch,
    mask_tokens,
    num_to_predict,
)

V = 1000
SP = SpecialIds(cls=2, sep=3, mask=4, pad=0, vocab_size=V)
FIRST_CONT = 600  # ids >= 600 are '##' pieces
IS_CONT = np.arange(V) >= FIRST_CONT


def z_ok(count, n, p, z=5.0):
    """count ~ Binomial(n, p) within z standard deviations."""
    return abs(count - n * p) <= z * np.sqrt(n * p * (1 - p)) + 1


def pair(rng, la, lb, low=5, high=FIRST_CONT):
    a = rng.integers(low, high, la)
    b = rng.integers(low, high, lb)
    return np.concatenate([[SP.cls], a, [SP.sep], b, [SP.sep]]).astype(np.int32)


def padded_batch(rng, n, T, min_len=5):
    """(n, T) batch of pairs of random lengths, right-padded, and the lengths."""
    ids = np.full((n, T), SP.pad, dtype=np.int64)
    lengths = rng.integers(min_len, T + 1, n)
    for r, L in enumerate(lengths):
        la = int(rng.integers(1, L - 3)) if L > 4 else 1
        ids[r, :L] = pair(rng, la, L - 3 - la)
    return torch.from_numpy(ids), lengths


def google_greedy(sizes, k):
    """Google's loop over shuffled candidate (word) sizes."""
    out = np.zeros(len(sizes), dtype=bool)
    count = 0
    for i, s in enumerate(sizes):
        if count >= k:
            break
        if count + s > k:
            continue
        out[i] = True
        count += s
    return out


def test_num_to_predict_matches_google_formula():
    # min(max_pred, max(1, int(round(len(tokens) * prob)))), Python's half-to-even round
    assert num_to_predict(128, 0.15, 20) == 19
    assert num_to_predict(512, 0.15, 20) == 20  # the cap
    assert num_to_predict(512, 0.15, 80) == 77
    assert num_to_predict(10, 0.15, 20) == 2  # round(1.5) == 2
    assert num_to_predict(30, 0.15, 20) == 4  # round(4.5) == 4 (half to even)
    assert num_to_predict(5, 0.15, 20) == 1
    assert num_to_predict(3, 0.15, 20) == 1  # never below 1
    assert num_to_predict(50, 0.0, 20) == 1  # Google always predicts at least one


@pytest.mark.parametrize("k_max", [1, 3, 7])
def test_greedy_selection_is_googles_loop(k_max):
    rng = np.random.default_rng(k_max)
    rows, ks = [], []
    for _ in range(300):
        n = int(rng.integers(0, 30))
        sizes = rng.integers(1, k_max + 3, n)
        k = int(rng.integers(1, k_max * 4 + 1))
        ref = google_greedy(sizes, k)
        assert np.array_equal(_greedy_take_np(sizes, k), ref)
        rows.append(np.pad(sizes, (0, 30 - n)))
        ks.append(k)
        assert sizes[ref].sum() <= k
    got = _greedy_take_torch(torch.tensor(np.array(rows)), torch.tensor(ks))
    for r, (sizes, k) in enumerate(zip(rows, ks)):
        n = int(np.count_nonzero(sizes))
        assert np.array_equal(got[r].numpy()[:n], google_greedy(sizes[:n], k))
        assert not got[r].numpy()[n:].any()


def test_count_is_exact_and_rate_is_15_percent():
    rng = np.random.default_rng(0)
    total_masked = total_len = 0
    for L in range(5, 134):  # below the cap: round(133 * 0.15) = 20
        tokens = pair(rng, (L - 3) // 2, L - 3 - (L - 3) // 2)
        m = mask_tokens(tokens, SP, rng=rng)
        n = int(np.count_nonzero(m.labels != IGNORE_INDEX))
        assert n == min(num_to_predict(L, 0.15, 20), L - 3)
        total_masked += n
        total_len += L
    assert abs(total_masked / total_len - 0.15) < 0.005
    # the cap
    m = mask_tokens(pair(rng, 250, 259), SP, rng=rng)
    assert np.count_nonzero(m.labels != IGNORE_INDEX) == 20


def test_batch_count_per_row_uses_unpadded_length():
    rng = np.random.default_rng(1)
    ids, lengths = padded_batch(rng, 400, 160)
    out, labels = mask_batch(ids, SP, generator=torch.Generator().manual_seed(0))
    counts = (labels != IGNORE_INDEX).sum(1).numpy()
    expected = [min(num_to_predict(int(L), 0.15, 20), int(L) - 3) for L in lengths]
    assert np.array_equal(counts, expected)


def check_masked(ids, out, labels, pad_mask=None):
    chosen = labels != IGNORE_INDEX
    special = np.isin(ids, [SP.cls, SP.sep, SP.pad])
    if pad_mask is not None:
        special |= pad_mask
    assert not (chosen & special).any(), "special or padding position chosen"
    assert np.array_equal(labels[chosen], ids[chosen]), "labels must hold the original ids"
    assert np.array_equal(out[~chosen], ids[~chosen]), "unchosen positions must be unchanged"


def test_specials_padding_labels_single():
    rng = np.random.default_rng(2)
    for _ in range(300):
        tokens = pair(rng, int(rng.integers(1, 40)), int(rng.integers(1, 40)))
        tokens = np.concatenate([tokens, np.zeros(int(rng.integers(0, 10)), np.int32)])
        m = mask_tokens(tokens, SP, rng=rng, whole_word=bool(rng.integers(2)),
                        is_continuation=IS_CONT)
        check_masked(tokens, m.input_ids, m.labels)
        assert m.input_ids.dtype == np.int32 and m.labels.shape == tokens.shape


@pytest.mark.parametrize("whole_word", [False, True])
def test_specials_padding_labels_batch(whole_word):
    rng = np.random.default_rng(3)
    ids, _ = padded_batch(rng, 300, 64)
    ids[ids >= 5] = torch.from_numpy(rng.integers(5, V, int((ids >= 5).sum())))  # mix in ## pieces
    before = ids.clone()
    out, labels = mask_batch(ids, SP, generator=torch.Generator().manual_seed(1),
                             whole_word=whole_word, is_continuation=IS_CONT)
    assert torch.equal(ids, before), "input must not be modified"
    assert out.dtype == torch.long and labels.dtype == torch.long
    check_masked(ids.numpy(), out.numpy(), labels.numpy())


def test_attention_mask_marks_padding():
    rng = np.random.default_rng(4)
    ids, lengths = padded_batch(rng, 200, 48)
    ids[ids == SP.pad] = 7  # a pad token that is not the [PAD] id
    attn = (torch.arange(48)[None, :] < torch.from_numpy(lengths)[:, None]).long()
    out, labels = mask_batch(ids, SP, generator=torch.Generator().manual_seed(2),
                             attention_mask=attn)
    check_masked(ids.numpy(), out.numpy(), labels.numpy(), pad_mask=attn.numpy() == 0)
    counts = (labels != IGNORE_INDEX).sum(1).numpy()
    expected = [min(num_to_predict(int(L), 0.15, 20), int(L) - 3) for L in lengths]
    assert np.array_equal(counts, expected)


def split_80_10_10(ids, out, labels):
    chosen = labels != IGNORE_INDEX
    orig, new = ids[chosen], out[chosen]
    is_mask = new == SP.mask
    same = new == orig
    return chosen.sum(), is_mask.sum(), same.sum(), (~is_mask & ~same).sum(), new[~is_mask & ~same]


def assert_80_10_10(n, n_mask, n_same, n_rand):
    # a random replacement hits [MASK] or the original with probability 1/V each
    assert z_ok(n_mask, n, 0.8 + 0.1 / V)
    assert z_ok(n_same, n, 0.1 + 0.1 / V)
    assert z_ok(n_rand, n, 0.1 * (1 - 2 / V))


def test_80_10_10_single():
    rng = np.random.default_rng(5)
    tot = np.zeros(4, dtype=np.int64)
    rand_ids = []
    for _ in range(1500):
        tokens = pair(rng, 60, 65)
        m = mask_tokens(tokens, SP, rng=rng)
        n, a, b, c, r = split_80_10_10(tokens, m.input_ids, m.labels)
        tot += (n, a, b, c)
        rand_ids.append(r)
    assert tot[0] == 1500 * 19
    assert_80_10_10(*tot)
    rand_ids = np.concatenate(rand_ids)
    # drawn from the whole vocabulary, not just the ids present in the text
    assert rand_ids.min() < 50 and rand_ids.max() > V - 50 and (rand_ids >= FIRST_CONT).any()


def test_80_10_10_batch():
    rng = np.random.default_rng(6)
    ids = torch.from_numpy(np.stack([pair(rng, 60, 65) for _ in range(3000)]).astype(np.int64))
    out, labels = mask_batch(ids, SP, generator=torch.Generator().manual_seed(3))
    n, a, b, c, r = split_80_10_10(ids.numpy(), out.numpy(), labels.numpy())
    assert n == 3000 * 19
    assert_80_10_10(n, a, b, c)
    assert r.min() < 50 and r.max() > V - 50


def test_random_replacement_vocab():
    small = SpecialIds(cls=2, sep=3, mask=4, pad=0, vocab_size=12)
    rng = np.random.default_rng(7)
    every = _random_ids_np(rng, 20000, small, exclude_special=False)
    assert set(every.tolist()) == set(range(12))  # Google: the whole vocab, specials included
    counts = np.bincount(every, minlength=12)
    assert all(z_ok(c, 20000, 1 / 12) for c in counts)
    some = _random_ids_np(rng, 20000, small, exclude_special=True)
    assert set(some.tolist()) == {1, 5, 6, 7, 8, 9, 10, 11}
    counts = np.bincount(some, minlength=12)[[1, 5, 6, 7, 8, 9, 10, 11]]
    assert all(z_ok(c, 20000, 1 / 8) for c in counts)
    # the batch path, excluding specials: replacements never special
    ids = torch.full((2000, 20), 9, dtype=torch.long)
    ids[:, 0], ids[:, -1] = small.cls, small.sep
    out, labels = mask_batch(ids, small, 0.5, 10, generator=torch.Generator().manual_seed(4),
                             random_excludes_special=True)
    new = out[labels != IGNORE_INDEX]
    assert set(new.unique().tolist()) == {1, 5, 6, 7, 8, 9, 10, 11} | {small.mask}


def test_every_candidate_equally_likely():
    rng = np.random.default_rng(8)
    tokens = pair(rng, 20, 17)  # 40 tokens, 37 candidates, k = 6
    k, n_cand, trials = 6, 37, 4000
    freq_np = np.zeros(len(tokens))
    for _ in range(trials):
        freq_np += mask_tokens(tokens, SP, rng=rng).labels != IGNORE_INDEX
    batch = torch.from_numpy(np.tile(tokens.astype(np.int64), (trials, 1)))
    _, labels = mask_batch(batch, SP, generator=torch.Generator().manual_seed(5))
    freq_t = (labels != IGNORE_INDEX).sum(0).numpy()
    cand = ~np.isin(tokens, [SP.cls, SP.sep])
    for freq in (freq_np, freq_t):
        assert not freq[~cand].any()
        assert all(z_ok(f, trials, k / n_cand) for f in freq[cand])


def wwm_sequence():
    # [CLS] w0(3 pieces) w1..w20 (1 piece) [SEP]: 25 tokens, k = round(3.75) = 4
    return np.array([SP.cls, 10, 700, 701] + list(range(20, 40)) + [SP.sep], dtype=np.int32)


def test_whole_word_all_or_nothing_and_skip_rule():
    tokens = wwm_sequence()
    trials = 4000
    rng = np.random.default_rng(9)
    chosen_np = np.stack([mask_tokens(tokens, SP, rng=rng, whole_word=True, is_continuation=IS_CONT)
                          .labels != IGNORE_INDEX for _ in range(trials)])
    batch = torch.from_numpy(np.tile(tokens.astype(np.int64), (trials, 1)))
    out, labels = mask_batch(batch, SP, generator=torch.Generator().manual_seed(6), whole_word=True,
                             is_continuation=torch.from_numpy(IS_CONT))
    chosen_t = (labels != IGNORE_INDEX).numpy()
    for chosen in (chosen_np, chosen_t):
        word = chosen[:, 1:4]
        assert (word.all(1) | ~word.any(1)).all(), "a word must be masked whole or not at all"
        assert (chosen.sum(1) == 4).all()  # a word that overshoots is skipped, the next one tried
        # w0 is taken iff at most one single-piece word precedes it in the shuffle: p = 2/21
        assert z_ok(word.all(1).sum(), trials, 2 / 21)
    # 80/10/10 is decided per piece, not per word (Google loops over each index of the word)
    outs = out.numpy()[chosen_t[:, 1]][:, 1:4]
    mixed = ~((outs == SP.mask).all(1) | (outs != SP.mask).all(1))
    assert mixed.any()


def test_whole_word_never_exceeds_budget():
    tokens = wwm_sequence()
    rng = np.random.default_rng(10)
    for _ in range(200):  # k = 2: the 3-piece word can never be taken
        m = mask_tokens(tokens, SP, 0.08, rng=rng, whole_word=True, is_continuation=IS_CONT)
        assert (m.labels[1:4] == IGNORE_INDEX).all()
        assert np.count_nonzero(m.labels != IGNORE_INDEX) == 2


def test_whole_word_groups_stop_at_specials():
    # [CLS] a ##b [SEP] ##c d [SEP]: words {1,2}, {4}, {5}; '##c' is not glued across [SEP]
    # k = round(7 * 0.3) = 2: either {1,2} or two of the single-piece words
    tokens = np.array([SP.cls, 10, 700, SP.sep, 701, 11, SP.sep], dtype=np.int32)
    rng = np.random.default_rng(11)
    chosen = np.stack([mask_tokens(tokens, SP, 0.3, rng=rng, whole_word=True,
                                   is_continuation=IS_CONT).labels != IGNORE_INDEX
                       for _ in range(300)])
    batch = torch.from_numpy(np.tile(tokens.astype(np.int64), (300, 1)))
    _, labels = mask_batch(batch, SP, 0.3, generator=torch.Generator().manual_seed(7),
                           whole_word=True, is_continuation=IS_CONT)
    for c in (chosen, (labels != IGNORE_INDEX).numpy()):
        assert (c[:, 1] == c[:, 2]).all()
        assert (c[:, 2] != c[:, 4]).any()
        assert c[:, 4].any() and c[:, 5].any()


def test_deterministic_given_seed():
    tokens = pair(np.random.default_rng(0), 40, 40)
    a = mask_tokens(tokens, SP, rng=np.random.default_rng(123))
    b = mask_tokens(tokens, SP, rng=np.random.default_rng(123))
    c = mask_tokens(tokens, SP, rng=np.random.default_rng(124))
    assert np.array_equal(a.input_ids, b.input_ids) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)
    ids, _ = padded_batch(np.random.default_rng(1), 16, 64)
    x = mask_batch(ids, SP, generator=torch.Generator().manual_seed(9))
    y = mask_batch(ids, SP, generator=torch.Generator().manual_seed(9))
    z = mask_batch(ids, SP, generator=torch.Generator().manual_seed(10))
    assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])
    assert not torch.equal(x[1], z[1])


def test_errors():
    rng = np.random.default_rng(0)
    tokens = pair(rng, 3, 3)
    with pytest.raises(ValueError, match="is_continuation"):
        mask_tokens(tokens, SP, rng=rng, whole_word=True)
    with pytest.raises(ValueError, match="is_continuation has"):
        mask_tokens(tokens, SP, rng=rng, whole_word=True, is_continuation=IS_CONT[:10])
    with pytest.raises(ValueError, match="masked_lm_prob"):
        mask_tokens(tokens, SP, 1.5, rng=rng)
    with pytest.raises(ValueError, match="token ids"):
        mask_tokens(np.array([2, V, 3]), SP, rng=rng)
    with pytest.raises(ValueError, match="input_ids must be"):
        mask_batch(torch.tensor(tokens), SP)
    with pytest.raises(ValueError, match="outside"):
        SpecialIds(cls=2, sep=3, mask=4, pad=0, vocab_size=4)
