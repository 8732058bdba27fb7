"""Train a WordPiece vocabulary on raw text, for a BERT pre-trained from scratch; the same text
always gives the same ``vocab.txt``, byte for byte.

Text gets BERT's normalisation and pre-tokenisation first (``tokenizers``' BertNormalizer and
BertPreTokenizer, so every CJK character is its own word and becomes a character-level piece, as in
BERT's Chinese vocabulary), and distinct words are counted. Pieces are then learned BPE-style, as
``tokenizers``' WordPiece trainer does: start from the characters (a word's first character as
itself, the others as ``##c``), and repeatedly merge the most frequent adjacent pair (``a`` + ``##b``
-> ``ab``, ``##a`` + ``##b`` -> ``##ab``) until the vocabulary is full. This is not Google's
likelihood-based WordPiece; the vocabulary is used the same way (greedy longest-match-first).

Why our own merge loop instead of ``tokenizers``' trainer: that trainer numbers characters in hash
order and breaks ties between equally frequent pairs by those numbers, so two runs on the same text
give different vocabularies (different pieces, not only a different order). Here every choice has a
canonical tie-break: characters by (frequency desc, text), pairs by (count desc, left text, right
text). The merge loop is incremental (only the words holding the merged pair are revisited).
"""

from __future__ import annotations

import heapq
import itertools
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import normalizers, pre_tokenizers

from bertforge.tokenization import BertTokenizer

if TYPE_CHECKING:
    from bertforge.data.corpus import CorpusStats

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0..4
PREFIX = "##"


def count_words(texts: Iterable[str], *, lowercase: bool = True, batch: int = 2000) -> Counter[str]:
    """Distinct words of ``texts`` after BERT's normalisation and pre-tokenisation, with counts."""
    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                            strip_accents=lowercase, lowercase=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    it = iter(texts)
    while chunk := list(itertools.islice(it, batch)):
        # BertPreTokenizer always splits at whitespace, so joining texts with a space changes nothing.
        text = normalizer.normalize_str(" ".join(chunk))
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(text))
    return counts


def learn_pieces(word_counts: dict[str, int], vocab_size: int, min_frequency: int = 2) -> list[str]:
    """The vocabulary (specials first) learned from word counts; deterministic, see the module doc."""
    symbols: list[str] = []  # id -> piece text
    ids: dict[str, int] = {}

    def symbol(text: str) -> int:
        if text not in ids:
            ids[text] = len(symbols)
            symbols.append(text)
        return ids[text]

    char_counts: Counter[str] = Counter()
    for word, n in word_counts.items():
        for i, c in enumerate(word):
            char_counts[c if i == 0 else PREFIX + c] += n
    for text in SPECIAL_TOKENS:
        symbol(text)
    for text, _ in sorted(char_counts.items(), key=lambda kv: (-kv[1], kv[0])):
        symbol(text)
    if len(symbols) >= vocab_size:
        warnings.warn(f"the corpus has {len(char_counts):,} distinct characters: a {vocab_size:,}-piece "
                      f"vocabulary keeps only the most frequent", stacklevel=2)
        return symbols[:vocab_size]

    words = [[symbol(c if i == 0 else PREFIX + c) for i, c in enumerate(word)] for word in word_counts]
    freq = list(word_counts.values())
    pair_count: dict[tuple[int, int], int] = defaultdict(int)
    pair_words: dict[tuple[int, int], set[int]] = defaultdict(set)
    for w, pieces in enumerate(words):
        for pair in zip(pieces, pieces[1:]):
            pair_count[pair] += freq[w]
            pair_words[pair].add(w)
    heap = [(-n, symbols[a], symbols[b], a, b) for (a, b), n in pair_count.items()]
    heapq.heapify(heap)

    vocab = list(symbols)  # merges may recreate an existing piece; the vocabulary lists it once
    in_vocab = set(vocab)
    while len(vocab) < vocab_size and heap:
        negative, _, _, a, b = heapq.heappop(heap)
        n = pair_count.get((a, b), 0)
        if n != -negative:  # stale entry: counts changed since it was pushed
            if n > 0:
                heapq.heappush(heap, (-n, symbols[a], symbols[b], a, b))
            continue
        if n < min_frequency:
            break
        merged = symbols[a] + symbols[b].removeprefix(PREFIX)
        new = symbol(merged)
        if merged not in in_vocab:
            vocab.append(merged)
            in_vocab.add(merged)
        changed = set()
        for w in pair_words.pop((a, b)):
            old = words[w]
            for pair in zip(old, old[1:]):
                pair_count[pair] -= freq[w]
                changed.add(pair)
            pieces, i = [], 0
            while i < len(old):
                if i + 1 < len(old) and old[i] == a and old[i + 1] == b:
                    pieces.append(new)
                    i += 2
                else:
                    pieces.append(old[i])
                    i += 1
            words[w] = pieces
            for pair in zip(pieces, pieces[1:]):
                pair_count[pair] += freq[w]
                pair_words[pair].add(w)
                changed.add(pair)
        pair_count.pop((a, b), None)
        for pair in changed:
            if pair_count.get(pair, 0) > 0:
                heapq.heappush(heap, (-pair_count[pair], symbols[pair[0]], symbols[pair[1]], *pair))
            else:
                pair_count.pop(pair, None)
                pair_words.pop(pair, None)
    if len(vocab) < vocab_size:
        warnings.warn(f"the corpus supports only {len(vocab):,} pieces (no pair of pieces left that occurs "
                      f"{min_frequency}+ times), fewer than the {vocab_size:,} asked for; the vocabulary "
                      f"has {len(vocab):,}", stacklevel=2)
    return vocab


def train_vocab(texts: Iterable[str], vocab_size: int, *, lowercase: bool = True,
                min_frequency: int = 2, model_max_length: int = 512) -> BertTokenizer:
    """A BertTokenizer whose vocabulary is learned from ``texts`` (any iterable of strings)."""
    return _from_counts(count_words(texts, lowercase=lowercase), vocab_size, lowercase, min_frequency,
                        model_max_length)


def train_vocab_from_corpus(paths: Iterable[str | Path], vocab_size: int, out_dir: str | Path, *,
                            lowercase: bool = True, format: str = "auto", stats: CorpusStats | None = None,
                            text_field: str = "text") -> BertTokenizer:
    """Read corpora with the pre-training readers (``text_field``: the JSONL field, Parquet or Arrow column with the
    text), train a vocabulary, save it to ``out_dir``.

    ``stats``, when given, is filled in with what the read found (documents, undecodable bytes replaced by
    U+FFFD: counted by the same reader ``pretrain`` and ``data prepare`` use)."""
    from bertforge.data.corpus import CorpusStats, read_documents, require_documents

    paths = list(paths)
    stats = CorpusStats() if stats is None else stats
    documents = read_documents(paths, format=format, text_field=text_field, stats=stats)
    counts = count_words((s for doc in documents for s in doc), lowercase=lowercase)
    require_documents(stats, paths)
    tokenizer = _from_counts(counts, vocab_size, lowercase)
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def _from_counts(counts: Counter[str], vocab_size: int, lowercase: bool, min_frequency: int = 2,
                 model_max_length: int = 512) -> BertTokenizer:
    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size must be larger than the {len(SPECIAL_TOKENS)} special tokens, "
                         f"got {vocab_size}")
    if not counts:
        raise ValueError("the training text is empty: no vocabulary could be learned")
    pieces = learn_pieces(counts, vocab_size, min_frequency)
    return BertTokenizer({p: i for i, p in enumerate(pieces)}, lowercase=lowercase,
                         model_max_length=model_max_length)
