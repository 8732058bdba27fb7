"""Multiple choice (SWAG): each (context, ending) pair encoded as its own row, one score per row, the
highest-scoring ending wins; accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bertforge import metrics
from bertforge.data import columnar, readers
from bertforge.data.examples import ChoiceExample
from bertforge.errors import DataFormatError
from bertforge.model.registry import CHOICE
from bertforge.tasks.base import Task
from bertforge.tasks.features import EncodedTexts, Feature, check_max_length, pack, truncated_lengths
from bertforge.tokenization import BertTokenizer


def encode_choices(tokenizer: BertTokenizer, examples: Sequence[ChoiceExample], max_length: int) -> EncodedTexts:
    """One feature per question with C rows ``[CLS] context [SEP] ending_c [SEP]``; label = right ending.

    ``truncated`` counts questions where any row was cut (Google's pair rule).
    """
    check_max_length(max_length, 3)
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
            len_a, len_b = truncated_lengths(len(a), len(b), max_length)
            cut |= len_a < len(a) or len_b < len(b)
            ids, tt = pack(tokenizer, a[:len_a], b[:len_b])
            rows.append(ids)
            types.append(tt)
        k += len(example.endings)
        truncated += cut
        features.append(Feature(rows, types, example.label, i))
    return EncodedTexts(features, truncated)


class ChoiceTask(Task):
    name, selection_metric, has_labels = "choice", "accuracy", False
    head_kind = CHOICE
    input_fields = ("context", "endings")

    def read(self, path, opts):
        path = columnar.source(path)
        if opts.format not in ("auto", "swag"):
            raise DataFormatError(f"format {opts.format!r} is not a multiple-choice format", path=path,
                                  hint="use swag")
        return readers.read_swag(path, opts.encoding)

    def input_columns(self, opts):
        return {*self.input_fields, *readers.SWAG_FIELDS}

    def input_record(self, record, opts):
        """SWAG's columns (as training reads them) when there are no context and endings columns."""
        if "endings" in record or not set(readers.SWAG_FIELDS) <= record.keys():
            return record
        start = record["sent2"]
        return {"context": record["sent1"], "endings": [f"{start} {record[name]}" for name in readers.SWAG_ENDINGS]}

    def input_example(self, record, line, key, path, lineno, opts):
        endings = self.field(record, "endings", path, lineno, list)
        if not endings or not all(isinstance(e, str) for e in endings):
            raise DataFormatError("field 'endings' should be a non-empty list of strings", path=path,
                                  line=lineno, field="endings")
        return ChoiceExample(self.field(record, "context", path, lineno), endings, None, key)

    def label_names(self, examples):
        return []

    def model_settings(self, labels, train_examples):
        return {}

    def encode(self, tokenizer, examples, label2id, opts):
        return encode_choices(tokenizer, examples, opts.max_length).features

    def decode(self, examples, feats, outputs, settings, opts):
        return [int(np.argmax(o)) for o in outputs]

    def score(self, examples, predictions, labels):
        return {"accuracy": metrics.accuracy([e.label for e in examples], predictions)}

    def to_json(self, prediction, output=None):
        return {"label": prediction}
