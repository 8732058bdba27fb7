"""Train a WordPiece vocabulary on raw text, for a BERT pre-trained from scratch.

The ``tokenizers`` WordPiece trainer learns its pieces BPE-style (merging frequent pairs), not with
Google's likelihood-based WordPiece algorithm; the resulting vocabulary is used the same way
(greedy longest-match-first with ``##`` continuations). Text gets BERT's normalisation first, so
every CJK character is its own word and becomes a character-level piece, as in BERT's Chinese vocab.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordPiece
from tokenizers.trainers import WordPieceTrainer

from bertforge.tokenization import BertTokenizer

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0..4


def train_vocab(texts: Iterable[str], vocab_size: int, *, lowercase: bool = True,
                min_frequency: int = 2, model_max_length: int = 512) -> BertTokenizer:
    """A BertTokenizer whose vocabulary is learned from ``texts`` (any iterable of strings)."""
    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size must be larger than the {len(SPECIAL_TOKENS)} special tokens, "
                         f"got {vocab_size}")
    tok = Tokenizer(WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=lowercase, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                               special_tokens=SPECIAL_TOKENS, continuing_subword_prefix="##",
                               show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    vocab = tok.get_vocab()
    if len(vocab) <= len(SPECIAL_TOKENS):
        raise ValueError("the training text is empty: no vocabulary could be learned")
    return BertTokenizer(vocab, lowercase=lowercase, model_max_length=model_max_length)


def train_vocab_from_corpus(paths: Iterable[str | Path], vocab_size: int, out_dir: str | Path, *,
                            lowercase: bool = True, format: str = "auto") -> BertTokenizer:
    """Read corpora with the pre-training readers, train a vocabulary, save it to ``out_dir``."""
    from bertforge.data.corpus import CorpusStats, read_documents, require_documents

    paths = list(paths)
    stats = CorpusStats()
    sentences = (s for doc in read_documents(paths, format=format, stats=stats) for s in doc)
    tokenizer = train_vocab(sentences, vocab_size, lowercase=lowercase)
    require_documents(stats, paths)
    tokenizer.save_pretrained(out_dir)
    return tokenizer
