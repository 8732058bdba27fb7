"""A fine-tuned model's answers to inputs given as ``predict`` reads them (a JSON record with the task's fields, or a
plain text): for each input, the JSON line ``bertforge predict`` writes, with the detail a client wants beside it
(every label's probability, each tagged word's characters and score, the answer's character span).

The examples, features and predictions are the task's own (``input_example``, ``encode``, ``decode``,
``to_json``), so an answer here and a line of ``predict`` cannot differ; the detail is read from the same model
outputs. A server calls ``prepare`` and ``answer`` on either side of its batching queue, which runs the
features through ``predictor.run_model``; ``answer_inputs`` does the three steps at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertforge.data.options import DataOptions
from bertforge.inference.predictor import Predictor, check_max_length, run_model
from bertforge.tasks import Task
from bertforge.tasks.base import id2label
from bertforge.tasks.choice import ChoiceTask
from bertforge.tasks.classify import ClassifyTask, RegressTask
from bertforge.tasks.features import Feature
from bertforge.tasks.qa import QATask, candidate_spans
from bertforge.tasks.tag import TagTask, entity_spans, stitch_word_scores, word_spans
from bertforge.tokenization import BertTokenizer

Source = dict[str, Any] | str  # one input: a JSON record with the task's fields, or a plain text


@dataclass
class Prepared:
    """Inputs read as the task's examples and encoded as its features (model inputs, in example order)."""

    sources: list[Source]
    examples: list
    features: list[Feature]


def read_examples(task: Task, sources: Sequence[Source], opts: DataOptions) -> list:
    """The task's examples of ``sources``, as ``predict`` reads them from its input lines."""
    return [task.input_example(s if isinstance(s, dict) else None, s if isinstance(s, str) else "", f"input-{k}",
                               "inputs", k + 1, opts) for k, s in enumerate(sources)]


def prepare(task: Task, tokenizer: BertTokenizer, sources: Sequence[Source], opts: DataOptions) -> Prepared:
    examples = read_examples(task, sources, opts)
    return Prepared(list(sources), examples, task.encode(tokenizer, examples, None, opts))


def settings_of(model) -> dict[str, Any]:
    """What ``decode`` reads of a model (its labels, SQuAD v2...): a task model's task.json, else its config."""
    return getattr(model, "settings", None) or model.config.extra


def answer(task: Task, prepared: Prepared, outputs: list[np.ndarray], settings: dict[str, Any],
           opts: DataOptions) -> list[dict[str, Any]]:
    """One answer per input: ``predict``'s JSON line for it, updated with the task's detail (``DETAIL``)."""
    predictions = task.decode(prepared.examples, prepared.features, outputs, settings, opts)
    n = len(prepared.examples)
    per_example = outputs if len(outputs) == n else [None] * n  # as predict_file pairs them
    lines = [task.to_json(p, o) for p, o in zip(predictions, per_example)]
    detail = detail_of(task)
    if detail is None:
        return lines
    return [{**line, **extra} for line, extra in zip(lines, detail(prepared, outputs, predictions, settings, opts))]


def answer_inputs(predictor: Predictor, sources: Sequence[Source], opts: DataOptions | None = None,
                  batch_size: int = 128) -> list[dict[str, Any]]:
    """``prepare``, run and ``answer`` in one call: a fine-tuned model's answers to these inputs."""
    opts = opts or DataOptions()
    check_max_length(opts, predictor.model.config)
    prepared = prepare(predictor.task, predictor.tokenizer, sources, opts)
    outputs = run_model(predictor.model, predictor.task, prepared.features, batch_size,
                        predictor.tokenizer.pad_token_id, predictor.device)
    return answer(predictor.task, prepared, outputs, settings_of(predictor.model), opts)


# --- the detail of each task's answers -------------------------------------------------------------------------

def softmax(x: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def label_scores(prepared: Prepared, outputs, predictions, settings, opts) -> list[dict[str, Any]]:
    """Classification: the predicted label's probability and every label's, likeliest first."""
    names = id2label(settings)
    result = []
    for logits in outputs:  # one feature per example
        probs = softmax(logits)
        order = np.argsort(-probs, kind="stable")
        result.append({"score": float(probs[order[0]]),
                       "scores": [{"label": names[int(i)], "score": float(probs[i])} for i in order]})
    return result


def ending_scores(prepared: Prepared, outputs, predictions, settings, opts) -> list[dict[str, Any]]:
    """Multiple choice: the chosen ending, its probability and every ending's, in the input's order."""
    result = []
    for example, chosen, logits in zip(prepared.examples, predictions, outputs):
        probs = softmax(logits)
        result.append({"ending": example.endings[chosen], "score": float(probs[chosen]),
                       "scores": [float(p) for p in probs]})
    return result


def tagged_words(prepared: Prepared, outputs, predictions, settings, opts) -> list[dict[str, Any]]:
    """Tagging: each word with its characters in the text (start, end; None for an input given as words) and its
    tag's probability, and the entities its tags spell, each with its words' mean probability."""
    result = []
    words_scores = stitch_word_scores(prepared.features, outputs)
    for source, example, tags, rows in zip(prepared.sources, prepared.examples, predictions, words_scores):
        scores = [float(softmax(row).max()) for row in rows]
        spans = word_spans(source) if isinstance(source, str) else [(None, None)] * len(example.words)
        entities = []
        for kind, first, last in entity_spans(tags):
            start, end = spans[first][0], spans[last][1]
            text = source[start:end] if start is not None else " ".join(example.words[first:last + 1])
            entities.append({"entity": kind, "text": text, "start": start, "end": end,
                             "score": float(np.mean(scores[first:last + 1]))})
        result.append({"entities": entities,
                       "words": [{"word": w, "start": s, "end": e, "tag": t, "score": p}
                                 for w, (s, e), t, p in zip(example.words, spans, tags, scores)]})
    return result


def answer_span(prepared: Prepared, outputs, predictions, settings, opts) -> list[dict[str, Any]]:
    """Question answering: the answer's characters in the context (None for no answer) and its probability among
    the candidate spans (and, for a SQuAD v2 model, no answer)."""
    version_2 = bool(settings.get("bertforge_squad_v2", False))
    candidates = candidate_spans(prepared.examples, prepared.features, [o[:, 0] for o in outputs],
                                 [o[:, 1] for o in outputs], n_best=opts.n_best,
                                 max_answer_length=opts.max_answer_length)
    result = []
    for text, (spans, null) in zip(predictions, candidates):
        probs = softmax([s.score for s in spans] + ([null] if version_2 else [])) if spans or version_2 else []
        if text:  # decode chose the best span
            result.append({"start": spans[0].start_char, "end": spans[0].end_char, "score": float(probs[0])})
        else:
            result.append({"start": None, "end": None, "score": float(probs[-1]) if version_2 else 0.0})
    return result


Detail = Callable[[Prepared, list, list, dict, DataOptions], list[dict[str, Any]]]
# By task class; a class not here takes its nearest base's. None: predict's line is the whole answer (a score).
DETAIL: dict[type, Detail | None] = {RegressTask: None, ClassifyTask: label_scores, ChoiceTask: ending_scores,
                                     TagTask: tagged_words, QATask: answer_span}


def detail_of(task: Task) -> Detail | None:
    return next((DETAIL[cls] for cls in type(task).__mro__ if cls in DETAIL), None)
