"""Pre-training instances: the rules of Google's create_instances_from_document, one by one."""

import numpy as np
import pytest

from bertforge.data.instances import (
    Instance,
    _target_seq_length,
    create_instances,
    create_instances_from_document,
    pack_documents,
    truncate_seq_pair,
)
from bertforge.data.masking import IGNORE_INDEX, SpecialIds, mask_tokens

SP = SpecialIds(cls=2, sep=3, mask=4, pad=0, vocab_size=100_000)
FIRST = 10  # corpus ids start here, so they never collide with specials


def z_ok(count, n, p, z=5.0):
    return abs(count - n * p) <= z * np.sqrt(n * p * (1 - p)) + 1


def random_corpus(rng, n_docs, max_sents=30, max_len=40):
    return [[rng.integers(FIRST, 1000, int(rng.integers(1, max_len + 1))).astype(np.int32)
             for _ in range(int(rng.integers(1, max_sents + 1)))] for _ in range(n_docs)]


def labelled_corpus(rng, n_docs, sent_len=5, min_sents=2, max_sents=30):
    """Every sentence is `sent_len` copies of its own id, so an instance tells which sentences it
    holds. Returns the corpus and, per document, its sentence ids."""
    docs, ids, nxt = [], [], FIRST
    for _ in range(n_docs):
        n = int(rng.integers(min_sents, max_sents + 1))
        ids.append(list(range(nxt, nxt + n)))
        docs.append([np.full(sent_len, nxt + j, dtype=np.int32) for j in range(n)])
        nxt += n
    return docs, ids


def split_ab(inst):
    t = inst.tokens
    seps = np.flatnonzero(t == SP.sep)
    return t[1:seps[0]], t[seps[0] + 1:-1]


def runs(x):
    """Sentence ids in order (each sentence is a run of one id)."""
    return [int(v) for i, v in enumerate(x) if i == 0 or x[i - 1] != v]


def test_instance_structure():
    rng = np.random.default_rng(0)
    docs = random_corpus(rng, 40)
    for max_len in (5, 16, 64):
        instances = create_instances(docs, SP, max_len, 0.1, 2, rng)
        assert instances and all(isinstance(i, Instance) for i in instances)
        for inst in instances:
            t, s = inst.tokens, inst.segment_ids
            assert t.dtype == np.int32 and s.shape == t.shape
            assert len(t) <= max_len
            assert t[0] == SP.cls and t[-1] == SP.sep
            seps = np.flatnonzero(t == SP.sep)
            assert len(seps) == 2
            a, b = split_ab(inst)
            assert len(a) >= 1 and len(b) >= 1
            expected = np.r_[np.zeros(seps[0] + 1, int), np.ones(len(t) - seps[0] - 1, int)]
            assert np.array_equal(s, expected)


def test_nsp_labels_and_random_b_from_other_document():
    rng = np.random.default_rng(1)
    docs, sent_ids = labelled_corpus(rng, 80, max_sents=60)
    doc_of = {s: d for d, ids in enumerate(sent_ids) for s in ids}
    n_pairs = n_random = 0
    for rep in range(6):
        for d in range(len(docs)):
            for inst in create_instances_from_document(docs, d, SP, 64, 0.0, rng):
                a, b = runs(split_ab(inst)[0]), runs(split_ab(inst)[1])
                assert all(doc_of[s] == d for s in a)
                assert a == list(range(a[0], a[0] + len(a)))  # A is contiguous
                assert b == list(range(b[0], b[0] + len(b)))  # so is B
                if inst.is_random_next:
                    assert all(doc_of[s] != d for s in b)
                else:
                    assert b[0] == a[-1] + 1 and doc_of[b[-1]] == d  # the actual continuation
                if a[-1] == sent_ids[d][-1]:
                    assert inst.is_random_next  # a one-sentence chunk always gets a random B
                else:
                    n_pairs += 1
                    n_random += inst.is_random_next
    assert n_pairs > 1500
    assert z_ok(n_random, n_pairs, 0.5)


def test_random_next_retries_ten_times_then_gives_up():
    # Two documents: the other one is found unless 10 draws in a row hit this one (p = 2**-10).
    rng = np.random.default_rng(2)
    docs, sent_ids = labelled_corpus(rng, 2, min_sents=1, max_sents=1)
    same = total = 0
    for _ in range(4000):
        (inst,) = create_instances_from_document(docs, 0, SP, 64, 0.0, rng)
        assert inst.is_random_next
        total += 1
        same += int(split_ab(inst)[1][0]) == sent_ids[0][0]
    assert same <= 15  # expected ~4


def test_unused_segments_are_put_back():
    # Short sentences of equal length and no short targets: truncation never removes a whole
    # sentence, so every sentence must appear exactly once as A or as an actual-next B.
    rng = np.random.default_rng(3)
    docs, sent_ids = labelled_corpus(rng, 30, min_sents=10, max_sents=60)
    n_put_back = 0
    for rep in range(4):
        for d in range(len(docs)):
            used = []
            for inst in create_instances_from_document(docs, d, SP, 40, 0.0, rng):
                a, b = split_ab(inst)
                used += runs(a)
                if inst.is_random_next:
                    n_put_back += 1
                else:
                    used += runs(b)
            assert used == sent_ids[d]
    assert n_put_back > 100


def test_short_target_length():
    rng = np.random.default_rng(4)
    draws = np.array([_target_seq_length(61, 0.1, rng) for _ in range(20000)])
    short = draws[draws != 61]
    assert z_ok(len(short), 20000, 0.1 * 59 / 60)  # randint(2, 61) can also return 61
    assert short.min() == 2 and short.max() == 60
    assert np.all(np.bincount(draws)[:2] == 0)
    # Observed in instances: one-token sentences, so an actual-next pair holds exactly the target.
    docs = [[np.array([FIRST + i], np.int32) for i in range(60)] for _ in range(20)]
    n = n_short = 0
    for _ in range(200):
        for d in range(len(docs)):
            first = create_instances_from_document(docs, d, SP, 32, 0.1, rng)[0]
            if not first.is_random_next:
                n += 1
                n_short += len(first.tokens) - 3 < 29
    assert n > 1500
    assert z_ok(n_short, n, 0.1 * 27 / 28)


def google_truncate(la, lb, max_num_tokens):
    while la + lb > max_num_tokens:
        if la > lb:
            la -= 1
        else:
            lb -= 1
    return la, lb


def test_truncate_seq_pair_hand_made():
    rng = np.random.default_rng(5)
    a, b = np.arange(5), np.arange(100, 103)
    assert truncate_seq_pair(a, b, 8, rng) == (a, b)  # fits: untouched
    ta, tb = truncate_seq_pair(a, b, 6, rng)
    assert (len(ta), len(tb)) == (3, 3) and np.array_equal(tb, b)  # the longer side pays
    ta, tb = truncate_seq_pair(np.arange(3), np.arange(3), 5, rng)
    assert (len(ta), len(tb)) == (3, 2)  # a tie trims b
    ta, tb = truncate_seq_pair(np.arange(4), np.arange(4), 5, rng)
    assert (len(ta), len(tb)) == (3, 2)  # b, a, b
    ta, tb = truncate_seq_pair(np.arange(1), np.arange(9), 2, rng)
    assert (len(ta), len(tb)) == (1, 1)  # both sides keep a token
    with pytest.raises(ValueError, match="non-empty"):
        truncate_seq_pair(np.arange(3), np.arange(3), 1, rng)
    for la in range(1, 13):
        for lb in range(1, 13):
            for m in range(2, 26):
                ta, tb = truncate_seq_pair(np.arange(la), np.arange(lb), m, rng)
                assert (len(ta), len(tb)) == google_truncate(la, lb, m)
                assert len(ta) >= 1 and len(tb) >= 1
                # what is kept is one contiguous run: tokens only leave from the ends
                assert np.array_equal(ta, np.arange(ta[0], ta[0] + len(ta)))
                assert np.array_equal(tb, np.arange(tb[0], tb[0] + len(tb)))


def test_truncate_front_or_back_half_and_half():
    rng = np.random.default_rng(6)
    # one token to cut: from the front with probability 1/2
    fronts = sum(int(truncate_seq_pair(np.arange(3), np.arange(1), 3, rng)[0][0] == 1)
                 for _ in range(4000))
    assert z_ok(fronts, 4000, 0.5)
    # six tokens to cut from a: each from the front with probability 1/2, independently
    cut_front = np.array([truncate_seq_pair(np.arange(10), np.arange(2), 6, rng)[0][0]
                          for _ in range(4000)])
    assert z_ok(cut_front.sum(), 6 * 4000, 0.5)
    assert np.all(np.bincount(cut_front, minlength=7) > 0)  # 0..6 from the front all occur


def test_deterministic_given_seed():
    docs = random_corpus(np.random.default_rng(7), 30)
    for nsp in (True, False):
        x = create_instances(docs, SP, 32, 0.1, 2, np.random.default_rng(11), nsp=nsp)
        y = create_instances(docs, SP, 32, 0.1, 2, np.random.default_rng(11), nsp=nsp)
        z = create_instances(docs, SP, 32, 0.1, 2, np.random.default_rng(12), nsp=nsp)
        assert len(x) == len(y)
        assert all(np.array_equal(p.tokens, q.tokens) and p.is_random_next == q.is_random_next
                   for p, q in zip(x, y))
        assert [p.tokens.tolist() for p in x] != [p.tokens.tolist() for p in z]


def test_create_instances_covers_corpus_dupes_and_shuffles():
    rng = np.random.default_rng(8)
    docs, sent_ids = labelled_corpus(rng, 50, max_sents=20)
    docs[3].insert(1, np.zeros(0, np.int32))  # empty sentences and documents are dropped
    docs.append([])
    once = create_instances(docs, SP, 48, 0.1, 1, np.random.default_rng(0))
    five = create_instances(docs, SP, 48, 0.1, 5, np.random.default_rng(0))
    assert 4 * len(once) < len(five) < 6 * len(once)
    seen = {int(t) for inst in once for t in inst.tokens} - {SP.cls, SP.sep}
    assert seen == {s for ids in sent_ids for s in ids}  # every sentence made it in (put back)
    first_ids = [int(inst.tokens[1]) for inst in five[:50]]
    assert first_ids != sorted(first_ids)  # instances are shuffled


def test_pack_documents_fills_to_full_length():
    rng = np.random.default_rng(9)
    docs = random_corpus(rng, 25, max_len=50)
    for max_len in (5, 64, 128):
        packs = pack_documents(docs, max_len, SP)
        assert all(len(p.tokens) == max_len for p in packs[:-1])
        assert len(packs[-1].tokens) <= max_len
        for p in packs:
            assert p.tokens[0] == SP.cls and p.tokens[-1] == SP.sep and p.tokens[1] != SP.sep
            assert not p.segment_ids.any() and not p.is_random_next
        stream = np.concatenate([p.tokens[1:-1] for p in packs])
        # reference: the text in order, a [SEP] between documents unless it would open an instance
        expected = []
        for d, doc in enumerate(docs):
            if d and len(expected) % (max_len - 2):
                expected.append(SP.sep)
            expected += np.concatenate(doc).tolist()
        assert stream.tolist() == expected
    plain = pack_documents(docs, 64, SP, separate_documents=False)
    assert np.array_equal(np.concatenate([p.tokens[1:-1] for p in plain]),
                          np.concatenate([np.concatenate(d) for d in docs]))


def test_pack_documents_whole_sentences():
    rng = np.random.default_rng(10)
    docs, sent_ids = labelled_corpus(rng, 20, sent_len=7, max_sents=15)
    docs[0].append(np.full(40, 9, np.int32))  # longer than the budget of 30: split
    packs = pack_documents(docs, 32, SP, whole_sentences=True)
    assert all(len(p.tokens) <= 32 for p in packs)
    pieces_of_long = 0
    for p in packs:
        body = p.tokens[1:-1]
        for sid in runs(body[body != SP.sep]):
            n = int(np.count_nonzero(body == sid))
            if sid == 9:
                pieces_of_long += 1
            else:
                assert n == 7  # whole sentences only
    assert pieces_of_long == 2
    # greedy: an instance is closed only when the next sentence (7, or the long one) won't fit
    assert sum(len(p.tokens) - 2 + 7 > 30 for p in packs[:-1]) >= len(packs) - 2


def test_no_nsp_create_instances():
    rng = np.random.default_rng(11)
    docs = [[rng.integers(FIRST, 999, 30).astype(np.int32)] for _ in range(40)]  # one sentence each
    instances = create_instances(docs, SP, 64, 0.1, 3, rng, nsp=False)
    total = 3 * (40 * 30 + 39)
    assert sum(len(i.tokens) - 2 for i in instances) == total
    assert sum(len(i.tokens) == 64 for i in instances) >= len(instances) - 3
    single = create_instances_from_document(docs, 5, SP, 16, 0.1, rng, nsp=False)
    assert np.array_equal(np.concatenate([i.tokens[1:-1] for i in single]), docs[5][0])


def test_errors():
    rng = np.random.default_rng(12)
    one_sentence_docs = [[np.arange(FIRST, FIRST + 5)] for _ in range(10)]
    with pytest.raises(ValueError, match="no-nsp"):
        create_instances(one_sentence_docs, SP, 32, 0.1, 1, rng)
    two_sentences = [[np.arange(FIRST, FIRST + 5), np.arange(FIRST, FIRST + 3)]]
    with pytest.raises(ValueError, match="no-nsp"):
        create_instances(two_sentences, SP, 32, 0.1, 1, rng)
    with pytest.raises(ValueError, match="no-nsp"):
        create_instances_from_document(two_sentences, 0, SP, 32, 0.1, rng)
    packed = create_instances(one_sentence_docs, SP, 32, 0.1, 1, rng, nsp=False)
    tokens = np.concatenate([i.tokens for i in packed])
    # without NSP the ten 5-token documents are packed: each of their 50 tokens lands in exactly one instance
    assert np.array_equal(np.bincount(tokens, minlength=FIRST + 5)[FIRST:FIRST + 5], [10] * 5)
    assert all(len(i.tokens) <= 32 and not i.segment_ids.any() and not i.is_random_next for i in packed)
    docs = random_corpus(rng, 5)
    for bad in (4, 0):
        with pytest.raises(ValueError, match="max_seq_length"):
            create_instances(docs, SP, bad, 0.1, 1, rng)
        with pytest.raises(ValueError, match="max_seq_length"):
            create_instances_from_document(docs, 0, SP, bad, 0.1, rng)
        with pytest.raises(ValueError, match="max_seq_length"):
            pack_documents(docs, bad, SP)
    with pytest.raises(ValueError, match="dupe_factor"):
        create_instances(docs, SP, 32, 0.1, 0, rng)
    with pytest.raises(ValueError, match="no tokens"):
        create_instances([[], [np.zeros(0, np.int32)]], SP, 32, 0.1, 1, rng)


def test_instances_feed_masking():
    rng = np.random.default_rng(13)
    docs = random_corpus(rng, 20)
    for inst in create_instances(docs, SP, 128, 0.1, 1, rng)[:50]:
        m = mask_tokens(inst.tokens, SP, rng=rng)
        chosen = m.labels != IGNORE_INDEX
        assert 1 <= chosen.sum() <= 20
        assert not np.isin(inst.tokens[chosen], [SP.cls, SP.sep]).any()
