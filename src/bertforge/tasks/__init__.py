"""The task table: for each family of the paper (§4), its head, reader, encoding, decoding and metrics.

A fine-tuning task is data, not a script: ``TASKS[name]`` says how to read examples, turn them into
model inputs, turn model outputs back into predictions, and score them. The training loop
(``bertforge.train.finetune``), ``evaluate`` and ``predict`` all go through this table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertforge import metrics
from bertforge.data import features as F
from bertforge.data import tasks as readers
from bertforge.data.peoples_daily import read_peoples_daily
from bertforge.data.squad import QAExample, read_squad, squad_evaluate
from bertforge.model import (BertForMultipleChoice, BertForQuestionAnswering, BertForSequenceClassification,
                             BertForTokenClassification)
from bertforge.model.feature_based import (BertFeatureBasedSequenceClassification,
                                           BertFeatureBasedTokenClassification)
from bertforge.tokenization import BertTokenizer


@dataclass
class DataOptions:
    """How to read a task's files and cut its inputs (the CLI's flags)."""

    format: str = "auto"
    text_field: str = "text"
    text_pair_field: str | None = "text_pair"
    label_field: str = "label"
    encoding: str = "utf-8"
    scheme: str = "BIO"  # tagging: BIO or IOBES
    max_length: int = 128
    doc_stride: int = 128
    max_query_length: int = 64
    n_best: int = 20
    max_answer_length: int = 30
    null_threshold: float = 0.0


class Task:
    """Defaults shared by the families; subclasses fill in what differs."""

    name: str
    head: type
    feature_head: type | None = None
    selection_metric: str
    has_labels = True  # a label vocabulary (id2label) is learned from the training data

    def read(self, path: str | Path, opts: DataOptions) -> list:
        raise NotImplementedError

    def label_names(self, examples: list) -> list[str]:
        return sorted({str(e.label) for e in examples if e.label is not None})

    def encode(self, tokenizer: BertTokenizer, examples: list, label2id: dict[str, int] | None,
               opts: DataOptions) -> list:
        raise NotImplementedError

    def outputs(self, out: Any) -> torch.Tensor:
        return out.logits

    def decode(self, examples: list, feats: list, outputs: list[np.ndarray], id2label: dict[int, str],
               opts: DataOptions) -> list:
        raise NotImplementedError

    def gold(self, examples: list) -> list:
        return [e.label for e in examples]

    def score(self, examples: list, predictions: list, labels: list[str] | None) -> dict[str, float]:
        raise NotImplementedError

    def to_json(self, prediction: Any, output: np.ndarray | None = None) -> dict:
        return {"label": prediction}


def _read_text_examples(path: str | Path, opts: DataOptions, regression: bool) -> list:
    fmt = opts.format
    if fmt == "auto":
        fmt = _sniff_text_format(Path(path))
    if fmt == "snli":
        examples, _dropped = readers.read_snli(path)
        return examples
    if fmt.startswith("glue:"):
        return readers.read_glue(path, fmt.split(":", 1)[1])
    if fmt == "fasttext":
        return readers.read_fasttext(path, encoding=opts.encoding)
    if fmt == "table":
        return readers.read_table(path, opts.text_field, opts.text_pair_field, opts.label_field,
                                  regression=regression)
    raise ValueError(f"unknown format {opts.format!r} for {path}; use table, snli, fasttext or glue:TASK")


def _sniff_text_format(path: Path) -> str:
    if path.suffix in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as f:
            first = f.readline()
        try:
            return "snli" if "gold_label" in json.loads(first) else "table"
        except json.JSONDecodeError:
            return "table"  # the table reader reports the line
    if path.suffix in (".csv", ".tsv"):
        return "table"
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline()
    return "fasttext" if first.startswith("__label__") else "table"


class ClassifyTask(Task):
    name, head, feature_head, selection_metric = ("classify", BertForSequenceClassification,
                                                  BertFeatureBasedSequenceClassification, "accuracy")

    def read(self, path, opts):
        return _read_text_examples(path, opts, regression=False)

    def encode(self, tokenizer, examples, label2id, opts):
        return F.encode_text(tokenizer, examples, label2id, opts.max_length).features

    def decode(self, examples, feats, outputs, id2label, opts):
        return [id2label[int(np.argmax(o))] for o in outputs]

    def score(self, examples, predictions, labels):
        gold = [str(e.label) for e in examples]
        positive = labels[-1] if labels and len(labels) == 2 else None
        result = metrics.classification_metrics(gold, predictions, labels, positive=positive)
        result.pop("per_label", None)
        return result

    def to_json(self, prediction, output=None):
        out = {"label": prediction}
        if output is not None:
            out["score"] = float(torch.softmax(torch.as_tensor(output, dtype=torch.float32), -1).max())
        return out


class RegressTask(Task):
    name, head, selection_metric, has_labels = "regress", BertForSequenceClassification, "spearman", False

    def read(self, path, opts):
        return _read_text_examples(path, opts, regression=True)

    def label_names(self, examples):
        return ["score"]

    def encode(self, tokenizer, examples, label2id, opts):
        return F.encode_text(tokenizer, examples, None, opts.max_length, regression=True).features

    def decode(self, examples, feats, outputs, id2label, opts):
        return [float(o[0]) for o in outputs]

    def score(self, examples, predictions, labels):
        return metrics.regression_metrics([float(e.label) for e in examples], predictions)

    def to_json(self, prediction, output=None):
        return {"score": prediction}


class ChoiceTask(Task):
    name, head, selection_metric, has_labels = "choice", BertForMultipleChoice, "accuracy", False

    def read(self, path, opts):
        return readers.read_swag(path)

    def label_names(self, examples):
        return []

    def encode(self, tokenizer, examples, label2id, opts):
        return F.encode_choices(tokenizer, examples, opts.max_length)

    def decode(self, examples, feats, outputs, id2label, opts):
        return [int(np.argmax(o)) for o in outputs]

    def score(self, examples, predictions, labels):
        return {"accuracy": metrics.accuracy([e.label for e in examples], predictions)}


class TagTask(Task):
    name, head, feature_head, selection_metric = ("tag", BertForTokenClassification,
                                                  BertFeatureBasedTokenClassification, "f1")

    def read(self, path, opts):
        fmt = opts.format
        if fmt == "auto":
            fmt = "peoples-daily" if "/" in Path(path).open(encoding="utf-8").readline() else "conll"
        if fmt == "peoples-daily":
            return read_peoples_daily(path, scheme=opts.scheme)
        if fmt == "conll":
            return readers.read_conll(path, scheme=opts.scheme)
        raise ValueError(f"unknown tagging format {opts.format!r} for {path}; use conll or peoples-daily")

    def label_names(self, examples):
        return sorted({t for e in examples if e.tags for t in e.tags})

    def encode(self, tokenizer, examples, label2id, opts):
        return F.encode_tagged(tokenizer, examples, label2id, opts.max_length, stride=opts.max_length // 4)

    def decode(self, examples, feats, outputs, id2label, opts):
        return F.stitch_tags(feats, outputs, id2label)

    def gold(self, examples):
        return [e.tags for e in examples]

    def score(self, examples, predictions, labels):
        result = metrics.entity_metrics([e.tags for e in examples], predictions, scheme=self.scheme_of(labels))
        result.pop("per_type", None)
        return result

    @staticmethod
    def scheme_of(labels):
        return "IOBES" if labels and any(t.startswith(("E-", "S-")) for t in labels) else "BIO"

    def to_json(self, prediction, output=None):
        return {"tags": prediction}


class QATask(Task):
    name, head, selection_metric, has_labels = "qa", BertForQuestionAnswering, "f1", False

    def read(self, path, opts):
        examples, _skipped = read_squad(path)
        return examples

    def label_names(self, examples):
        return []

    def encode(self, tokenizer, examples, label2id, opts):
        return F.encode_qa(tokenizer, examples, opts.max_length, opts.doc_stride, opts.max_query_length)

    def outputs(self, out):
        return torch.stack([out.start_logits, out.end_logits], dim=-1)  # (B, T, 2)

    def decode(self, examples, feats, outputs, id2label, opts):
        version_2 = any(e.is_impossible for e in examples)
        predictions, null_diffs = F.decode_qa(examples, feats, [o[:, 0] for o in outputs], [o[:, 1] for o in outputs],
                                              n_best=opts.n_best, max_answer_length=opts.max_answer_length,
                                              null_threshold=opts.null_threshold, version_2=version_2)
        return [predictions[e.id] for e in examples]

    def gold(self, examples):
        return [e.answers for e in examples]

    def score(self, examples: list[QAExample], predictions, labels):
        result = squad_evaluate(examples, {e.id: p for e, p in zip(examples, predictions)})
        return {k: v for k, v in result.items() if k in ("exact_match", "f1", "total")}

    def to_json(self, prediction, output=None):
        return {"answer": prediction}


TASKS: dict[str, Task] = {t.name: t for t in (ClassifyTask(), RegressTask(), ChoiceTask(), TagTask(), QATask())}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]
