"""Extractive question answering (SQuAD v1.1 and v2.0): start and end scores per token over windows of
the context, the best valid span across windows, "no answer" for v2 models; the official EM/F1."""

from __future__ import annotations

import bisect
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from bertforge.data import columnar
from bertforge.data.examples import QAExample
from bertforge.data.squad import (Span, best_spans, choose_answer, null_score, read_squad, read_squad_rows,
                                  squad_evaluate)
from bertforge.errors import DataFormatError
from bertforge.model.registry import SPAN
from bertforge.tasks.base import Task
from bertforge.tasks.features import Feature, max_context, pack
from bertforge.tokenization import BertTokenizer

logger = logging.getLogger(__name__)


@dataclass
class QAWindow(Feature):
    """``[CLS] question [SEP] context window [SEP]`` with the char offsets of its context tokens."""

    offsets: list[tuple[int, int] | None]  # (T,) char span in the context; None off the context
    token_is_max_context: list[bool]  # (T,) Google's rule: the token's best-centred window is this
    start_position: int  # answer's first token, 0 ([CLS]) when not wholly inside or impossible
    end_position: int
    span_targets: ClassVar[bool] = True


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


def encode_qa(tokenizer: BertTokenizer, examples: Sequence[QAExample], max_length: int = 384,
              doc_stride: int | None = 128, max_query_length: int = 64) -> list[QAWindow]:
    """Windows ``[CLS] question [SEP] context piece window [SEP]`` over every context, Google's way.

    The question is cut to ``max_query_length`` pieces (logged); the context pieces are covered
    by windows of ``max_length - len(question) - 3`` pieces whose starts are ``doc_stride``
    pieces apart (Google's run_squad.py meaning: the step between windows, not transformers'
    overlap; None: half a window, so every piece is in two windows when the context is long). The training target is the first answer: its token span where it lies wholly inside
    the window, else 0/0 ([CLS]); 0/0 for impossible questions. Answers whose characters do not
    start and end on piece boundaries are logged (their target is the covering pieces).
    """
    if doc_stride is not None and doc_stride < 1:
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
            start += min(length, doc_stride or max(1, budget // 2))
        best = max_context(spans, [(p, p) for p in range(len(ids))])
        head = len(question) + 2  # [CLS] question [SEP]
        for k, (start, length) in enumerate(spans):
            window_ids, types = pack(tokenizer, question, ids[start:start + length])
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


def candidate_spans(examples: Sequence[QAExample], windows: Sequence[QAWindow], start_logits: Sequence[np.ndarray],
                    end_logits: Sequence[np.ndarray], n_best: int = 20, max_answer_length: int = 30
                    ) -> list[tuple[list[Span], float]]:
    """Per question, its ``n_best`` candidate spans (best first) and its no-answer (null) score.

    Spans come from all of a question's windows, on context tokens, starting only on a token
    whose max-context window this is (Google's rule). Logit rows may be padded longer than the window.
    """
    if not len(windows) == len(start_logits) == len(end_logits):
        raise ValueError(f"{len(windows)} windows, {len(start_logits)} start and {len(end_logits)} end logit rows")
    by_example: dict[int, list[int]] = defaultdict(list)
    for i, window in enumerate(windows):
        by_example[window.example_index].append(i)
    result = []
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
        result.append((sorted(spans, key=lambda s: -s.score)[:n_best], null))
    return result


def decode_qa(examples: Sequence[QAExample], windows: Sequence[QAWindow], start_logits: Sequence[np.ndarray],
              end_logits: Sequence[np.ndarray], n_best: int = 20, max_answer_length: int = 30,
              null_threshold: float = 0.0, version_2: bool = False) -> tuple[dict[str, str], dict[str, float]]:
    """Answer text per question id, and the null-score difference (min null - best span score).

    Candidates as ``candidate_spans``. With ``version_2`` the answer is "" when the difference
    exceeds ``null_threshold``.
    """
    predictions: dict[str, str] = {}
    null_diffs: dict[str, float] = {}
    candidates = candidate_spans(examples, windows, start_logits, end_logits, n_best, max_answer_length)
    for example, (spans, null) in zip(examples, candidates):
        text, _ = choose_answer(example.context, spans, null if version_2 else None, null_threshold)
        predictions[example.id] = text
        null_diffs[example.id] = null - spans[0].score if spans else float("inf")
    return predictions, null_diffs


class QATask(Task):
    name, selection_metric, has_labels = "qa", "f1", False
    head_kind = SPAN
    input_fields = ("question", "context")

    def read(self, path, opts):
        path = columnar.source(path)
        if opts.format not in ("auto", "squad"):
            raise DataFormatError(f"format {opts.format!r} is not a QA format", path=path, hint="use squad")
        return read_squad_rows(path)[0] if columnar.detect(path) else read_squad(path, opts.encoding)[0]

    def input_example(self, record, line, key, path, lineno, opts):
        return QAExample(key, self.field(record, "question", path, lineno),
                         self.field(record, "context", path, lineno), [], False)

    def label_names(self, examples):
        return []

    def model_settings(self, labels, train_examples):
        """A model trained with unanswerable questions (SQuAD 2.0) may answer "no answer"; recorded so
        that ``predict`` and ``evaluate`` decode it that way whatever the input file holds."""
        return {"bertforge_squad_v2": any(e.is_impossible for e in train_examples)}

    def encode(self, tokenizer, examples, label2id, opts):
        return encode_qa(tokenizer, examples, opts.max_length, opts.doc_stride, opts.max_query_length)

    def outputs(self, out):
        return torch.stack([out.start_logits, out.end_logits], dim=-1)  # (B, T, 2)

    def decode(self, examples, feats, outputs, settings, opts):
        version_2 = settings.get("bertforge_squad_v2", any(e.is_impossible for e in examples))
        predictions, _ = decode_qa(examples, feats, [o[:, 0] for o in outputs], [o[:, 1] for o in outputs],
                                   n_best=opts.n_best, max_answer_length=opts.max_answer_length,
                                   null_threshold=opts.null_threshold, version_2=version_2)
        return [predictions[e.id] for e in examples]

    def score(self, examples: list[QAExample], predictions, labels):
        result = squad_evaluate(examples, {e.id: p for e, p in zip(examples, predictions)})
        return {k: v for k, v in result.items() if k in ("exact_match", "f1", "total")}

    def to_json(self, prediction, output=None):
        return {"answer": prediction}
