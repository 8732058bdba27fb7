"""What every task family shares between its examples and the model: a feature (one model input),
``[CLS] A [SEP] (B [SEP])`` packing with Google's truncation rule, Google's max-context rule for
overlapping windows, and collation into padded batches.

Layouts: ``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]`` with token types 0 for ``[CLS] A [SEP]`` and
1 for ``B [SEP]``, as ``BertTokenizer`` builds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, overload

import numpy as np
import torch

from bertforge.constants import IGNORE_INDEX
from bertforge.data.batching import pad_rows
from bertforge.tokenization import BertTokenizer, truncate_seq_pair_lengths


@dataclass
class Feature:
    """One model input: ids (T,), or (C, T) rows for multiple choice, its label and its example."""

    input_ids: list[int] | list[list[int]]
    token_type_ids: list[int] | list[list[int]]
    label: int | float | list[int] | None  # class id, score, or one id per token (IGNORE_INDEX: unscored)
    example_index: int  # position of the example in the list that was encoded
    span_targets: ClassVar[bool] = False  # True: trained on start/end positions (QA), not on labels

    @property
    def length(self) -> int:
        """Tokens in its longest row (what padding a batch to it costs)."""
        ids = self.input_ids
        return max(len(r) for r in ids) if ids and isinstance(ids[0], list) else len(ids)


@dataclass
class EncodedTexts(Sequence[Feature]):
    """Features, and how many examples had tokens cut to fit ``max_length`` (for the caller to report)."""

    features: list[Feature]
    truncated: int

    @overload
    def __getitem__(self, i: int) -> Feature: ...
    @overload
    def __getitem__(self, i: slice) -> list[Feature]: ...
    def __getitem__(self, i: int | slice) -> Feature | list[Feature]:
        return self.features[i]

    def __len__(self) -> int:
        return len(self.features)


def truncated_lengths(len_a: int, len_b: int | None, max_length: int) -> tuple[int, int]:
    """Lengths of A and B kept in ``max_length`` tokens with specials (Google's pair rule)."""
    if len_b is None:
        return min(len_a, max_length - 2), 0
    return truncate_seq_pair_lengths(len_a, len_b, max_length - 3)


def pack(tokenizer: BertTokenizer, a: list[int], b: list[int] | None) -> tuple[list[int], list[int]]:
    """``[CLS] a [SEP] (b [SEP])`` ids and their token types."""
    ids = [tokenizer.cls_token_id, *a, tokenizer.sep_token_id]
    types = [0] * len(ids)
    if b is not None:
        ids += [*b, tokenizer.sep_token_id]
        types += [1] * (len(b) + 1)
    return ids, types


def check_max_length(max_length: int, n_special: int) -> None:
    if max_length <= n_special:
        raise ValueError(f"max_length={max_length} leaves no room for text beside {n_special} special tokens")


def max_context(spans: Sequence[tuple[int, int]], items: Sequence[tuple[int, int]]) -> np.ndarray:
    """Google's max-context rule: for each item (first, last piece), the index of the window (start,
    length) where it has the most context, ``min(left, right) + 0.01 * length``; the first window
    wins a tie. QA items are single context pieces, tagging items whole words. (len(items),)."""
    starts = np.array([s for s, _ in spans])[:, None]  # (W, 1)
    lengths = np.array([n for _, n in spans])[:, None]
    first = np.array([f for f, _ in items], dtype=np.int64)[None, :]  # (1, N)
    last = np.array([e for _, e in items], dtype=np.int64)[None, :]
    inside = (first >= starts) & (last < starts + lengths)  # (W, N)
    score = np.minimum(first - starts, starts + lengths - 1 - last) + 0.01 * lengths
    return np.where(inside, score, -np.inf).argmax(0)


def collate(features: Sequence[Feature], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch into the heads' keyword arguments.

    input_ids / token_type_ids / attention_mask: (B, T), or (B, C, T) for multiple choice;
    labels: (B,) long (class ids) or float (scores), (B, T) padded with IGNORE_INDEX for tagging;
    start_positions / end_positions: (B,) for QA windows. Unlabelled batches have no labels.
    """
    if not features:
        raise ValueError("cannot collate an empty batch")
    kind = type(features[0])
    if any(type(f) is not kind for f in features):
        raise ValueError(f"a batch mixes feature types: {sorted({type(f).__name__ for f in features})}")
    choice = bool(features[0].input_ids) and isinstance(features[0].input_ids[0], list)
    if choice:
        n_choices = {len(f.input_ids) for f in features}
        if len(n_choices) != 1:
            raise ValueError(f"multiple-choice features with different numbers of choices: {sorted(n_choices)}")
        ids = [row for f in features for row in f.input_ids]
        types = [row for f in features for row in f.token_type_ids]
    else:
        ids = [f.input_ids for f in features]
        types = [f.token_type_ids for f in features]
    width = max(len(r) for r in ids)
    batch = {"input_ids": pad_rows(ids, pad_id, width), "token_type_ids": pad_rows(types, 0, width),
             "attention_mask": pad_rows([[1] * len(r) for r in ids], 0, width)}
    batch = {k: torch.from_numpy(v) for k, v in batch.items()}
    if choice:
        batch = {k: v.view(len(features), -1, width) for k, v in batch.items()}  # (B, C, T)
    if kind.span_targets:
        batch["start_positions"] = torch.tensor([f.start_position for f in features], dtype=torch.long)
        batch["end_positions"] = torch.tensor([f.end_position for f in features], dtype=torch.long)
        return batch
    labels = [f.label for f in features]
    if all(label is None for label in labels):
        return batch
    if any(label is None for label in labels):
        raise ValueError("a batch mixes labelled and unlabelled features")
    if isinstance(labels[0], list):
        batch["labels"] = torch.from_numpy(pad_rows(labels, IGNORE_INDEX, width))
    elif any(isinstance(label, float) for label in labels):
        batch["labels"] = torch.tensor(labels, dtype=torch.float)
    else:
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
    return batch
