"""Prepared corpora: shards on disk, identical whatever the worker count, reused, batches exact."""

import numpy as np
import pytest
import torch

from bertforge.data.prepare import PrepareSettings, prepare, read_meta, special_ids
from bertforge.data.pretraining_data import InstanceStore, PretrainingBatches
from bertforge.objectives import MaskedLMWithNSP, MaskingSettings
from bertforge.tokenization import BertTokenizer
from bertforge.vocab import train_vocab


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A Google-format corpus of 60 documents, 4-9 sentences each, from a small word list."""
    rng = np.random.default_rng(0)
    words = "the a cat dog runs sees big small red green house tree river walks quickly slowly".split()
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    docs = []
    for _ in range(60):
        sentences = [" ".join(rng.choice(words, rng.integers(5, 15))).capitalize() + "."
                     for _ in range(rng.integers(4, 10))]
        docs.append("\n".join(sentences))
    path.write_text("\n\n".join(docs) + "\n")
    tok_dir = path.parent / "tok"
    train_vocab([path.read_text()], 100).save_pretrained(tok_dir)
    return path, tok_dir


def test_shards_are_identical_with_one_or_two_workers_and_reused(corpus, tmp_path):
    path, tok_dir = corpus
    settings = PrepareSettings(max_seq_length=32, shard_bytes=2000, eval_fraction=0.1, seed=3)
    one = prepare([path], tok_dir, tmp_path / "one", settings, workers=1, progress=False)
    two = prepare([path], tok_dir, tmp_path / "two", settings, workers=2, progress=False)
    assert len(one["shards"]["train"]) > 3  # really sharded
    assert one["instances"] == two["instances"] and one["instances"]["eval"] > 0
    a, b = InstanceStore(tmp_path / "one"), InstanceStore(tmp_path / "two")
    idx = np.arange(len(a))
    for key in ("tokens", "lengths", "b_start", "is_random_next"):
        assert np.array_equal(a.rows(idx)[key], b.rows(idx)[key])
    stamp = (tmp_path / "one" / "meta.json").stat().st_mtime_ns
    assert prepare([path], tok_dir, tmp_path / "one", settings, workers=1, progress=False) == one
    assert (tmp_path / "one" / "meta.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_instances_decode_to_corpus_text(corpus, tmp_path):
    path, tok_dir = corpus
    prepare([path], tok_dir, tmp_path / "p", PrepareSettings(max_seq_length=32), workers=1, progress=False)
    store = InstanceStore(tmp_path / "p")
    tok = BertTokenizer.from_pretrained(tok_dir)
    rows = store.rows(np.arange(20))
    for tokens, n, b in zip(rows["tokens"], rows["lengths"], rows["b_start"]):
        assert n <= 32 and tokens[0] == tok.cls_token_id and tokens[n - 1] == tok.sep_token_id
        assert tokens[b - 1] == tok.sep_token_id and np.all(tokens[n:] == tok.pad_token_id)


def test_batches_split_exactly_across_ranks_and_accumulation(corpus, tmp_path):
    path, tok_dir = corpus
    prepare([path], tok_dir, tmp_path / "p", PrepareSettings(max_seq_length=32), workers=1, progress=False)
    store, tok = InstanceStore(tmp_path / "p"), BertTokenizer.from_pretrained(tok_dir)
    objective = MaskedLMWithNSP(special_ids(tok), seed=5)
    whole = PretrainingBatches(store, objective, micro_batch_size=8)
    split = PretrainingBatches(store, objective, micro_batch_size=2, grad_accum=2, world_size=2)
    for step in (0, 3, whole.steps_per_epoch + 1):  # also in the second epoch
        full = whole.indices(step, 0, 0)
        parts = np.concatenate([split.indices(step, m, r) for m in range(2) for r in range(2)])
        assert np.array_equal(np.sort(full), np.sort(parts))
        one = whole.batch(step)
        by_index = {int(i): k for k, i in enumerate(full)}
        for m in range(2):
            for r in range(2):
                part = split.batch(step, m, r)
                for k, i in enumerate(split.indices(step, m, r)):
                    row = by_index[int(i)]
                    n = int(part["attention_mask"][k].sum())
                    assert torch.equal(part["input_ids"][k, :n], one["input_ids"][row, :n])
                    assert torch.equal(part["labels"][k, :n], one["labels"][row, :n])


def test_masks_are_dynamic_per_epoch_or_static(corpus, tmp_path):
    path, tok_dir = corpus
    prepare([path], tok_dir, tmp_path / "p", PrepareSettings(max_seq_length=32), workers=1, progress=False)
    store, tok = InstanceStore(tmp_path / "p"), BertTokenizer.from_pretrained(tok_dir)
    idx = np.arange(16)
    for static, same in ((False, False), (True, True)):
        objective = MaskedLMWithNSP(special_ids(tok), seed=1, masking=MaskingSettings(static_masks=static))
        e0, e1 = objective.make_batch(store.rows(idx), idx, 0), objective.make_batch(store.rows(idx), idx, 1)
        assert torch.equal(e0["labels"], e1["labels"]) == same
        assert torch.equal(e0["labels"], objective.make_batch(store.rows(idx), idx, 0)["labels"])  # deterministic
    labelled = (e0["labels"] != -100).sum(1).float()
    lengths = e0["attention_mask"].sum(1).float()
    assert torch.all((labelled - torch.round(lengths * 0.15).clamp(min=1)).abs() <= 0)


def test_bad_corpora_are_clear_errors(tmp_path, corpus):
    _, tok_dir = corpus
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        prepare([tmp_path / "missing.txt"], tok_dir, tmp_path / "out", progress=False)
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 100)
    with pytest.raises(ValueError, match="binary"):
        prepare([binary], tok_dir, tmp_path / "out", progress=False, workers=1)
    one_sentence_docs = tmp_path / "lines.txt"
    one_sentence_docs.write_text("A cat sees a dog\nThe dog runs\nA red tree\n")
    with pytest.raises(ValueError, match="--no-nsp"):
        prepare([one_sentence_docs], tok_dir, tmp_path / "out", PrepareSettings(max_seq_length=16),
                progress=False, workers=1)
    meta = prepare([one_sentence_docs], tok_dir, tmp_path / "out", PrepareSettings(max_seq_length=16, nsp=False),
                   progress=False, workers=1)
    # without NSP the three one-sentence documents are packed: [CLS] + 11 pieces + a [SEP] after each = 15 <= 16
    assert meta["instances"] == {"train": 1, "eval": 0}
    assert read_meta(tmp_path / "out") == meta
    row = InstanceStore(tmp_path / "out").rows(np.array([0]))
    n = int(row["lengths"][0])
    tokens = BertTokenizer.from_pretrained(tok_dir).convert_ids_to_tokens([int(t) for t in row["tokens"][0][:n]])
    assert n == 15 and tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens.count("[SEP]") == 3
    assert sorted(t for t in tokens if t not in ("[CLS]", "[SEP]")) == sorted("a cat sees a dog the dog runs a red "
                                                                           "tree".split())
    assert int(row["b_start"][0]) == n and not row["is_random_next"][0]  # one segment, never a random B


def test_cli_data_prepare(corpus, tmp_path, capsys):
    from bertforge.cli import main

    path, tok_dir = corpus
    main(["data", "prepare", "--corpus", str(path), "--tokenizer", str(tok_dir), "--out", str(tmp_path / "p"),
          "--seq-len", "32", "--workers", "1", "--eval-fraction", "0.2"])
    out = capsys.readouterr().out
    meta = read_meta(tmp_path / "p")
    train, held_out = len(InstanceStore(tmp_path / "p")), len(InstanceStore(tmp_path / "p", "eval"))
    assert (train, held_out) == (meta["instances"]["train"], meta["instances"]["eval"])
    assert held_out > 0 and meta["settings"]["max_seq_length"] == 32 and meta["settings"]["eval_fraction"] == 0.2
    assert f"-> {train:,} training and {held_out:,} held-out instances in {tmp_path / 'p'}" in out
    assert f"{meta['corpus']['documents']:,} documents" in out


def test_preparation_workers_start_without_torch():
    """Workers import only this module's graph; torch would cost each ~3 s and ~200 MB."""
    import subprocess
    import sys

    code = "import sys, bertforge.data.prepare; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
