"""WordPiece tokenization for BERT (SPEC §1), built on the Hugging Face ``tokenizers`` library.

``tokenizers`` does the text work (clean control characters, split CJK characters and
punctuation, lower-case, strip accents, WordPiece with ``##`` continuations) for a whole batch in
one parallel ``encode_batch`` call. Special tokens, Google's pair truncation and padding are
assembled here, so those rules are ours and visible. ``save_pretrained`` writes the layout that
``transformers.BertTokenizer.from_pretrained`` reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tokenizers import AddedToken, Encoding, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from bertforge.errors import DataFormatError, PathError, require_dir
from bertforge.io.atomic import atomic_write_text
from bertforge.io.jsonl import read_json_object

if TYPE_CHECKING:
    import torch

# transformers lists special tokens in this order (all_special_ids); so do we.
SPECIAL_TOKEN_NAMES = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _torch():
    """torch, imported on first use: data-preparation workers tokenize without it."""
    import torch

    return torch


def truncate_seq_pair_lengths(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """Lengths Google's ``truncate_seq_pair`` keeps: pop from the longer side (``b`` on a tie)."""
    if len_a + len_b <= budget:
        return len_a, len_b
    shorter = min(len_a, len_b)
    if 2 * shorter <= budget:  # only the longer side is trimmed
        return (budget - len_b, len_b) if len_a > len_b else (len_a, budget - len_a)
    return (budget + 1) // 2, budget // 2  # both trimmed to even; an odd budget favours a


def load_vocab(path: str | Path) -> dict[str, int]:
    """Read a ``vocab.txt`` (one token per line, line number = id) into a token -> id dict."""
    path = Path(path)
    if not path.is_file():
        raise PathError("no such vocabulary file", path=path)
    tokens = path.read_text(encoding="utf-8").split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()  # the final newline ends the last line, it does not start a new token
    vocab: dict[str, int] = {}
    for i, token in enumerate(tokens):
        if token in vocab:
            raise DataFormatError(f"token {token!r} repeats line {vocab[token] + 1}", path=path, line=i + 1)
        vocab[token] = i
    return vocab


class BertTokenizer:
    """BERT's WordPiece tokenizer: texts or text pairs to padded id tensors, and ids back to text."""

    def __init__(
        self,
        vocab: str | Path | dict[str, int],
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,  # None: strip when lower-casing, as BERT does
        tokenize_chinese_chars: bool = True,
        max_input_chars_per_word: int = 100,
        unk_token: str = "[UNK]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        cls_token: str = "[CLS]",
        mask_token: str = "[MASK]",
        model_max_length: int = 512,
    ) -> None:
        where = "the vocab dict" if isinstance(vocab, dict) else str(vocab)
        self._vocab = dict(vocab) if isinstance(vocab, dict) else load_vocab(vocab)
        if not self._vocab:
            raise ValueError(f"{where} is empty")
        self._id_to_token = sorted(self._vocab, key=self._vocab.__getitem__)
        if sorted(self._vocab.values()) != list(range(len(self._vocab))):
            raise ValueError(f"{where}: ids must be 0..{len(self._vocab) - 1}, each used once")
        if any("\n" in token for token in self._vocab):
            raise ValueError(f"{where}: a token contains a newline")
        self.special_tokens = dict(zip(SPECIAL_TOKEN_NAMES, (unk_token, sep_token, pad_token, cls_token, mask_token)))
        for name, token in self.special_tokens.items():
            if token not in self._vocab:
                raise ValueError(f"{where} has no {name} {token!r}")
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.max_input_chars_per_word = max_input_chars_per_word
        self.model_max_length = model_max_length

        tok = Tokenizer(WordPiece(self._vocab, unk_token=unk_token, continuing_subword_prefix="##",
                                  max_input_chars_per_word=max_input_chars_per_word))
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=tokenize_chinese_chars,
                                                    strip_accents=strip_accents, lowercase=lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        # Only used by the saved tokenizer.json (our __call__ adds specials itself).
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls_token}:0 $A:0 {sep_token}:0",
            pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
            special_tokens=[(cls_token, self._vocab[cls_token]), (sep_token, self._vocab[sep_token])],
        )
        # A literal "[MASK]" in the text stays one token, as in transformers.
        specials = sorted(set(self.special_tokens.values()), key=self._vocab.__getitem__)
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
        self._tokenizer = tok

    # ----------------------------------------------------------------------------- loading, saving

    @classmethod
    def from_pretrained(cls, path: str | Path) -> BertTokenizer:
        """Load from a directory holding ``vocab.txt`` and, optionally, ``tokenizer_config.json``."""
        directory = require_dir(path, what="tokenizer directory")
        vocab_file = directory / "vocab.txt"
        if not vocab_file.is_file():
            raise PathError("has no vocab.txt (a BERT tokenizer directory needs one)", path=directory)
        if (directory / "tokenizer.json").is_file():
            check_tokenizer_json(directory / "tokenizer.json", load_vocab(vocab_file))
        config = _read_json(directory / "tokenizer_config.json")
        config.update(_read_json(directory / "special_tokens_map.json"))
        kwargs: dict[str, Any] = {name: _token_content(config[name]) for name in SPECIAL_TOKEN_NAMES if name in config}
        for key, arg in [("do_lower_case", "lowercase"), ("strip_accents", "strip_accents"),
                         ("tokenize_chinese_chars", "tokenize_chinese_chars"),
                         ("max_input_chars_per_word", "max_input_chars_per_word"),
                         ("model_max_length", "model_max_length")]:
            if key in config:
                kwargs[arg] = config[key]
        if "model_max_length" in kwargs:
            kwargs["model_max_length"] = int(kwargs["model_max_length"])
        return cls(vocab_file, **kwargs)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write vocab.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json (each atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": self.lowercase,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "max_input_chars_per_word": self.max_input_chars_per_word,
            "model_max_length": self.model_max_length,
            "clean_up_tokenization_spaces": False,
            **self.special_tokens,
        }
        atomic_write_text(directory / "vocab.txt", "".join(token + "\n" for token in self._id_to_token))
        atomic_write_text(directory / "tokenizer.json", self._tokenizer.to_str(pretty=True))
        atomic_write_text(directory / "tokenizer_config.json", json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        atomic_write_text(directory / "special_tokens_map.json",
                      json.dumps(self.special_tokens, indent=2, ensure_ascii=False) + "\n")
        return directory

    # ----------------------------------------------------------------------------- encoding

    def __call__(
        self,
        texts: str | Sequence[str],
        text_pairs: str | Sequence[str] | None = None,
        *,
        max_length: int | None = None,  # None: model_max_length (512 for BERT)
        truncation: bool = True,
        padding: bool | str = True,  # True/"longest": to the longest row; "max_length"; False: no padding
        return_offsets: bool = False,
        return_special_tokens_mask: bool = False,
        return_word_ids: bool = False,
        return_tensors: str | None = "pt",  # "pt", "np", or None for lists
    ) -> dict[str, Any]:
        """Encode a text or batch (optionally paired) as ``[CLS] A [SEP] (B [SEP])`` rows of (B, T) ids."""
        batch_a = _as_batch(texts, "texts")
        batch_b = None if text_pairs is None else _as_batch(text_pairs, "text_pairs")
        if batch_b is not None and len(batch_b) != len(batch_a):
            raise ValueError(f"{len(batch_a)} texts but {len(batch_b)} text_pairs")
        if padding not in (True, False, "longest", "max_length"):
            raise ValueError(f"padding must be True, False, 'longest' or 'max_length', not {padding!r}")
        if return_tensors not in ("pt", "np", None):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, not {return_tensors!r}")
        max_length = self.model_max_length if max_length is None else max_length
        n_special = 2 if batch_b is None else 3
        if max_length < n_special:
            raise ValueError(f"max_length={max_length} leaves no room for the {n_special} special tokens")

        encodings = self._tokenizer.encode_batch(batch_a + (batch_b or []), add_special_tokens=False)
        enc_a, enc_b = encodings[: len(batch_a)], encodings[len(batch_a):]
        keys = ["input_ids", "token_type_ids", "attention_mask"]
        keys += ["offset_mapping"] * return_offsets + ["special_tokens_mask"] * return_special_tokens_mask
        keys += ["word_ids"] * return_word_ids
        rows: dict[str, list[list[Any]]] = {key: [] for key in keys}
        cls_id, sep_id = self.cls_token_id, self.sep_token_id
        for i, a in enumerate(enc_a):
            b = enc_b[i] if batch_b is not None else None
            len_a, len_b = len(a), len(b) if b is not None else 0
            if len_a + len_b + n_special > max_length:
                if not truncation:
                    raise ValueError(f"example {i} is {len_a + len_b + n_special} tokens long with special "
                                     f"tokens, more than max_length={max_length}; pass truncation=True")
                len_a, len_b = ((max_length - 2, 0) if b is None
                                else truncate_seq_pair_lengths(len_a, len_b, max_length - 3))

            def layout(field: Callable[[Encoding], list[Any]], first: Any, sep: Any) -> list[Any]:
                """One row: first, A's values, sep, then B's values and sep for a pair."""
                row = [first, *field(a)[:len_a], sep]
                return row if b is None else row + [*field(b)[:len_b], sep]

            rows["input_ids"].append(layout(lambda e: e.ids, cls_id, sep_id))
            rows["token_type_ids"].append([0] * (len_a + 2) + ([1] * (len_b + 1) if b is not None else []))
            rows["attention_mask"].append([1] * len(rows["input_ids"][-1]))
            if return_offsets:
                rows["offset_mapping"].append(layout(lambda e: e.offsets, (0, 0), (0, 0)))
            if return_special_tokens_mask:
                rows["special_tokens_mask"].append(layout(lambda e: [0] * len(e), 1, 1))
            if return_word_ids:
                rows["word_ids"].append(layout(lambda e: e.word_ids, None, None))

        if padding is False:
            return rows
        length = max_length if padding == "max_length" else max((len(r) for r in rows["input_ids"]), default=0)
        pad_values = {"input_ids": self.pad_token_id, "token_type_ids": 0, "attention_mask": 0,
                      "offset_mapping": 0, "special_tokens_mask": 1}
        out: dict[str, Any] = {}
        for key, batch in rows.items():
            if key == "word_ids":  # may hold None: stays a list
                out[key] = [row + [None] * (length - len(row)) for row in batch]
                continue
            shape = (len(batch), length, 2) if key == "offset_mapping" else (len(batch), length)
            array = np.full(shape, pad_values[key], dtype=np.int64)
            for j, row in enumerate(batch):
                array[j, : len(row)] = row
            out[key] = (_torch().from_numpy(array) if return_tensors == "pt"
                        else array if return_tensors == "np" else array.tolist())
        return out

    def encode(self, text: str, pair: str | None = None, *, max_length: int | None = None,
               truncation: bool = True) -> list[int]:
        """Ids of one text (or pair) with special tokens, truncated to max_length, unpadded."""
        out = self(text, pair, max_length=max_length, truncation=truncation, padding=False, return_tensors=None)
        return out["input_ids"][0]

    def piece_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """WordPiece ids of each text, without special tokens or truncation (a parallel batch call)."""
        return [e.ids for e in self._tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)]

    def words(self, text: str) -> list[str]:
        """The words of a text as BERT's normaliser and pre-tokenizer cut them (before WordPiece)."""
        tok = self._tokenizer
        return [w for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text))]

    def tokenize(self, text: str) -> list[str]:
        """WordPiece pieces of a text, without special tokens."""
        return self._tokenizer.encode(text, add_special_tokens=False).tokens

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """Text from ids, joining ``##`` pieces back onto their word (as transformers' decode)."""
        ids = ids.tolist() if hasattr(ids, "tolist") else [int(i) for i in ids]  # tensor, array or list
        return self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    # ----------------------------------------------------------------------------- vocabulary

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Id of a token (or list of tokens); unknown tokens map to the [UNK] id."""
        if isinstance(tokens, str):
            return self._vocab.get(tokens, self.unk_token_id)
        return [self._vocab.get(token, self.unk_token_id) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        """Token of an id (or list of ids)."""
        if isinstance(ids, (int, np.integer)):
            if not 0 <= ids < len(self._id_to_token):
                raise IndexError(f"token id {ids} is outside the vocabulary of {len(self._id_to_token)}")
            return self._id_to_token[int(ids)]
        return [self.convert_ids_to_tokens(int(i)) for i in ids]

    @property
    def vocab(self) -> dict[str, int]:
        """A copy of the token -> id map."""
        return dict(self._vocab)

    @property
    def vocab_size(self) -> int:
        """Number of tokens in the vocabulary."""
        return len(self._id_to_token)

    def __len__(self) -> int:
        """Number of tokens in the vocabulary."""
        return len(self._id_to_token)

    @property
    def unk_token_id(self) -> int:
        """Id of [UNK]."""
        return self._vocab[self.special_tokens["unk_token"]]

    @property
    def sep_token_id(self) -> int:
        """Id of [SEP]."""
        return self._vocab[self.special_tokens["sep_token"]]

    @property
    def pad_token_id(self) -> int:
        """Id of [PAD]."""
        return self._vocab[self.special_tokens["pad_token"]]

    @property
    def cls_token_id(self) -> int:
        """Id of [CLS]."""
        return self._vocab[self.special_tokens["cls_token"]]

    @property
    def mask_token_id(self) -> int:
        """Id of [MASK]."""
        return self._vocab[self.special_tokens["mask_token"]]

    @property
    def all_special_ids(self) -> list[int]:
        """Ids of the special tokens, in transformers' order (unk, sep, pad, cls, mask)."""
        return [self._vocab[token] for token in self.special_tokens.values()]

    def __repr__(self) -> str:
        """Short summary."""
        return (f"BertTokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase}, "
                f"strip_accents={self.strip_accents}, model_max_length={self.model_max_length})")


def _as_batch(texts: str | Sequence[str], name: str) -> list[str]:
    """A list of strings from one string or a sequence of them."""
    batch = [texts] if isinstance(texts, str) else list(texts)
    for i, text in enumerate(batch):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] is {type(text).__name__}, not str")
    return batch


def _token_content(value: str | dict[str, Any]) -> str:
    """A special token's text, from a plain string or a serialized AddedToken dict."""
    return value["content"] if isinstance(value, dict) else value


def check_tokenizer_json(path: Path, vocab: dict[str, int]) -> None:
    """A ConfigError naming ``tokenizer.json`` if it is not JSON or its WordPiece vocabulary is not ``vocab.txt``'s:
    we tokenize with ``vocab.txt``, and ``transformers``' fast tokenizer would read this file instead."""
    from bertforge.errors import ConfigError

    model = read_json_object(path, what="tokenizer.json").get("model")
    if not isinstance(model, dict) or not isinstance(model.get("vocab"), dict):
        raise ConfigError("has no model.vocab (not a WordPiece tokenizer file)", source=path,
                          hint="delete it (vocab.txt is what bertforge reads) or save the tokenizer again")
    theirs = model["vocab"]
    if theirs != vocab:
        token = next((t for t in vocab if theirs.get(t) != vocab[t]), None)
        detail = (f"{token!r} is id {vocab[token]} in vocab.txt but {theirs.get(token, 'absent')} here"
                  if token is not None else f"it has {len(theirs)} tokens, vocab.txt {len(vocab)}")
        raise ConfigError(f"its vocabulary differs from vocab.txt ({detail})", source=path,
                          hint="delete it (vocab.txt is what bertforge reads) or save the tokenizer again")


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or {} when the file is absent."""
    return read_json_object(path) if path.is_file() else {}
