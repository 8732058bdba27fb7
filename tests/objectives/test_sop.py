"""ALBERT's sentence-order prediction: consecutive pairs, swapped half of the time per instance and epoch."""

import numpy as np

from bertforge.constants import IGNORE_INDEX
from bertforge.data.instances import create_instances
from bertforge.data.masking import SpecialIds
from bertforge.objectives import MaskedLMWithSOP, MaskingSettings

SP = SpecialIds(cls=2, sep=3, mask=4, pad=0, vocab_size=500)


def rows(n=400, width=24):
    """Stored pairs [CLS] A [SEP] B [SEP]: A is ids 100.., B is ids 300..; the last 20 drawn at random."""
    tokens = np.zeros((n, width), dtype=np.uint16)
    lengths, b_start = np.zeros(n, np.int16), np.zeros(n, np.int16)
    rng = np.random.default_rng(0)
    for r in range(n):
        la, lb = rng.integers(2, 8, 2)
        seq = [SP.cls, *range(100, 100 + la), SP.sep, *range(300, 300 + lb), SP.sep]
        tokens[r, :len(seq)] = seq
        lengths[r], b_start[r] = len(seq), la + 2
    random_next = (np.arange(n) >= n - 20).astype(np.uint8)
    return {"tokens": tokens, "lengths": lengths, "b_start": b_start, "is_random_next": random_next}


def test_half_of_the_consecutive_pairs_are_swapped_and_labelled():
    data = rows()
    sop = MaskedLMWithSOP(SP, seed=3, masking=MaskingSettings(masked_lm_prob=0.01))
    batch = sop.make_batch(data, np.arange(len(data["lengths"])), epoch=0)
    labels = batch["sentence_order_label"].numpy()
    ids = batch["input_ids"].numpy().copy()
    ids[batch["labels"].numpy() != IGNORE_INDEX] = batch["labels"].numpy()[batch["labels"].numpy() != IGNORE_INDEX]
    consecutive = data["is_random_next"] == 0
    assert abs(labels[consecutive].mean() - 0.5) < 5 * 0.5 / np.sqrt(consecutive.sum())
    assert (labels[~consecutive] == 1).all()  # a random B is "not in order" too (ALBERT)
    for r in np.flatnonzero(consecutive):
        n, types = int(data["lengths"][r]), batch["token_type_ids"][r].numpy()
        first_segment = ids[r, 1:int((types[:n] == 0).sum()) - 1]
        expected_first = 300 if labels[r] else 100  # swapped: B comes first
        assert (first_segment >= expected_first).all() and (first_segment < expected_first + 100).all()
        assert ids[r, 0] == SP.cls and ids[r, n - 1] == SP.sep and (ids[r, :n] == SP.sep).sum() == 2
        assert sorted(ids[r, :n].tolist()) == sorted(data["tokens"][r, :n].tolist())  # the same tokens


def test_swaps_are_drawn_per_instance_and_epoch():
    data = rows()
    sop = MaskedLMWithSOP(SP, seed=3)
    idx = np.arange(len(data["lengths"]))
    e0 = sop.make_batch(data, idx, 0)["sentence_order_label"]
    assert (sop.make_batch(data, idx, 0)["sentence_order_label"] == e0).all()  # deterministic
    assert (sop.make_batch(data, idx, 1)["sentence_order_label"] != e0).any()  # new swaps each epoch
    half = sop.make_batch({k: v[100:200] for k, v in data.items()}, idx[100:200], 0)["sentence_order_label"]
    assert (half == e0[100:200]).all()  # wherever the instance lands (ranks, micro-batches)


def test_consecutive_instances_keep_the_document_order():
    docs = [[np.array([d * 1000 + s * 10 + i for i in range(3)]) for s in range(40)] for d in range(1, 5)]
    instances = create_instances(docs, SP, 16, 0.0, 3, np.random.default_rng(0), random_next=False)
    for inst in instances:
        if inst.is_random_next:
            continue
        tokens = inst.tokens.tolist()
        b = len(tokens) - int(inst.segment_ids.sum())
        a_ids, b_ids = tokens[1:b - 1], tokens[b:-1]
        assert a_ids[-1] // 1000 == b_ids[0] // 1000  # the same document
        assert a_ids[-1] < b_ids[0]  # and B follows A
    # only a one-sentence chunk (at a document's end) takes a random B
    assert sum(not i.is_random_next for i in instances) > 0.8 * len(instances)
