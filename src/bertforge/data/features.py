"""Task examples to model inputs, and model outputs back to task predictions (SPEC §4).

Nothing is cut without being reported: ``encode_text`` / ``encode_choices`` count truncated
examples, ``encode_tagged`` and ``encode_qa`` split long inputs into overlapping windows and
stitch the windows' predictions back so every word (every question) gets exactly one answer.
What can still be lost (a question cut to ``max_query_length``, a word longer than a whole
window) is logged as a warning with a count.

Layouts: ``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]`` with token types 0 for ``[CLS] A [SEP]``
and 1 for ``B [SEP]``, as ``BertTokenizer`` builds them.
"""

from __future__ import annotations

import bisect
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import torch

from bertforge.data.squad import QAExample, best_spans, choose_answer, null_score
from bertforge.data.tasks import ChoiceExample, TaggedSentence, TextExample
from bertforge.tokenization import BertTokenizer, truncate_seq_pair_lengths

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label of pieces that are not scored (special tokens, non-first pieces)


# --------------------------------------------------------------------------------------------
# Features


@dataclass
class Feature:
    """One model input: ids (T,), or (C, T) rows for multiple choice, its label and its example."""

    input_ids: list[int] | list[list[int]]
    token_type_ids: list[int] | list[list[int]]
    label: int | float | list[int] | None  # class id, score, or one id per token (-100: unscored)
    example_index: int  # position of the example in the list that was encoded


@dataclass
class TagWindow(Feature):
    """A window of whole words of one sentence; ``label`` scores the first piece of each word."""

    word_ids: list[int | None]  # (T,) the sentence's word index of each piece; None on specials
    max_context: list[bool]  # (T,) True on the first piece of each word predicted from this window
    num_words: int  # words in the whole sentence


@dataclass
class QAWindow(Feature):
    """``[CLS] question [SEP] context window [SEP]`` with the char offsets of its context tokens."""

    offsets: list[tuple[int, int] | None]  # (T,) char span in the context; None off the context
    token_is_max_context: list[bool]  # (T,) Google's rule: the token's best-centred window is this
    start_position: int  # answer's first token, 0 ([CLS]) when not wholly inside or impossible
    end_position: int


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


def _truncate(len_a: int, len_b: int | None, max_length: int) -> tuple[int, int]:
    """Lengths of A and B kept in ``max_length`` tokens with specials (Google's pair rule)."""
    if len_b is None:
        return min(len_a, max_length - 2), 0
    return truncate_seq_pair_lengths(len_a, len_b, max_length - 3)


def _pack(tokenizer: BertTokenizer, a: list[int], b: list[int] | None) -> tuple[list[int], list[int]]:
    """``[CLS] a [SEP] (b [SEP])`` ids and their token types."""
    ids = [tokenizer.cls_token_id, *a, tokenizer.sep_token_id]
    types = [0] * len(ids)
    if b is not None:
        ids += [*b, tokenizer.sep_token_id]
        types += [1] * (len(b) + 1)
    return ids, types


def _check_max_length(max_length: int, n_special: int) -> None:
    if max_length <= n_special:
        raise ValueError(f"max_length={max_length} leaves no room for text beside {n_special} special tokens")


# --------------------------------------------------------------------------------------------
# Classification, regression, multiple choice


def _text_label(example: TextExample, label2id: Mapping[str, int] | None, regression: bool) -> int | float | None:
    if example.label is None:
        return None
    if regression:
        try:
            return float(example.label)
        except (TypeError, ValueError):
            raise ValueError(f"example {example.id}: label {example.label!r} is not a number") from None
    if label2id is None:
        raise ValueError(f"example {example.id} has label {example.label!r} but no label2id was given")
    if example.label not in label2id:
        raise ValueError(f"example {example.id}: label {example.label!r} is not in label2id "
                         f"({', '.join(map(repr, label2id))})")
    return label2id[example.label]


def encode_text(tokenizer: BertTokenizer, examples: Sequence[TextExample], label2id: Mapping[str, int] | None,
                max_length: int, regression: bool = False) -> EncodedTexts:
    """One feature per sentence (pair); labels to ids (floats for ``regression``), None if unlabelled.

    Too-long inputs are cut by Google's rule (a single text at the end; a pair from the longer
    side) and counted in ``truncated``.
    """
    _check_max_length(max_length, 3 if any(e.text_pair is not None for e in examples) else 2)
    firsts = tokenizer.piece_ids([e.text for e in examples])
    paired = [i for i, e in enumerate(examples) if e.text_pair is not None]
    seconds = dict(zip(paired, tokenizer.piece_ids([examples[i].text_pair for i in paired])))
    features, truncated = [], 0
    for i, example in enumerate(examples):
        a, b = firsts[i], seconds.get(i)
        len_a, len_b = _truncate(len(a), None if b is None else len(b), max_length)
        truncated += len_a < len(a) or (b is not None and len_b < len(b))
        ids, types = _pack(tokenizer, a[:len_a], None if b is None else b[:len_b])
        features.append(Feature(ids, types, _text_label(example, label2id, regression), i))
    return EncodedTexts(features, truncated)


def encode_choices(tokenizer: BertTokenizer, examples: Sequence[ChoiceExample], max_length: int) -> EncodedTexts:
    """One feature per question with C rows ``[CLS] context [SEP] ending_c [SEP]``; label = right ending.

    ``truncated`` counts questions where any row was cut (Google's pair rule).
    """
    _check_max_length(max_length, 3)
    contexts = tokenizer.piece_ids([e.context for e in examples])
    endings = tokenizer.piece_ids([ending for e in examples for ending in e.endings])
    features, truncated, k = [], 0, 0
    for i, example in enumerate(examples):
        if not example.endings:
            raise ValueError(f"example {example.id} has no endings")
        if example.label is not None and not 0 <= example.label < len(example.endings):
            raise ValueError(f"example {example.id}: label {example.label} is not an index of its "
                             f"{len(example.endings)} endings")
        rows, types, cut = [], [], False
        for b in endings[k:k + len(example.endings)]:
            a = contexts[i]
            len_a, len_b = _truncate(len(a), len(b), max_length)
            cut |= len_a < len(a) or len_b < len(b)
            ids, tt = _pack(tokenizer, a[:len_a], b[:len_b])
            rows.append(ids)
            types.append(tt)
        k += len(example.endings)
        truncated += cut
        features.append(Feature(rows, types, example.label, i))
    return EncodedTexts(features, truncated)


# --------------------------------------------------------------------------------------------
# Tagging


def _word_windows(counts: Sequence[int], budget: int, stride: int) -> list[tuple[int, int]]:
    """Word ranges [start, end) of at most ``budget`` pieces, consecutive ones sharing <= ``stride``.

    A word longer than ``budget`` gets a window of its own (its pieces are then cut by the caller).
    Each window ends further right than the one before, so the windows always finish.
    """
    n = len(counts)
    windows: list[tuple[int, int]] = []
    start = 0
    while True:
        end, used = start, 0
        while end < n and used + counts[end] <= budget:
            used += counts[end]
            end += 1
        end = max(end, start + 1) if n else 0
        windows.append((start, end))
        if end >= n:
            return windows
        nxt, overlap = end, 0  # step back over whole words while they fit in `stride` pieces
        while nxt - 1 > start and overlap + counts[nxt - 1] <= stride:
            nxt -= 1
            overlap += counts[nxt]
        while nxt < end and overlap + counts[end] > budget:  # the next window must reach word `end`
            overlap -= counts[nxt]
            nxt += 1
        start = nxt


def encode_tagged(tokenizer: BertTokenizer, sentences: Sequence[TaggedSentence],
                  label2id: Mapping[str, int] | None, max_length: int, stride: int) -> list[TagWindow]:
    """Windows of whole words with the tag id on each word's FIRST piece, -100 elsewhere.

    Each word is tokenized alone (``piece_ids``; for BERT's whitespace/punctuation pre-tokenizer
    that equals its pieces in context). A word with no pieces at all (a lone control or
    zero-width character, which the normalizer deletes) becomes one ``[UNK]`` piece, so it still
    has a position to predict from. A sentence of more than ``max_length - 2`` pieces is split
    into windows of whole words overlapping by at most ``stride`` pieces; each word is predicted
    from the window where it has the most context on its shorter side (``max_context``). Only a
    single word longer than ``max_length - 2`` pieces is cut (logged).
    """
    budget = max_length - 2
    _check_max_length(max_length, 2)
    if not 0 <= stride < budget:
        raise ValueError(f"stride must be in [0, max_length - 2) = [0, {budget}), got {stride}")
    flat = tokenizer.piece_ids([w for s in sentences for w in s.words])
    flat = [p or [tokenizer.unk_token_id] for p in flat]
    windows: list[TagWindow] = []
    cut_words, k = 0, 0
    for index, sentence in enumerate(sentences):
        pieces, k = flat[k:k + len(sentence.words)], k + len(sentence.words)
        if sentence.tags is not None and len(sentence.tags) != len(sentence.words):
            raise ValueError(f"sentence {sentence.id}: {len(sentence.tags)} tags for {len(sentence.words)} words")
        tag_ids = None
        if sentence.tags is not None:
            if label2id is None:
                raise ValueError(f"sentence {sentence.id} has tags but no label2id was given")
            unknown = sorted({t for t in sentence.tags if t not in label2id})
            if unknown:
                raise ValueError(f"sentence {sentence.id}: tags {unknown} are not in label2id "
                                 f"({', '.join(map(repr, label2id))})")
            tag_ids = [label2id[t] for t in sentence.tags]
        spans = _word_windows([len(p) for p in pieces], budget, stride)
        # For each word, the window (of this sentence) with the best min(left, right) piece context.
        best: dict[int, tuple[float, int]] = {}
        built = []
        for w_index, (start, end) in enumerate(spans):
            ids, word_ids, firsts = [tokenizer.cls_token_id], [None], {}
            for w in range(start, end):
                p = pieces[w]
                if len(p) > budget:
                    p, cut_words = p[:budget], cut_words + 1
                firsts[w] = (len(ids), len(ids) + len(p) - 1)  # (first, last) token of the word
                ids += p
                word_ids += [w] * len(p)
            ids.append(tokenizer.sep_token_id)
            word_ids.append(None)
            n_pieces = len(ids) - 2
            for w, (first, last) in firsts.items():
                score = min(first - 1, n_pieces - last) + 0.01 * n_pieces
                if w not in best or score > best[w][0]:  # first window wins a tie, as Google's
                    best[w] = (score, w_index)
            built.append((ids, word_ids, firsts))
        for w_index, (ids, word_ids, firsts) in enumerate(built):
            max_context = [False] * len(ids)
            labels = None if tag_ids is None else [IGNORE_INDEX] * len(ids)
            for w, (first, _) in firsts.items():
                max_context[first] = best[w][1] == w_index
                if labels is not None:
                    labels[first] = tag_ids[w]
            windows.append(TagWindow(ids, [0] * len(ids), labels, index, word_ids, max_context,
                                     len(sentence.words)))
    if cut_words:
        logger.warning("%d words longer than max_length - 2 = %d pieces were cut to fit one window "
                       "(each still gets its tag from its first piece)", cut_words, budget)
    return windows


def stitch_tags(windows: Sequence[TagWindow], scores: Sequence[np.ndarray],
                id2label: Mapping[int, str] | Sequence[str]) -> list[list[str]]:
    """One tag per word per sentence, in order, from each window's (T, num_labels) logits or (T,) ids.

    Each word takes the prediction at its first piece in its max-context window. ``scores[i]``
    may be longer than window i (a padded batch row); the padding is ignored.
    """
    if len(scores) != len(windows):
        raise ValueError(f"{len(scores)} score arrays for {len(windows)} windows")
    tags: dict[int, list[str | None]] = {}
    for i, (window, score) in enumerate(zip(windows, scores)):
        score = np.asarray(score)
        if score.ndim not in (1, 2) or score.shape[0] < len(window.input_ids):
            raise ValueError(f"window {i}: scores of shape {score.shape} do not cover its "
                             f"{len(window.input_ids)} tokens; expected (T, num_labels) logits or (T,) ids")
        predicted = score.argmax(-1) if score.ndim == 2 else score
        out = tags.setdefault(window.example_index, [None] * window.num_words)
        for t, chosen in enumerate(window.max_context):
            if chosen:
                word = window.word_ids[t]
                if out[word] is not None:
                    raise ValueError(f"sentence {window.example_index}: word {word} is max-context in two windows")
                out[word] = id2label[int(predicted[t])]
    result = []
    for index in range(max(tags, default=-1) + 1):
        if index not in tags:
            raise ValueError(f"no window of sentence {index}: windows must cover sentences 0..{max(tags)}")
        missing = [w for w, tag in enumerate(tags[index]) if tag is None]
        if missing:
            raise ValueError(f"sentence {index}: words {missing} got no tag (a window is missing)")
        result.append(tags[index])
    return result


# --------------------------------------------------------------------------------------------
# Extractive QA


def answer_token_span(offsets: Sequence[tuple[int, int]], context: str,
                      answer: Mapping[str, Any]) -> tuple[int, int] | None:
    """First and last context token overlapping the answer's characters (whitespace trimmed).

    ``offsets`` are the context tokens' char spans, in order. None if no token overlaps. The
    tokens' span can be wider than the answer when the answer starts or ends inside a word.
    """
    start = answer["answer_start"]
    end = start + len(answer["text"])
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    first = bisect.bisect_right([e for _, e in offsets], start)  # first token ending after start
    last = bisect.bisect_left([s for s, _ in offsets], end) - 1  # last token starting before end
    return (first, last) if first <= last and start < end else None


def _max_context(spans: Sequence[tuple[int, int]], n: int) -> np.ndarray:
    """(n,) index of each context token's best window: max of min(left, right) + 0.01 * length."""
    scores = np.full((len(spans), n), -np.inf)
    position = np.arange(n)
    for k, (start, length) in enumerate(spans):
        inside = (position >= start) & (position < start + length)
        left, right = position - start, start + length - 1 - position
        scores[k, inside] = np.minimum(left, right)[inside] + 0.01 * length
    return scores.argmax(0)  # the first window wins a tie, as Google's _check_is_max_context


def encode_qa(tokenizer: BertTokenizer, examples: Sequence[QAExample], max_length: int = 384,
              doc_stride: int = 128, max_query_length: int = 64) -> list[QAWindow]:
    """Windows ``[CLS] question [SEP] context piece window [SEP]`` over every context, Google's way.

    The question is cut to ``max_query_length`` pieces (logged); the context pieces are covered
    by windows of ``max_length - len(question) - 3`` pieces whose starts are ``doc_stride``
    pieces apart (Google's run_squad.py meaning: the step between windows, not transformers'
    overlap). The training target is the first answer: its token span where it lies wholly inside
    the window, else 0/0 ([CLS]); 0/0 for impossible questions. Answers whose characters do not
    start and end on piece boundaries are logged (their target is the covering pieces).
    """
    if doc_stride < 1:
        raise ValueError(f"doc_stride must be >= 1, got {doc_stride}")
    if max_query_length < 1:
        raise ValueError(f"max_query_length must be >= 1, got {max_query_length}")
    questions = tokenizer.piece_ids([e.question for e in examples])
    contexts = list(dict.fromkeys(e.context for e in examples))
    enc = tokenizer(contexts, max_length=1 << 62, truncation=False, padding=False,
                    return_offsets=True, return_tensors=None)
    pieces = {c: (ids[1:-1], [tuple(o) for o in offs[1:-1]])  # without [CLS] and [SEP]
              for c, ids, offs in zip(contexts, enc["input_ids"], enc["offset_mapping"])}
    windows: list[QAWindow] = []
    cut_questions, misaligned = 0, []
    for index, example in enumerate(examples):
        question = questions[index][:max_query_length]
        cut_questions += len(question) < len(questions[index])
        budget = max_length - len(question) - 3
        if budget < 1:
            raise ValueError(f"question {example.id}: max_length={max_length} leaves no room for the "
                             f"context beside {len(question)} question pieces")
        ids, offsets = pieces[example.context]
        target = None
        if not example.is_impossible and example.answers:
            target = answer_token_span(offsets, example.context, example.answers[0])
            a = example.answers[0]
            if target is None or (example.context[offsets[target[0]][0]:offsets[target[1]][1]]
                                  != a["text"].strip()):
                misaligned.append(example.id)
        spans, start = [], 0
        while True:
            length = min(len(ids) - start, budget)
            spans.append((start, length))
            if start + length >= len(ids):
                break
            start += min(length, doc_stride)
        best = _max_context(spans, len(ids))
        head = len(question) + 2  # [CLS] question [SEP]
        for k, (start, length) in enumerate(spans):
            window_ids, types = _pack(tokenizer, question, ids[start:start + length])
            s = e = 0
            if target is not None and start <= target[0] and target[1] < start + length:
                s, e = target[0] - start + head, target[1] - start + head
            windows.append(QAWindow(
                window_ids, types, None, index,
                offsets=[None] * head + list(offsets[start:start + length]) + [None],
                token_is_max_context=[False] * head + [bool(best[p] == k) for p in range(start, start + length)]
                + [False],
                start_position=s, end_position=e))
    if cut_questions:
        logger.warning("%d of %d questions were cut to max_query_length=%d pieces",
                       cut_questions, len(examples), max_query_length)
    if misaligned:
        logger.warning("%d answers do not start and end on piece boundaries (e.g. question %s); "
                       "their targets are the covering pieces", len(misaligned), misaligned[0])
    return windows


def decode_qa(examples: Sequence[QAExample], windows: Sequence[QAWindow], start_logits: Sequence[np.ndarray],
              end_logits: Sequence[np.ndarray], n_best: int = 20, max_answer_length: int = 30,
              null_threshold: float = 0.0, version_2: bool = False) -> tuple[dict[str, str], dict[str, float]]:
    """Answer text per question id, and the null-score difference (min null - best span score).

    Spans come from all of a question's windows, on context tokens, starting only on a token
    whose max-context window this is (Google's rule). With ``version_2`` the answer is "" when
    the difference exceeds ``null_threshold``. Logit rows may be padded longer than the window.
    """
    if not len(windows) == len(start_logits) == len(end_logits):
        raise ValueError(f"{len(windows)} windows, {len(start_logits)} start and {len(end_logits)} end logit rows")
    by_example: dict[int, list[int]] = defaultdict(list)
    for i, window in enumerate(windows):
        by_example[window.example_index].append(i)
    predictions: dict[str, str] = {}
    null_diffs: dict[str, float] = {}
    for index, example in enumerate(examples):
        if index not in by_example:
            raise ValueError(f"question {example.id} (example {index}) has no window")
        spans, null = [], float("inf")
        for i in by_example[index]:
            window, n = windows[i], len(windows[i].input_ids)
            start, end = np.asarray(start_logits[i], np.float64), np.asarray(end_logits[i], np.float64)
            if start.shape[0] < n or end.shape[0] < n:
                raise ValueError(f"window {i}: logits of lengths {start.shape[0]}, {end.shape[0]} for {n} tokens")
            start, end = start[:n], end[:n]
            null = min(null, null_score(start, end))
            start = np.where(window.token_is_max_context, start, -np.inf)
            spans += [s for s in best_spans(start, end, window.offsets, n_best=n_best,
                                            max_answer_length=max_answer_length) if np.isfinite(s.score)]
        spans = sorted(spans, key=lambda s: -s.score)[:n_best]
        text, _ = choose_answer(example.context, spans, null if version_2 else None, null_threshold)
        predictions[example.id] = text
        null_diffs[example.id] = null - spans[0].score if spans else float("inf")
    return predictions, null_diffs


# --------------------------------------------------------------------------------------------
# Batching


def _pad(rows: Sequence[Sequence[int]], value: int, width: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
    """(len(rows), width) tensor of rows right-padded with ``value``."""
    out = torch.full((len(rows), width), value, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.as_tensor(row, dtype=dtype)
    return out


def collate(features: Sequence[Feature], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch into the heads' keyword arguments.

    input_ids / token_type_ids / attention_mask: (B, T), or (B, C, T) for multiple choice;
    labels: (B,) long (class ids) or float (scores), (B, T) padded with -100 for tagging;
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
    batch = {"input_ids": _pad(ids, pad_id, width), "token_type_ids": _pad(types, 0, width),
             "attention_mask": _pad([[1] * len(r) for r in ids], 0, width)}
    if choice:
        batch = {k: v.view(len(features), -1, width) for k, v in batch.items()}  # (B, C, T)
    if isinstance(features[0], QAWindow):
        batch["start_positions"] = torch.tensor([f.start_position for f in features], dtype=torch.long)
        batch["end_positions"] = torch.tensor([f.end_position for f in features], dtype=torch.long)
        return batch
    labels = [f.label for f in features]
    if all(label is None for label in labels):
        return batch
    if any(label is None for label in labels):
        raise ValueError("a batch mixes labelled and unlabelled features")
    if isinstance(labels[0], list):
        batch["labels"] = _pad(labels, IGNORE_INDEX, width)
    elif any(isinstance(label, float) for label in labels):
        batch["labels"] = torch.tensor(labels, dtype=torch.float)
    else:
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
    return batch


def bucketed_batches(lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0,
                     chunk_batches: int = 50) -> list[list[int]]:
    """Index batches that waste little padding; the same (seed, epoch) gives the same batches.

    Training (``shuffle``): shuffle, cut into chunks of ``chunk_batches`` batches, sort each chunk
    by length and cut it into batches, then shuffle the batch order. Evaluation: longest first.
    """
    if batch_size < 1 or chunk_batches < 1:
        raise ValueError(f"batch_size and chunk_batches must be >= 1, got {batch_size}, {chunk_batches}")
    n = len(lengths)
    if not shuffle:
        order = sorted(range(n), key=lambda i: -lengths[i])
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0, got {seed}, {epoch}")
    rng = np.random.default_rng([seed, epoch])
    permutation = rng.permutation(n).tolist()
    chunk = batch_size * chunk_batches
    batches = []
    for c in range(0, n, chunk):
        part = sorted(permutation[c:c + chunk], key=lambda i: lengths[i])
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches)).tolist()]
