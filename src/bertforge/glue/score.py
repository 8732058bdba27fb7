"""GLUE's metrics, as the leaderboard computes them, and the GLUE score.

CoLA: Matthews correlation; MRPC and QQP: accuracy and F1 of the positive class ("1"); STS-B: Pearson and
Spearman correlation; MNLI: accuracy on dev_matched and on dev_mismatched; the rest: accuracy. A task's
score is the mean of its metrics; the GLUE score is the mean of the task scores (the leaderboard's "average
of per-task averages"). Over seeds, each metric is summarised by its median and the task score is the mean
of those medians, so the table's numbers add up by hand.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from bertforge import metrics

METRICS: dict[str, tuple[str, ...]] = {
    "cola": ("mcc",), "sst2": ("accuracy",), "mrpc": ("accuracy", "f1"), "stsb": ("pearson", "spearman"),
    "qqp": ("accuracy", "f1"), "mnli": ("accuracy_m", "accuracy_mm"), "qnli": ("accuracy",),
    "rte": ("accuracy",), "wnli": ("accuracy",),
}
POSITIVE = "1"  # MRPC's "paraphrase", QQP's "duplicate": the class whose F1 GLUE reports


def glue_metrics(task: str, gold: Sequence, predicted: Sequence, gold_mm: Sequence | None = None,
                 predicted_mm: Sequence | None = None) -> dict[str, float]:
    """A task's GLUE metrics on dev (MNLI: ``gold``/``predicted`` are dev_matched's, ``*_mm`` dev_mismatched's)."""
    if task == "cola":
        return {"mcc": metrics.matthews_corrcoef(gold, predicted)}
    if task in ("mrpc", "qqp"):
        return {"accuracy": metrics.accuracy(gold, predicted), "f1": metrics.f1(gold, predicted, positive=POSITIVE)}
    if task == "stsb":
        return {"pearson": metrics.pearson(gold, predicted), "spearman": metrics.spearman(gold, predicted)}
    if task == "mnli":
        if gold_mm is None or predicted_mm is None:
            raise ValueError("MNLI is scored on dev_matched and dev_mismatched: give both")
        return {"accuracy_m": metrics.accuracy(gold, predicted), "accuracy_mm": metrics.accuracy(gold_mm, predicted_mm)}
    return {"accuracy": metrics.accuracy(gold, predicted)}


def task_score(values: Mapping[str, float]) -> float:
    """The mean of a task's metrics (MRPC: (accuracy + F1) / 2)."""
    return statistics.fmean(values.values())


def medians(per_seed: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each metric's median over seeds."""
    return {name: statistics.median(seed[name] for seed in per_seed) for name in per_seed[0]}


def glue_score(task_scores: Mapping[str, float]) -> float:
    """The mean of the task scores (each already the mean of its metrics)."""
    if not task_scores:
        raise ValueError("no task scores")
    return statistics.fmean(task_scores.values())
