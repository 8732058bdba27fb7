"""Evaluation metrics for the fine-tuning tasks, as fractions in [0, 1].

Classification (accuracy, F1, Matthews correlation for CoLA), regression (Pearson and Spearman
for STS-B), entity-level tagging scores (seqeval) and a confusion-matrix plot. SQuAD's official
percent-scale scores live in ``bertforge.data.squad``. scikit-learn, scipy and seqeval are the
``metrics`` extra and are imported when first used.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Hashable, Sequence

import numpy as np


def _need(module: str) -> Any:
    """Import an optional dependency, saying how to install it when missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{module} is needed for this metric: "
                          "pip install 'bertforge[metrics]'") from None


def _check_lengths(y_true: Sequence, y_pred: Sequence) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("no items to score")


def accuracy(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> float:
    """Fraction of predictions equal to the truth."""
    _check_lengths(y_true, y_pred)
    return sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)


def f1(y_true: Sequence[Hashable], y_pred: Sequence[Hashable], positive: Hashable | None = None,
       labels: Sequence[Hashable] | None = None) -> float:
    """Binary F1 of the ``positive`` label (GLUE's MRPC/QQP F1), or macro F1 when it is None.

    Macro F1 averages over ``labels`` (default: every label in y_true or y_pred).
    """
    _check_lengths(y_true, y_pred)
    sk = _need("sklearn.metrics")
    if positive is not None:
        labels = [positive]  # the macro average over one label is that label's F1
    return float(sk.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def matthews_corrcoef(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> float:
    """Matthews correlation coefficient (CoLA's metric), in [-1, 1]; 0 when undefined."""
    _check_lengths(y_true, y_pred)
    return float(_need("sklearn.metrics").matthews_corrcoef(y_true, y_pred))


def pearson(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Pearson correlation (nan if either side is constant)."""
    _check_lengths(y_true, y_pred)
    return float(_need("scipy.stats").pearsonr(y_true, y_pred)[0])


def spearman(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Spearman rank correlation (nan if either side is constant)."""
    _check_lengths(y_true, y_pred)
    return float(_need("scipy.stats").spearmanr(y_true, y_pred)[0])


def classification_metrics(y_true: Sequence[Hashable], y_pred: Sequence[Hashable],
                           labels: Sequence[Hashable], positive: Hashable | None = None
                           ) -> dict[str, Any]:
    """Accuracy, macro F1, MCC, per-label precision/recall/F1/support; F1 of ``positive`` if given."""
    _check_lengths(y_true, y_pred)
    unknown = (set(y_true) | set(y_pred)) - set(labels)
    if unknown:
        raise ValueError(f"labels {sorted(map(repr, unknown))} are not in {list(labels)}")
    sk = _need("sklearn.metrics")
    p, r, f, s = sk.precision_recall_fscore_support(y_true, y_pred, labels=list(labels),
                                                    zero_division=0)
    out: dict[str, Any] = {
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": float(np.mean(f)),
        "mcc": matthews_corrcoef(y_true, y_pred),
        "per_label": {label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                              "support": int(s[i])} for i, label in enumerate(labels)},
    }
    if positive is not None:
        out["f1"] = out["per_label"][positive]["f1"]
    return out


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """Pearson and Spearman correlation and mean squared error (STS-B)."""
    _check_lengths(y_true, y_pred)
    t, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    return {"pearson": pearson(t, p), "spearman": spearman(t, p),
            "mse": float(np.mean((t - p) ** 2))}


def entity_metrics(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]],
                   scheme: str = "BIO") -> dict[str, Any]:
    """Entity-level micro precision/recall/F1 and per-type scores, with seqeval.

    "BIO" scores as conlleval does (seqeval's default mode); "IOBES" uses seqeval's strict mode
    with the IOBES scheme, where an entity counts only if its tags are a well-formed B..E or S.
    """
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"{len(true_tags)} true sentences but {len(pred_tags)} predicted")
    for i, (t, p) in enumerate(zip(true_tags, pred_tags)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(t)} true tags but {len(p)} predicted")
    seqeval = _need("seqeval.metrics")
    if scheme == "BIO":
        kwargs: dict[str, Any] = {}
    elif scheme == "IOBES":
        kwargs = {"mode": "strict", "scheme": _need("seqeval.scheme").IOBES}
    else:
        raise ValueError(f"unknown tag scheme {scheme!r}; use 'BIO' or 'IOBES'")
    t, p = [list(s) for s in true_tags], [list(s) for s in pred_tags]
    if not any(tag != "O" for s in t + p for tag in s):
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "per_type": {}}
    report = seqeval.classification_report(t, p, output_dict=True, zero_division=0, **kwargs)
    micro = report["micro avg"]
    per_type = {name: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                       "f1": float(v["f1-score"]), "support": int(v["support"])}
                for name, v in report.items() if not name.endswith(" avg")}
    return {"precision": float(micro["precision"]), "recall": float(micro["recall"]),
            "f1": float(micro["f1-score"]), "per_type": per_type}


def save_confusion_matrix(y_true: Sequence[Hashable], y_pred: Sequence[Hashable],
                          labels: Sequence[Hashable], path_png: str | Path) -> np.ndarray:
    """Plot the confusion matrix (rows true, columns predicted) to a PNG, atomically; return it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _check_lengths(y_true, y_pred)
    index = {label: i for i, label in enumerate(labels)}
    unknown = (set(y_true) | set(y_pred)) - set(index)
    if unknown:
        raise ValueError(f"labels {sorted(map(repr, unknown))} are not in {list(labels)}")
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)  # (true, predicted)
    for t, p in zip(y_true, y_pred):
        matrix[index[t], index[p]] += 1

    size = 1.5 + 0.6 * len(labels)
    fig = Figure(figsize=(size + 1, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(im, ax=ax)
    names = [str(label) for label in labels]
    ax.set_xticks(range(len(labels)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    fig.tight_layout()

    path_png = Path(path_png)
    path_png.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path_png.parent, prefix=f".{path_png.name}.", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png")
        os.replace(tmp, path_png)
    except BaseException:
        os.unlink(tmp)
        raise
    return matrix
