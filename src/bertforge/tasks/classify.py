"""Sentence and sentence-pair classification (MNLI, SST-2, SNLI...) and regression (STS-B): a head on
the pooled [CLS] vector; accuracy/F1/MCC, or Pearson/Spearman."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from bertforge import metrics
from bertforge.data import columnar, readers
from bertforge.data.examples import TextExample
from bertforge.errors import DataFormatError
from bertforge.model.registry import SEQUENCE
from bertforge.tasks.base import Task, id2label
from bertforge.tasks.features import EncodedTexts, Feature, check_max_length, pack, truncated_lengths
from bertforge.data.options import DataOptions
from bertforge.tokenization import BertTokenizer


def read_text_examples(path: str | Path, opts: DataOptions, regression: bool) -> list[TextExample]:
    """Texts (or pairs) with labels from any of the classification formats (``opts.format``), or from columnar
    data (Parquet, Arrow, datasets) with a table's or SNLI's columns."""
    path = columnar.source(path)
    fmt = opts.format if opts.format != "auto" else _sniff_format(path, opts.encoding)
    if columnar.detect(path) and fmt not in ("table", "jsonl", "snli"):
        raise DataFormatError(f"format {fmt!r} reads text files, and this is Parquet or Arrow data", path=path,
                              hint="use the format auto, table or snli")
    if fmt == "snli":
        return readers.read_snli(path, opts.encoding)[0]
    if fmt.startswith("glue:"):
        return readers.read_glue(path, fmt.split(":", 1)[1], encoding=opts.encoding)
    if fmt == "fasttext":
        return readers.read_fasttext(path, encoding=opts.encoding)
    if fmt in ("table", "jsonl"):
        return readers.read_table(path, opts.text_field, opts.text_pair_field, opts.label_field,
                                  regression=regression, encoding=opts.encoding)
    raise DataFormatError(f"format {fmt!r} is not a classification format", path=path,
                          hint="use table, snli, fasttext or glue:TASK")


def _sniff_format(path: Path, encoding: str) -> str:
    if columnar.detect(path):
        columns = set(columnar.open_columnar(path).columns)
        return "snli" if "gold_label" in columns or {"premise", "hypothesis"} <= columns else "table"
    with open(path, encoding=encoding, errors="replace") as f:
        first = f.readline()
    if path.suffix in (".jsonl", ".json"):
        try:
            return "snli" if "gold_label" in json.loads(first) else "table"
        except (json.JSONDecodeError, TypeError):
            return "table"  # the table reader reports the line
    if path.suffix in (".csv", ".tsv"):
        return "table"
    return "fasttext" if first.startswith("__label__") else "table"


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
    check_max_length(max_length, 3 if any(e.text_pair is not None for e in examples) else 2)
    firsts = tokenizer.piece_ids([e.text for e in examples])
    paired = [i for i, e in enumerate(examples) if e.text_pair is not None]
    seconds = dict(zip(paired, tokenizer.piece_ids([examples[i].text_pair for i in paired])))
    features, truncated = [], 0
    for i, example in enumerate(examples):
        a, b = firsts[i], seconds.get(i)
        len_a, len_b = truncated_lengths(len(a), None if b is None else len(b), max_length)
        truncated += len_a < len(a) or (b is not None and len_b < len(b))
        ids, types = pack(tokenizer, a[:len_a], None if b is None else b[:len_b])
        features.append(Feature(ids, types, _text_label(example, label2id, regression), i))
    return EncodedTexts(features, truncated)

REGRESSION = "regression"  # transformers' problem_type of a one-output regression head


class ClassifyTask(Task):
    name, selection_metric = "classify", "accuracy"
    head_kind = SEQUENCE
    input_fields = ("text", "text_pair")

    def read(self, path, opts):
        return read_text_examples(path, opts, regression=False)

    def describes(self, settings):
        return settings.get("problem_type") != REGRESSION

    def input_columns(self, opts):
        return {opts.text_field, opts.text_pair_field or "text_pair", "premise", "hypothesis"}

    def input_record(self, record, opts):
        """SNLI's premise and hypothesis (as training reads them) when the text fields are not columns."""
        if opts.text_field not in record and {"premise", "hypothesis"} <= record.keys():
            return {opts.text_field: record["premise"], opts.text_pair_field or "text_pair": record["hypothesis"]}
        return record

    def input_example(self, record, line, key, path, lineno, opts):
        if record is None:
            return TextExample(line, None, None, key)
        pair = record.get(opts.text_pair_field) if opts.text_pair_field else None
        if pair is not None and not isinstance(pair, str):
            raise DataFormatError(f"field {opts.text_pair_field!r} should be str, got {type(pair).__name__}",
                                  path=path, line=lineno, field=opts.text_pair_field)
        return TextExample(self.field(record, opts.text_field, path, lineno), pair, None, key)

    def encode(self, tokenizer, examples, label2id, opts):
        return encode_text(tokenizer, examples, label2id, opts.max_length).features

    def decode(self, examples, feats, outputs, settings, opts):
        names = id2label(settings)
        return [names[int(np.argmax(o))] for o in outputs]

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

    def report(self, out_dir, examples, predictions, labels):
        metrics.save_confusion_matrix([str(e.label) for e in examples], predictions, labels,
                                      Path(out_dir) / "confusion_matrix.png")


class RegressTask(ClassifyTask):
    name, selection_metric, has_labels = "regress", "spearman", False

    def read(self, path, opts):
        return read_text_examples(path, opts, regression=True)

    def describes(self, settings):
        return settings.get("problem_type") == REGRESSION

    def label_names(self, examples):
        return ["score"]

    def model_settings(self, labels, train_examples):
        return {"num_labels": 1, "problem_type": REGRESSION, "id2label": {"0": "score"}}

    def encode(self, tokenizer, examples, label2id, opts):
        return encode_text(tokenizer, examples, None, opts.max_length, regression=True).features

    def decode(self, examples, feats, outputs, settings, opts):
        return [float(o[0]) for o in outputs]

    def score(self, examples, predictions, labels):
        return metrics.regression_metrics([float(e.label) for e in examples], predictions)

    def to_json(self, prediction, output=None):
        return {"score": prediction}

    def report(self, out_dir, examples, predictions, labels):
        pass
