"""Masked-LM corruption, with the rules of Google's ``create_masked_lm_predictions``.

Rules (Google's ``create_pretraining_data.py``, the version with ``--do_whole_word_mask``):

- candidates are all positions except ``[CLS]`` and ``[SEP]`` (and ``[PAD]``, which Google never
  sees because it pads later);
- with whole-word masking a candidate is a word: a start piece plus the ``##`` pieces after it (or, when
  the prepared corpus stores word boundaries, ``continues``, the pieces after it in its segmented word:
  Chinese words, :mod:`bertforge.data.segment`);
- candidates are shuffled; ``num_to_predict = min(max_predictions_per_seq,
  max(1, round(len(tokens) * masked_lm_prob)))``, where ``len(tokens)`` counts ``[CLS]`` and
  ``[SEP]`` (not padding);
- candidates are taken in shuffled order while fewer than ``num_to_predict`` positions are
  chosen; a word that would overshoot ``num_to_predict`` is skipped, the next one is tried;
- each chosen *position* (not word) independently becomes ``[MASK]`` (80%), stays itself (10%),
  or becomes a token drawn uniformly from the whole vocabulary ``[0, vocab_size)`` (10%; Google
  draws from every vocab entry, specials and ``[unused]`` included, and so may draw the original).

Two implementations of the same rules: :func:`mask_tokens` (numpy, one sequence, for offline
instance generation) and :func:`mask_batch` (torch, a padded batch, for dynamic masking in a
collator; a handful of whole-batch tensor ops, no Python loop over tokens or rows).

One deliberate deviation: Google appends a ``##`` piece to the previous word even across a
``[SEP]`` (a B segment whose front was truncated mid-word joins A's last word). Here a word never
spans a special token: a ``##`` piece right after a special (or at the start) starts its own word.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bertforge.constants import IGNORE_INDEX

if TYPE_CHECKING:
    import torch

# torch is imported inside the two batch functions: data-preparation workers need only the numpy
# rules and SpecialIds, and start ~3 s faster and ~200 MB lighter without it.



@dataclass(frozen=True)
class SpecialIds:
    """Ids of the special tokens, and the vocabulary size, of the tokenizer in use."""

    cls: int
    sep: int
    mask: int
    pad: int
    vocab_size: int

    def __post_init__(self) -> None:
        for name in ("cls", "sep", "mask", "pad"):
            value = getattr(self, name)
            if not 0 <= value < self.vocab_size:
                raise ValueError(f"SpecialIds.{name}={value} is outside [0, {self.vocab_size})")

    @property
    def never_masked(self) -> tuple[int, int, int]:
        """Ids that are never chosen for prediction: [CLS], [SEP], [PAD]."""
        return (self.cls, self.sep, self.pad)

    @property
    def all(self) -> tuple[int, ...]:
        """All special ids, sorted and unique."""
        return tuple(sorted({self.cls, self.sep, self.mask, self.pad}))


@dataclass
class MaskedInstance:
    """One corrupted sequence: ``input_ids`` to feed the model, ``labels`` to predict.

    ``labels`` is ``IGNORE_INDEX`` (-100) everywhere except at the chosen positions, where it
    holds the original token id.
    """

    input_ids: np.ndarray  # (T,) int32
    labels: np.ndarray  # (T,) int32


def continuation_mask(vocab: dict[str, int]) -> np.ndarray:
    """(V,) bool: True for ``##`` pieces, the English rule of whole-word masking."""
    out = np.zeros(len(vocab), dtype=bool)
    for token, i in vocab.items():
        out[i] = token.startswith("##")
    return out


def num_to_predict(length: int, masked_lm_prob: float, max_predictions_per_seq: int) -> int:
    """Google's count: ``min(max_predictions, max(1, int(round(length * masked_lm_prob))))``.

    ``length`` is the unpadded length including [CLS] and [SEP]; ``round`` is Python's
    (half to even), as in Google's code.
    """
    return min(max_predictions_per_seq, max(1, int(round(length * masked_lm_prob))))


def _check_args(special_ids: SpecialIds, masked_lm_prob: float, max_predictions_per_seq: int,
                whole_word: bool, is_continuation, continues=None) -> None:
    if not 0.0 <= masked_lm_prob <= 1.0:
        raise ValueError(f"masked_lm_prob must be in [0, 1], got {masked_lm_prob}")
    if max_predictions_per_seq < 1:
        raise ValueError(f"max_predictions_per_seq must be >= 1, got {max_predictions_per_seq}")
    if whole_word and continues is None:
        if is_continuation is None:
            raise ValueError("whole_word=True needs is_continuation, a bool array of the "
                             "vocab size that is True for '##' pieces, or continues, one per position")
        if len(is_continuation) != special_ids.vocab_size:
            raise ValueError(f"is_continuation has {len(is_continuation)} entries, "
                             f"vocab_size is {special_ids.vocab_size}")


# ---------------------------------------------------------------------------------------------
# numpy, one sequence


def _greedy_take_np(sizes: np.ndarray, k: int) -> np.ndarray:
    """Google's selection loop over candidate sizes in shuffled order, without a loop per word.

    Returns a bool array: which candidates are taken. A candidate is taken when it fits in the
    remaining budget; one that would overshoot is skipped (``continue``), and the loop stops when
    the budget is spent (``break``). Each pass takes the longest prefix that fits and then jumps
    to the next candidate small enough for what is left, so there are at most ``k`` passes.
    """
    taken = np.zeros(len(sizes), dtype=bool)
    remaining, pos = k, 0
    while remaining > 0 and pos < len(sizes):
        fits = np.flatnonzero(sizes[pos:] <= remaining)  # skip words that overshoot
        if fits.size == 0:
            break
        pos += int(fits[0])
        cum = np.cumsum(sizes[pos:])
        n = int(np.searchsorted(cum, remaining, side="right"))  # longest prefix with sum <= budget
        taken[pos:pos + n] = True
        remaining -= int(cum[n - 1])
        pos += n
    return taken


def mask_tokens(
    tokens,
    special_ids: SpecialIds,
    masked_lm_prob: float = 0.15,
    max_predictions_per_seq: int = 20,
    *,
    rng: np.random.Generator,
    whole_word: bool = False,
    is_continuation: np.ndarray | None = None,
    random_excludes_special: bool = False,
    mix: tuple[float, float, float] = (0.8, 0.1, 0.1),
    spans: bool = False,
    continues: np.ndarray | None = None,
) -> MaskedInstance:
    """Choose positions to predict in one sequence and corrupt them, as Google does.

    ``tokens`` is a 1-D sequence of ids (``[CLS] A [SEP] B [SEP]``, optionally right-padded with
    ``[PAD]``). ``is_continuation[vocab_size]`` marks ``##`` pieces (needed for ``whole_word``).
    ``random_excludes_special=True`` draws the 10% random replacements from non-special ids only
    (default off: Google draws from the whole vocabulary). ``mix`` is the share of chosen positions
    that become [MASK], a random token, or stay (the paper's Appendix C.2 ablation; default 80/10/10).
    ``spans=True`` chooses SpanBERT's spans instead of single positions (:func:`span_positions`).
    ``continues`` (T,) bool, where given, says which pieces continue the previous piece's word (the prepared
    corpus's segmented words) instead of ``is_continuation``.
    """
    _check_args(special_ids, masked_lm_prob, max_predictions_per_seq, whole_word, is_continuation, continues)
    ids = np.asarray(tokens)
    if ids.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {ids.shape}")
    ids = ids.astype(np.int32)
    if ids.size and (ids.min() < 0 or ids.max() >= special_ids.vocab_size):
        raise ValueError(f"token ids must be in [0, {special_ids.vocab_size})")
    if continues is not None and np.shape(continues) != ids.shape:
        raise ValueError(f"continues has shape {np.shape(continues)}, tokens {ids.shape}")

    candidate = (ids != special_ids.cls) & (ids != special_ids.sep) & (ids != special_ids.pad)
    length = int(np.count_nonzero(ids != special_ids.pad))  # Google's len(tokens): no padding
    k = num_to_predict(length, masked_lm_prob, max_predictions_per_seq)

    if spans:
        pos, span_of = span_positions(ids, candidate, k, rng, is_continuation, continues=continues)
    elif whole_word:
        # Words: a candidate starts one unless it continues a word (a '##' piece) right after another candidate.
        prev_candidate = np.concatenate([[False], candidate[:-1]])
        cont = (np.asarray(continues, dtype=bool) if continues is not None
                else np.asarray(is_continuation, dtype=bool)[ids])  # (T,)
        starts = candidate & ~(cont & prev_candidate)
        word_of = np.where(candidate, np.cumsum(starts) - 1, -1)  # (T,) word index, -1: none
        n_words = int(np.count_nonzero(starts))
        sizes = np.bincount(word_of[candidate], minlength=n_words)  # (W,)
        order = rng.permutation(n_words)  # rng.shuffle(cand_indexes)
        taken_word = np.zeros(n_words + 1, dtype=bool)  # slot -1 stays False
        taken_word[order[_greedy_take_np(sizes[order], k)]] = True
        pos = np.flatnonzero(taken_word[word_of])
    else:
        # Every candidate is a word of one piece: shuffle, take the first k.
        cand_pos = np.flatnonzero(candidate)
        pos = cand_pos[rng.permutation(cand_pos.size)[:k]]
    labels = np.full(ids.shape, IGNORE_INDEX, dtype=np.int32)
    labels[pos] = ids[pos]
    out = ids.copy()
    if spans:  # SpanBERT decides per span: all of its tokens are masked, kept or replaced together
        u = rng.random(int(span_of.max()) + 1 if span_of.size else 0)[span_of]
    else:  # 80% [MASK]; 10% keep; 10% random (Google's two draws, folded)
        u = rng.random(pos.size)
    mask_share, random_share, _ = mix
    out[pos[u < mask_share]] = special_ids.mask
    rand_pos = pos[u >= 1 - random_share]
    out[rand_pos] = _random_ids_np(rng, rand_pos.size, special_ids, random_excludes_special)
    return MaskedInstance(out, labels)


def span_positions(ids: np.ndarray, candidate: np.ndarray, k: int, rng: np.random.Generator,
                   is_continuation: np.ndarray | None, p: float = 0.2, max_span: int = 10, *,
                   continues: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """SpanBERT's choice: spans of whole words until ``k`` pieces are chosen (sorted positions, and the
    span index of each). A span's length in words is Geometric(p) clipped at ``max_span`` (mean 3.8); its
    start word is uniform; it stops at a special token; words already chosen are skipped; a span that
    would overshoot the budget is dropped and another drawn (at most 100 draws). Words as in
    :func:`mask_tokens`: ``continues`` (T,) where given, else the ``##`` pieces of ``is_continuation``."""
    prev_candidate = np.concatenate([[False], candidate[:-1]])
    if continues is not None:
        cont = np.asarray(continues, dtype=bool)
    else:
        cont = np.asarray(is_continuation, dtype=bool)[ids] if is_continuation is not None else np.zeros_like(candidate)
    starts = candidate & ~(cont & prev_candidate)  # (T,) the first piece of each word
    word_of = np.where(candidate, np.cumsum(starts) - 1, -1)  # (T,) word index, -1 off words
    n_words = int(starts.sum())
    if n_words == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    sizes = np.bincount(word_of[candidate], minlength=n_words)  # pieces per word
    first = np.flatnonzero(starts)  # (W,) position of each word's first piece
    run = np.cumsum(~candidate)[first]  # words in one run of candidates (no special between) share a value
    span_of_word = np.full(n_words, -1)
    chosen, spans = 0, 0
    for _ in range(100):
        if chosen >= k:
            break
        length = min(int(rng.geometric(p)), max_span)
        start = int(rng.integers(n_words))
        words = [w for w in range(start, min(start + length, n_words)) if run[w] == run[start]]
        words = [w for w in words if span_of_word[w] < 0]
        pieces = int(sizes[words].sum())
        if not words or chosen + pieces > k:
            continue
        span_of_word[words] = spans
        chosen, spans = chosen + pieces, spans + 1
    pos = np.flatnonzero((word_of >= 0) & (span_of_word[np.maximum(word_of, 0)] >= 0))
    return pos, span_of_word[word_of[pos]]


def _random_ids_np(rng: np.random.Generator, n: int, special_ids: SpecialIds,
                   exclude_special: bool) -> np.ndarray:
    if not exclude_special:
        return rng.integers(0, special_ids.vocab_size, size=n, dtype=np.int32)
    excluded = special_ids.all
    r = rng.integers(0, special_ids.vocab_size - len(excluded), size=n, dtype=np.int32)
    for e in excluded:  # ascending: shift past each excluded id
        r += r >= e
    return r


# ---------------------------------------------------------------------------------------------
# torch, a padded batch


def _greedy_take_torch(sizes: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Batched :func:`_greedy_take_np`: ``sizes`` (B, W) in shuffled order (0: no word), ``k`` (B,).

    Each round takes, in every row, the longest prefix of the undecided words that fits, then
    drops the words that can no longer fit. Rounds <= max(k) + 1 (one when no word has 2 pieces).
    """
    import torch

    remaining = k.clone()  # (B,)
    undecided = (sizes > 0) & (sizes <= remaining[:, None])  # (B, W)
    taken = torch.zeros_like(undecided)
    while bool(undecided.any()):
        cum = torch.cumsum(sizes * undecided, dim=1)  # (B, W)
        take = undecided & (cum <= remaining[:, None])
        taken |= take
        remaining = remaining - (sizes * take).sum(dim=1)
        undecided &= ~take & (sizes <= remaining[:, None])
    return taken


def mask_batch(
    input_ids: torch.Tensor,
    special_ids: SpecialIds,
    masked_lm_prob: float = 0.15,
    max_predictions_per_seq: int = 20,
    *,
    generator: torch.Generator | None = None,
    whole_word: bool = False,
    is_continuation: torch.Tensor | np.ndarray | None = None,
    attention_mask: torch.Tensor | None = None,
    random_excludes_special: bool = False,
    continues: torch.Tensor | np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic masking of a padded batch: returns ``(masked_input_ids, labels)``, both (B, T) long.

    Same rules and statistics as :func:`mask_tokens`, row by row. Padding (``[PAD]`` ids, or
    ``attention_mask == 0`` when given) is never chosen and does not count in the length that sets
    ``num_to_predict``. ``input_ids`` is not modified. ``generator`` must live on the device of
    ``input_ids``. ``continues`` (B, T) bool, where given, replaces the ``##`` test of ``is_continuation``.
    """
    import torch

    _check_args(special_ids, masked_lm_prob, max_predictions_per_seq, whole_word, is_continuation, continues)
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be (B, T), got shape {tuple(input_ids.shape)}")
    ids = input_ids.long()
    B, T = ids.shape
    device = ids.device

    real = ids != special_ids.pad  # (B, T)
    if attention_mask is not None:
        real &= attention_mask.to(device=device, dtype=torch.bool)
    candidate = real & (ids != special_ids.cls) & (ids != special_ids.sep)  # (B, T)
    length = real.sum(dim=1).double()  # (B,)
    k = torch.round(length * masked_lm_prob).long().clamp(min=1, max=max_predictions_per_seq)

    starts = candidate.clone()
    if whole_word:
        cont = (torch.as_tensor(continues, dtype=torch.bool, device=device) if continues is not None
                else torch.as_tensor(is_continuation, dtype=torch.bool, device=device)[ids])  # (B, T)
        prev_candidate = torch.zeros_like(candidate)
        prev_candidate[:, 1:] = candidate[:, :-1]
        starts &= ~(cont & prev_candidate)
    word_of = torch.cumsum(starts, dim=1) - 1  # (B, T), word index of each candidate position
    word_of = torch.where(candidate, word_of, torch.zeros_like(word_of))
    sizes = torch.zeros(B, T, dtype=torch.long, device=device)  # (B, W=T)
    sizes.scatter_add_(1, word_of, candidate.long())

    # Shuffle words: random scores, absent words last; double precision makes ties negligible.
    scores = torch.rand(B, T, generator=generator, device=device, dtype=torch.float64)
    scores.masked_fill_(sizes == 0, float("inf"))
    order = torch.argsort(scores, dim=1)  # (B, W)
    taken_sorted = _greedy_take_torch(torch.gather(sizes, 1, order), k)
    taken_word = torch.zeros_like(taken_sorted).scatter_(1, order, taken_sorted)
    chosen = candidate & torch.gather(taken_word, 1, word_of)  # (B, T)

    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    u = torch.rand(B, T, generator=generator, device=device)
    out = torch.where(chosen & (u < 0.8), torch.full_like(ids, special_ids.mask), ids)
    if random_excludes_special:
        excluded = special_ids.all
        rand = torch.randint(0, special_ids.vocab_size - len(excluded), (B, T),
                             generator=generator, device=device)
        for e in excluded:
            rand += (rand >= e).long()
    else:
        rand = torch.randint(0, special_ids.vocab_size, (B, T), generator=generator, device=device)
    out = torch.where(chosen & (u >= 0.9), rand, out)
    return out, labels
