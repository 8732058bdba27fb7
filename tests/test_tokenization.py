"""BertTokenizer against transformers (the reference) on the real uncased BERT vocab, plus Google's rules."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import transformers
from tokenizers import Tokenizer

from bertforge.tokenization import BertTokenizer, load_vocab, truncate_seq_pair_lengths

TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "strawberries are unaffable",
    "café naïve Ångström résumé façade",
    "e\u0301 combining accent",
    "中文字符",
    "日本語のテキストです",
    "한국어 문장",
    "emoji 😀🎉 ok 👍🏽",
    "a\x00b\tc\u200bd\ufeffe",
    "\x07bell\x1b escape\x7f",
    "x" * 150,
    "supercalifragilisticexpialidocious" * 4,
    "",
    "   \t\n  ",
    "The cat sat on the mat, again and again. " * 60,  # > 512 pieces: truncated
    "3.14159 1,000,000 2024-01-01 $5.00 -42 1e10",
    "https://example.com/path/to?q=1&x=y#frag user@example.org",
    "MiXeD CaSe iPhone NASA McDonald's",
    "hello [MASK] world [mask] [CLS]",
    "don't won't it's I'm",
    "“smart quotes” — dashes… and ‘apostrophes’",
    "مرحبا بالعالم",
    "Καλημέρα κόσμε",
    "Привет, мир!",
    "line1\nline2\r\nline3",
    "unbelievably antidisestablishmentarianism",
]


@pytest.fixture(scope="module")
def tok(minilm_dir: Path) -> BertTokenizer:
    return BertTokenizer.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def hf(minilm_dir: Path):
    return transformers.BertTokenizer.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def hf_auto(minilm_dir: Path):
    return transformers.AutoTokenizer.from_pretrained(minilm_dir)


def google_truncate_seq_pair(tokens_a: list, tokens_b: list, max_length: int) -> None:
    """Google bert/run_classifier.py ``_truncate_seq_pair``, written out as the reference."""
    while True:
        if len(tokens_a) + len(tokens_b) <= max_length:
            break
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


def assert_same_batch(ours: dict, ref, keys=("input_ids", "token_type_ids", "attention_mask")) -> None:
    for key in keys:
        assert ours[key].dtype == torch.int64, key
        assert torch.equal(ours[key], ref[key].long()), key


# ----------------------------------------------------------------------------- parity with transformers


def test_single_batch_matches_transformers(tok, hf, hf_auto):
    ours = tok(TEXTS, max_length=512, return_offsets=True, return_special_tokens_mask=True)
    for ref_tok in (hf, hf_auto):
        ref = ref_tok(TEXTS, padding=True, truncation=True, max_length=512, return_tensors="pt",
                      return_offsets_mapping=True, return_special_tokens_mask=True)
        assert_same_batch(ours, ref, ("input_ids", "token_type_ids", "attention_mask", "offset_mapping",
                                      "special_tokens_mask"))
    assert ours["input_ids"].shape == (len(TEXTS), 512)  # the long text fills the batch width
    assert ours["attention_mask"][TEXTS.index("")].sum() == 2  # [CLS] [SEP]
    assert ours["input_ids"][TEXTS.index("x" * 150), :3].tolist() == [101, 100, 102]  # > 100 chars: [UNK]
    assert tok.tokenize("hello [MASK] world") == ["hello", "[MASK]", "world"]


def test_pair_batch_matches_transformers(tok, hf, hf_auto):
    texts_b = TEXTS[::-1][1:] + TEXTS[-1:]  # long text meets short ones: no odd-budget tie to break
    ours = tok(TEXTS, texts_b, max_length=512, return_offsets=True, return_special_tokens_mask=True,
               return_word_ids=True)
    for ref_tok in (hf, hf_auto):
        ref = ref_tok(TEXTS, texts_b, padding=True, truncation=True, max_length=512, return_tensors="pt",
                      return_offsets_mapping=True, return_special_tokens_mask=True)
        assert_same_batch(ours, ref, ("input_ids", "token_type_ids", "attention_mask", "offset_mapping",
                                      "special_tokens_mask"))
        assert ours["word_ids"] == [ref.word_ids(i) for i in range(len(TEXTS))]
    first = tok("Hello, world!", "Hi there")
    assert first["input_ids"].tolist() == [[101, 7592, 1010, 2088, 999, 102, 7632, 2045, 102]]
    assert first["token_type_ids"].tolist() == [[0, 0, 0, 0, 0, 0, 1, 1, 1]]


def test_tokenize_encode_decode_match_transformers(tok, hf):
    assert tok.tokenize("strawberries") == ["straw", "##berries"]
    for text in TEXTS:
        assert tok.tokenize(text) == hf.tokenize(text), text
        ids = tok.encode(text)
        assert ids == hf.encode(text, truncation=True, max_length=512), text
        for skip in (True, False):
            assert tok.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip), text
    assert tok.decode(tok.encode("Hello, strawberries!")) == "hello, strawberries!"
    assert tok.decode(torch.tensor(tok.encode("a b"))) == "a b"
    assert tok.encode("a", "b") == hf.encode("a", "b") == [101, 1037, 102, 1038, 102]


def test_tokenizer_json_agrees_with_vocab_txt(tok, minilm_dir):
    shipped = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    shipped.no_truncation()
    shipped.no_padding()
    for text in TEXTS:
        assert shipped.encode(text, add_special_tokens=False).tokens == tok.tokenize(text), text
        assert shipped.encode(text, "pair text").ids == tok.encode(text, "pair text", max_length=10**6), text


@pytest.mark.parametrize("lowercase,strip_accents,chinese", [(False, None, True), (True, False, True),
                                                             (False, True, False)])
def test_options_match_transformers(minilm_dir, lowercase, strip_accents, chinese):
    vocab = load_vocab(minilm_dir / "vocab.txt")
    ours = BertTokenizer(vocab, lowercase=lowercase, strip_accents=strip_accents, tokenize_chinese_chars=chinese)
    ref = transformers.BertTokenizer(vocab=vocab, do_lower_case=lowercase, strip_accents=strip_accents,
                                     tokenize_chinese_chars=chinese)
    texts = TEXTS[:10]
    assert_same_batch(ours(texts), ref(texts, padding=True, truncation=True, max_length=512, return_tensors="pt"))
    assert ours.tokenize("Café 中文") == ref.tokenize("Café 中文")


def test_vocab_and_special_ids_match_transformers(tok, hf):
    assert tok.vocab_size == len(tok) == len(hf) == 30522
    assert tok.vocab == hf.get_vocab()
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == \
        (0, 100, 101, 102, 103)
    assert tok.all_special_ids == hf.all_special_ids == [100, 102, 0, 101, 103]
    assert tok.model_max_length == hf.model_max_length == 512
    assert tok.convert_tokens_to_ids(["hello", "##berries", "no-such-token"]) == [7592, 20968, 100]
    assert tok.convert_tokens_to_ids("[MASK]") == 103
    assert tok.convert_ids_to_tokens([101, 7592, 102]) == ["[CLS]", "hello", "[SEP]"]
    assert tok.convert_ids_to_tokens(0) == "[PAD]"
    with pytest.raises(IndexError, match="30522"):
        tok.convert_ids_to_tokens(30522)


# ----------------------------------------------------------------------------- truncation


def test_pair_truncation_is_googles_loop():
    rng = random.Random(0)
    for _ in range(2000):
        len_a, len_b, budget = rng.randint(0, 60), rng.randint(0, 60), rng.randint(0, 70)
        a, b = list(range(len_a)), list(range(len_b))
        google_truncate_seq_pair(a, b, budget)
        assert truncate_seq_pair_lengths(len_a, len_b, budget) == (len(a), len(b)), (len_a, len_b, budget)


def test_pair_truncation_end_to_end_and_difference_from_longest_first(tok, hf):
    rng = random.Random(1)
    differs_from_hf = []
    for _ in range(150):
        len_a, len_b, max_length = rng.randint(0, 30), rng.randint(0, 30), rng.randint(3, 40)
        a_ids, b_ids = [1037] * len_a, [1038] * len_b  # "a" and "b" are one piece each
        google_truncate_seq_pair(a_ids, b_ids, max_length - 3)
        text_a, text_b = " ".join("a" * len_a), " ".join("b" * len_b)
        ours = tok.encode(text_a, text_b, max_length=max_length)
        assert ours == [101, *a_ids, 102, *b_ids, 102]
        ref = hf([text_a], [text_b], truncation="longest_first", max_length=max_length)["input_ids"][0]
        if ref != ours:
            differs_from_hf.append(max_length - 3)
    # tokenizers' longest_first gives the odd leftover to the longer side, Google to a: only odd budgets differ.
    assert differs_from_hf and all(budget % 2 == 1 for budget in differs_from_hf)
    ours = tok("a a a", "b b b b b b", max_length=8)["token_type_ids"][0].tolist()
    ref = hf("a a a", "b b b b b b", max_length=8, truncation="longest_first")["token_type_ids"]
    assert (ours.count(0) - 2, ours.count(1) - 1) == (3, 2)  # Google: b trimmed to 3, then the tie pops b
    assert (ref.count(0) - 2, ref.count(1) - 1) == (2, 3)


def test_single_truncation_keeps_first_pieces(tok):
    ids = tok.encode(" ".join(["hello"] * 20), max_length=8)
    assert ids == [101] + [7592] * 6 + [102]


def test_no_truncation_raises_with_index_and_length(tok):
    with pytest.raises(ValueError, match=r"example 1 is 22 tokens .* max_length=10"):
        tok(["short", " ".join(["hello"] * 20)], max_length=10, truncation=False)
    assert tok("short", max_length=10, truncation=False)["input_ids"].shape == (1, 3)


# ----------------------------------------------------------------------------- padding and output types


def test_padding_modes(tok):
    texts = ["a", "a b c"]
    longest = tok(texts)
    assert longest["input_ids"].tolist() == [[101, 1037, 102, 0, 0], [101, 1037, 1038, 1039, 102]]
    assert longest["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    fixed = tok(texts, max_length=8, padding="max_length", return_word_ids=True)
    assert fixed["input_ids"].shape == fixed["token_type_ids"].shape == (2, 8)
    assert fixed["word_ids"] == [[None, 0, None] + [None] * 5, [None, 0, 1, 2, None] + [None] * 3]
    ragged = tok(texts, padding=False)
    assert ragged["input_ids"] == [[101, 1037, 102], [101, 1037, 1038, 1039, 102]]
    as_lists = tok(texts, return_tensors=None)
    assert as_lists["input_ids"] == longest["input_ids"].tolist()
    assert tok(texts, return_tensors="np")["input_ids"].dtype.name == "int64"
    assert tok([])["input_ids"].shape == (0, 0)


def test_bad_arguments(tok):
    with pytest.raises(ValueError, match="2 texts but 1 text_pairs"):
        tok(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="padding"):
        tok("a", padding="left")
    with pytest.raises(TypeError, match=r"texts\[1\] is NoneType"):
        tok(["a", None])
    with pytest.raises(ValueError, match="max_length=2"):
        tok("a", "b", max_length=2)


# ----------------------------------------------------------------------------- save / load


def test_save_pretrained_round_trip(tok, minilm_dir, tmp_path):
    out = tok.save_pretrained(tmp_path / "saved")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]
    assert (out / "vocab.txt").read_text(encoding="utf-8") == (minilm_dir / "vocab.txt").read_text(encoding="utf-8")
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "BertTokenizer" and config["do_lower_case"] is True

    expected = tok(TEXTS, TEXTS[::-1][1:] + TEXTS[-1:])
    reloaded = BertTokenizer.from_pretrained(out)
    assert_same_batch(reloaded(TEXTS, TEXTS[::-1][1:] + TEXTS[-1:]), expected)
    for ref_tok in (transformers.BertTokenizer.from_pretrained(out), transformers.AutoTokenizer.from_pretrained(out)):
        ref = ref_tok(TEXTS, TEXTS[::-1][1:] + TEXTS[-1:], padding=True, truncation=True, max_length=512,
                      return_tensors="pt")
        assert_same_batch(expected, ref)
        for skip in (True, False):
            assert ref_tok.decode(expected["input_ids"][3], skip_special_tokens=skip) == \
                tok.decode(expected["input_ids"][3], skip_special_tokens=skip)


def test_save_pretrained_keeps_options(minilm_dir, tmp_path):
    cased = BertTokenizer(minilm_dir / "vocab.txt", lowercase=False, model_max_length=128)
    reloaded = BertTokenizer.from_pretrained(cased.save_pretrained(tmp_path / "cased"))
    assert (reloaded.lowercase, reloaded.model_max_length) == (False, 128)
    texts = ["Hello World", "Café", "ÅNGSTRÖM"]
    ref = transformers.AutoTokenizer.from_pretrained(tmp_path / "cased")
    assert ref.model_max_length == 128
    assert_same_batch(reloaded(texts), ref(texts, padding=True, return_tensors="pt"))
    assert reloaded.tokenize("Hello") == ["[UNK]"]  # the uncased vocab has no "Hello"
    # max_input_chars_per_word survives our round trip (transformers' BertTokenizer always uses 100).
    short_words = BertTokenizer(minilm_dir / "vocab.txt", max_input_chars_per_word=10)
    reloaded = BertTokenizer.from_pretrained(short_words.save_pretrained(tmp_path / "short"))
    assert reloaded.tokenize("abcdefghijk short") == ["[UNK]", "short"]


def test_empty_pair_text_is_still_a_pair(tok, hf):
    """An empty B gives ``[CLS] A [SEP] [SEP]``, as transformers' batch path (its single-text call drops it)."""
    assert tok.encode("a b", "") == hf(["a b"], [""])["input_ids"][0] == [101, 1037, 1038, 102, 102]
    assert hf.encode("a b", "") == [101, 1037, 1038, 102]  # transformers treats a lone "" pair as no pair


# ----------------------------------------------------------------------------- errors at the boundary


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        BertTokenizer.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: has no vocab.txt"):
        BertTokenizer.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        BertTokenizer(tmp_path / "missing.txt")


def test_bad_vocabularies(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.txt is empty"):
        BertTokenizer(empty)
    no_mask = tmp_path / "no_mask.txt"
    no_mask.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
    with pytest.raises(ValueError, match=r"no_mask.txt has no mask_token '\[MASK\]'"):
        BertTokenizer(no_mask)
    repeated = tmp_path / "repeated.txt"
    repeated.write_text("[PAD]\n[UNK]\n[PAD]\n")
    with pytest.raises(ValueError, match=r"repeated.txt:3: token .\[PAD\]. repeats line 1"):
        BertTokenizer(repeated)
    with pytest.raises(ValueError, match="each used once"):
        BertTokenizer({"[PAD]": 0, "[UNK]": 5})
    tiny = BertTokenizer({t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hi", "##s"])})
    assert tiny.encode("His hat") == [2, 5, 6, 1, 3]
