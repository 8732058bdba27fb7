"""SQuAD v1.1 / v2.0: reading, the official evaluation, and model-free answer-span decoding.

``normalize_answer``, ``exact_match_score``, ``f1_score`` and ``squad_evaluate`` follow the
official evaluation scripts (v1.1 and v2.0; on v1.1 data both give the same numbers) and report
on their percent scale, 0-100.
"""

from __future__ import annotations

import collections
import json
import re
import string
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from bertforge.data import columnar
from bertforge.data.examples import QAExample
from bertforge.data.readers import PathLike
from bertforge.errors import DataFormatError


# --------------------------------------------------------------------------------------------
# Reading


def _get(obj: Any, key: str, kind: type | tuple[type, ...], path: PathLike, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise DataFormatError(f"{where}: missing field {key!r}", path=path)
    value = obj[key]
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise DataFormatError(f"{where}: {key!r} should be {names}, "
                              f"got {type(value).__name__}", path=path)
    return value


def read_squad(path: PathLike, encoding: str = "utf-8") -> tuple[list[QAExample], int]:
    """Read SQuAD v1.1/v2.0 JSON; returns (examples, number skipped for a misaligned answer).

    Every answer's text must equal ``context[answer_start:answer_start + len(text)]``; an example
    with a mismatch is warned about (with its id), counted and skipped. ``plausible_answers``
    of v2.0's impossible questions are ignored.
    """
    try:
        with open(path, encoding=encoding) as f:
            dataset = json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"malformed JSON: {e.msg}", path=path, line=e.lineno) from None
    except UnicodeDecodeError as e:
        raise DataFormatError(f"not valid {encoding} ({e.reason} at byte {e.start})", path=path,
                              hint="pass --encoding with the file's encoding") from None
    examples, skipped = [], 0
    for a, article in enumerate(_get(dataset, "data", list, path, "top level")):
        for p, para in enumerate(_get(article, "paragraphs", list, path, f"data[{a}]")):
            where = f"data[{a}].paragraphs[{p}]"
            context = _get(para, "context", str, path, where)
            for q, qa in enumerate(_get(para, "qas", list, path, where)):
                qid = str(_get(qa, "id", (str, int), path, f"{where}.qas[{q}]"))
                where_q = f"question {qid}"
                question = _get(qa, "question", str, path, where_q)
                impossible = bool(qa.get("is_impossible", False))
                answers = [] if impossible else _get(qa, "answers", list, path, where_q)
                answers = [{"text": _get(ans, "text", str, path, where_q),
                            "answer_start": _get(ans, "answer_start", int, path, where_q)}
                           for ans in answers]
                example = _example(qid, question, context, answers, impossible, path, f"{where}.qas[{q}]")
                if example is None:
                    skipped += 1
                else:
                    examples.append(example)
    return _nonempty(examples, skipped, path)


def read_squad_rows(path: PathLike) -> tuple[list[QAExample], int]:
    """SQuAD as Hugging Face's squad and squad_v2 datasets hold it, in columnar data (Parquet, Arrow, a datasets
    folder or Dataset): a row per question with id, question, context and answers ({text: [...], answer_start:
    [...]}, or a list of {text, answer_start}); a question without answers is unanswerable (v2.0). The examples,
    and their checks, are ``read_squad``'s of the same questions in JSON."""
    examples, skipped = [], 0
    for row, rec in columnar.records(path, ["id", "question", "context", "answers"],
                                     hint="question answering reads the columns of Hugging Face's squad"):
        found = rec["answers"] or {}
        pairs = (zip(found.get("text") or [], found.get("answer_start") or []) if isinstance(found, dict)
                 else ((a.get("text"), a.get("answer_start")) for a in found))
        answers = [{"text": text, "answer_start": start} for text, start in pairs]
        example = _example(str(rec["id"]), rec["question"], rec["context"], answers, not answers, path, f"row {row}")
        if example is None:
            skipped += 1
        else:
            examples.append(example)
    return _nonempty(examples, skipped, path)


def _example(qid: str, question: str, context: str, answers: list[dict[str, Any]], impossible: bool,
             path: PathLike, where: str) -> QAExample | None:
    """One question, its answers checked against its context: an answer past the context is an error (the file is
    broken there); one whose text is not at its answer_start is warned about, and the question skipped (None)."""
    for ans in answers:
        if ans["answer_start"] < 0 or ans["answer_start"] + len(ans["text"]) > len(context):
            raise DataFormatError(
                f"question {qid} ({where}): answer {ans['text'][:40]!r} at answer_start "
                f"{ans['answer_start']} lies past its context ({len(context)} characters)", path=path,
                field="answer_start", hint="answer_start counts characters from the start of the context")
    bad = [ans for ans in answers if context[ans["answer_start"]:ans["answer_start"] + len(ans["text"])] != ans["text"]]
    if bad:
        warnings.warn(f"{path}: question {qid}: answer {bad[0]['text']!r} is not at "
                      f"context[{bad[0]['answer_start']}:]; example skipped", stacklevel=3)
        return None
    return QAExample(qid, question, context, answers, impossible)


def _nonempty(examples: list[QAExample], skipped: int, path: PathLike) -> tuple[list[QAExample], int]:
    if not examples:
        raise DataFormatError(f"no questions left: all {skipped} were skipped (answer not at answer_start)"
                              if skipped else "no questions in file", path=path)
    return examples, skipped


# --------------------------------------------------------------------------------------------
# Official evaluation


_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace (official)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
    """1.0 if the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token-overlap F1 of the normalised strings; two empty answers agree (v2.0 rule)."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(ground_truth).split()
    if not pred or not gold:
        return float(pred == gold)
    same = sum((collections.Counter(pred) & collections.Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def _gold_texts(example: QAExample) -> list[str]:
    """Gold answers that survive normalisation; the empty answer for unanswerable questions."""
    return [a["text"] for a in example.answers if normalize_answer(a["text"])] or [""]


def _best_thresh(predictions: dict[str, str | None], scores: dict[str, float],
                 na_probs: dict[str, float], has_ans: dict[str, bool]) -> tuple[float, float]:
    """The official find_best_thresh: sweep questions by no-answer score, keep the best total."""
    score = best = float(sum(not v for v in has_ans.values()))
    thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_ans[qid]:
            score += scores[qid]
        elif predictions[qid] != "":  # answered an unanswerable question (None: no prediction)
            score -= 1
        if score > best:
            best, thresh = score, na_probs[qid]
    return 100.0 * best / len(scores), thresh


def squad_evaluate(examples: Sequence[QAExample], predictions: dict[str, str],
                   na_probs: dict[str, float] | None = None,
                   na_prob_thresh: float = 1.0) -> dict[str, float]:
    """The official SQuAD v1.1/v2.0 scores (percent), with HasAns/NoAns and best thresholds.

    ``na_probs`` are per-question no-answer scores (probabilities, or BERT's null-score
    differences); a question whose score exceeds ``na_prob_thresh`` is predicted unanswerable.
    A question without a prediction scores 0 and is warned about.
    """
    if not examples:
        raise ValueError("no examples to evaluate")
    has_ans = {ex.id: bool(ex.answers) for ex in examples}
    missing = [ex.id for ex in examples if ex.id not in predictions]
    if missing:
        warnings.warn(f"{len(missing)} questions have no prediction (scored 0), e.g. {missing[0]}",
                      stacklevel=2)
    preds = {qid: predictions.get(qid) for qid in has_ans}
    exact_raw, f1_raw = {}, {}
    for ex in examples:
        pred = preds[ex.id]
        golds = _gold_texts(ex)
        exact_raw[ex.id] = 0.0 if pred is None else max(exact_match_score(pred, g) for g in golds)
        f1_raw[ex.id] = 0.0 if pred is None else max(f1_score(pred, g) for g in golds)
    probs = na_probs if na_probs is not None else {qid: 0.0 for qid in has_ans}
    lost = [qid for qid in has_ans if qid not in probs]
    if lost:
        raise ValueError(f"na_probs has no score for {len(lost)} questions, e.g. {lost[0]}")

    def thresholded(raw: dict[str, float]) -> dict[str, float]:
        return {qid: float(not has_ans[qid]) if probs[qid] > na_prob_thresh else s
                for qid, s in raw.items()}

    exact, f1 = thresholded(exact_raw), thresholded(f1_raw)

    def mean(scores: dict[str, float], qids: list[str]) -> float:
        return 100.0 * sum(scores[q] for q in qids) / len(qids)

    qids = list(has_ans)
    out: dict[str, float] = {"exact_match": mean(exact, qids), "f1": mean(f1, qids),
                             "total": len(qids)}
    for prefix, group in (("HasAns", [q for q in qids if has_ans[q]]),
                          ("NoAns", [q for q in qids if not has_ans[q]])):
        if group:
            out.update({f"{prefix}_exact": mean(exact, group), f"{prefix}_f1": mean(f1, group),
                        f"{prefix}_total": len(group)})
    if na_probs is not None:
        out["best_exact"], out["best_exact_thresh"] = _best_thresh(preds, exact_raw, probs, has_ans)
        out["best_f1"], out["best_f1_thresh"] = _best_thresh(preds, f1_raw, probs, has_ans)
    return out


# --------------------------------------------------------------------------------------------
# Span decoding (model-free: works on any start/end logits)


@dataclass(frozen=True)
class Span:
    """A candidate answer: characters [start_char, end_char) of the context, and its score."""

    start_char: int
    end_char: int
    score: float


def best_spans(start_logits: np.ndarray, end_logits: np.ndarray,
               offsets: Sequence[tuple[int, int] | None], context_mask: np.ndarray | None = None,
               n_best: int = 20, max_answer_length: int = 30) -> list[Span]:
    """The ``n_best`` highest-scoring valid spans, best first; score = start + end logit.

    Valid: both ends on context tokens, end >= start, at most ``max_answer_length`` tokens.
    ``offsets[i]`` is token i's (start_char, end_char) in the context, None off the context;
    ``context_mask`` (bool, (T,)) defaults to the tokens with offsets.
    """
    start_logits = np.asarray(start_logits, dtype=np.float64)  # (T,)
    end_logits = np.asarray(end_logits, dtype=np.float64)  # (T,)
    n = len(offsets)
    if start_logits.shape != (n,) or end_logits.shape != (n,):
        raise ValueError(f"logits of shapes {start_logits.shape}, {end_logits.shape} do not match "
                         f"{n} token offsets")
    has_offsets = np.array([o is not None for o in offsets], dtype=bool)
    mask = has_offsets if context_mask is None else np.asarray(context_mask, dtype=bool)
    if mask.shape != (n,) or (mask & ~has_offsets).any():
        raise ValueError("context_mask must be (T,) and mark only tokens that have offsets")
    scores = start_logits[:, None] + end_logits[None, :]  # (T, T): [start, end]
    i, j = np.indices((n, n))
    valid = (j >= i) & (j - i < max_answer_length) & mask[:, None] & mask[None, :]
    flat = np.flatnonzero(valid)
    if flat.size == 0:
        return []
    k = min(n_best, flat.size)
    top = np.sort(flat[np.argpartition(-scores.flat[flat], k - 1)[:k]])
    top = top[np.argsort(-scores.flat[top], kind="stable")]  # ties: by start, then end
    spans = []
    for idx in top:
        s, e = divmod(int(idx), n)
        spans.append(Span(offsets[s][0], offsets[e][1], float(scores[s, e])))
    return spans


def null_score(start_logits: np.ndarray, end_logits: np.ndarray, cls_index: int = 0) -> float:
    """SQuAD v2.0's no-answer score: start_logit[CLS] + end_logit[CLS]."""
    return float(start_logits[cls_index] + end_logits[cls_index])


def choose_answer(context: str, spans: Sequence[Span], null: float | None = None,
                  null_threshold: float = 0.0) -> tuple[str, float]:
    """The answer text and its null-score difference (null - best span score).

    With a ``null`` score (v2.0), the answer is "" when the difference exceeds ``null_threshold``
    (Google's ``null_score_diff_threshold``); the difference is what ``squad_evaluate`` takes as
    ``na_probs`` to find the best threshold.
    """
    if not spans:
        return "", float("inf")
    best = spans[0]
    diff = (null - best.score) if null is not None else float("-inf")
    if null is not None and diff > null_threshold:
        return "", diff
    return context[best.start_char:best.end_char], diff
