"""Words to character ids, with bilm-tf's conventions (its ``UnicodeCharsVocabulary`` and ``Batcher``).

A word is its UTF-8 bytes cut to ``max_chars - 2``, between begin- and end-of-word markers, padded with
the padding character; the sentence markers ``<S>`` and ``</S>`` are one special character each. Every id
is shifted by +1 so that an all-zero row means "no token" (padding in a batch).
"""

from __future__ import annotations

import functools

import torch

from bertforge.errors import UsageError

BOS_TOKEN, EOS_TOKEN = "<S>", "</S>"
BOS_CHAR, EOS_CHAR, BOW_CHAR, EOW_CHAR, PAD_CHAR = 256, 257, 258, 259, 260


@functools.lru_cache(maxsize=1 << 16)
def word_to_char_ids(word: str, max_chars: int = 50) -> tuple[int, ...]:
    """The ``max_chars`` character ids of one word, +1 offset included."""
    if word == BOS_TOKEN or word == EOS_TOKEN:
        encoded = [BOS_CHAR if word == BOS_TOKEN else EOS_CHAR]
    else:
        encoded = list(word.encode("utf-8", "ignore")[: max_chars - 2])  # bilm-tf cuts bytes, not characters
    ids = [BOW_CHAR, *encoded, EOW_CHAR] + [PAD_CHAR] * (max_chars - len(encoded) - 2)
    return tuple(i + 1 for i in ids)


def batch_to_char_ids(sentences: list[list[str]], max_chars: int = 50) -> torch.Tensor:
    """(B, T, max_chars) character ids of a batch of token lists, zero rows past each sentence's end."""
    if max_chars < 3:
        raise UsageError(f"max_chars must be at least 3, got {max_chars}")
    for b, sentence in enumerate(sentences):
        if isinstance(sentence, str) or any(not isinstance(w, str) for w in sentence):
            raise UsageError(f"sentence {b} must be a list of token strings, got {sentence!r:.60}")
    out = torch.zeros(len(sentences), max((len(s) for s in sentences), default=0), max_chars, dtype=torch.long)
    for b, sentence in enumerate(sentences):
        if sentence:
            out[b, : len(sentence)] = torch.tensor([word_to_char_ids(w, max_chars) for w in sentence])
    return out


def add_sentence_boundaries(char_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Put ``<S>`` before and ``</S>`` after each sentence: (B, T, C) -> (B, T + 2, C), with the new mask."""
    B, T, C = char_ids.shape
    lengths = mask.long().sum(1)  # (B,)
    out = char_ids.new_zeros(B, T + 2, C)
    out[:, 1:-1] = char_ids * mask[..., None]
    rows = torch.arange(B, device=char_ids.device)
    out[:, 0] = char_ids.new_tensor(word_to_char_ids(BOS_TOKEN, C))
    out[rows, lengths + 1] = char_ids.new_tensor(word_to_char_ids(EOS_TOKEN, C))
    new_mask = torch.arange(T + 2, device=mask.device)[None] < (lengths + 2)[:, None]  # (B, T + 2)
    return out, new_mask


def remove_sentence_boundaries(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the first and the last real position of each row: x (B, ..., T, D) -> (B, ..., T - 2, D).

    ``mask`` (B, T) covers the boundaries; positions past a row's end come back as zeros.
    """
    lengths = mask.long().sum(1) - 2  # (B,) words without the markers
    T = x.shape[-2] - 2
    new_mask = torch.arange(max(T, 0), device=x.device)[None] < lengths[:, None]  # (B, T - 2)
    keep = new_mask.view(new_mask.shape[0], *([1] * (x.dim() - 3)), -1, 1)
    return x[..., 1:-1, :] * keep, new_mask
