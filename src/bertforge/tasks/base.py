"""A fine-tuning task family as data: how to read its files, turn examples into model inputs, turn
model outputs back into predictions, and score them. The training loop, ``evaluate``, ``predict``
and the server all go through this interface; no caller branches on a task's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertforge.data import columnar
from bertforge.errors import DataFormatError
from bertforge.io.jsonl import read_lines
from bertforge.tasks.features import Feature
from bertforge.data.options import DataOptions
from bertforge.tokenization import BertTokenizer


class Task:
    """Defaults shared by the families; each family's module fills in what differs."""

    name: str
    head_kind: str  # the head it needs (model/registry.py): each model family's class for it, or TaskModel's layer
    selection_metric: str  # the dev metric that picks the best epoch and seed
    has_labels = True  # a label vocabulary (id2label) is learned from the training data
    input_fields: tuple[str, ...] = ("text",)  # the JSON fields of one prediction input

    @property
    def head(self) -> type:
        """The BERT head class of this task."""
        from bertforge.model.registry import get_family

        return get_family("bert").heads[self.head_kind]

    def describes(self, settings: dict[str, Any]) -> bool:
        """Whether a head fine-tuned elsewhere, of this task's head kind, with config.json ``settings``
        (problem_type...), was fine-tuned for this task."""
        return True

    # --- reading ------------------------------------------------------------------------------

    def read(self, path: str | Path, opts: DataOptions) -> list:
        """Labelled examples of a file."""
        raise NotImplementedError

    def read_inputs(self, path: str | Path, opts: DataOptions) -> list:
        """Unlabelled examples: one per line of a text file (a JSON object with the task's fields, or plain text),
        or one per row of columnar data (Parquet, Arrow, a datasets folder), whose columns are those fields."""
        import json

        path = columnar.require_source(path, setting="input", what="input file")
        if columnar.detect(path):
            return self._columnar_inputs(path, opts)
        examples = []
        for lineno, line in read_lines(path, opts.encoding):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            record = None
            if line.lstrip().startswith("{"):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataFormatError(f"malformed JSON: {e.msg} (column {e.colno})", path=path,
                                          line=lineno) from None
            examples.append(self.input_example(record, line, f"line-{lineno}", path, lineno, opts))
        if not examples:
            raise DataFormatError("no input lines", path=path)
        return examples

    def _columnar_inputs(self, path: str | Path, opts: DataOptions) -> list:
        """A row is read as the JSON object of a line would be, from the columns the task may read only (a
        table's other columns, SQuAD's answers say, are never decoded); errors name the row."""
        table = columnar.open_columnar(path)
        wanted = self.input_columns(opts)
        examples = []
        for row, record in table.rows([], optional=[c for c in table.columns if c in wanted]):
            try:
                examples.append(self.input_example(self.input_record(record, opts), "", f"row-{row}", path, row,
                                                   opts))
            except DataFormatError as e:
                if e.field is not None:
                    table.require([e.field], row=row)  # a field the table lacks: say which columns it has
                raise
        if not examples:
            raise DataFormatError("no rows", path=path)
        return examples

    def input_columns(self, opts: DataOptions) -> set[str]:
        """The columns of a table that ``input_record`` and ``input_example`` may read."""
        return set(self.input_fields)

    def input_record(self, record: dict, opts: DataOptions) -> dict:
        """A columnar row as the JSON object ``input_example`` reads; a family maps Hugging Face's column names
        (the ones its training reader takes) to its own fields here."""
        return record

    def input_example(self, record: dict | None, line: str, key: str, path: str | Path, lineno: int,
                      opts: DataOptions):
        """One prediction input from a JSON ``record`` (or, when None, the plain text ``line``); ``opts``
        names the fields where the task has field flags (--text-field)."""
        raise NotImplementedError

    @staticmethod
    def field(record: dict | None, name: str, path: str | Path, lineno: int, kind: type = str) -> Any:
        """``record[name]``, of type ``kind``; an error naming file, line and field otherwise."""
        if record is None:
            raise DataFormatError(f"expected a JSON object with field {name!r}", path=path, line=lineno,
                                  field=name)
        if name not in record:
            raise DataFormatError(f"missing field {name!r} (fields: {', '.join(record)})", path=path,
                                  line=lineno, field=name)
        if not isinstance(record[name], kind):
            raise DataFormatError(f"field {name!r} should be {kind.__name__}, got {type(record[name]).__name__}",
                                  path=path, line=lineno, field=name)
        return record[name]

    # --- labels and the model's task settings -------------------------------------------------

    def label_names(self, examples: list) -> list[str]:
        return sorted({str(e.label) for e in examples if e.label is not None})

    def model_settings(self, labels: list[str], train_examples: list) -> dict[str, Any]:
        """What the model's config.json records for this task (label maps, problem type...)."""
        return {"num_labels": len(labels), "id2label": {str(i): n for i, n in enumerate(labels)},
                "label2id": {n: i for i, n in enumerate(labels)}}

    # --- model inputs and outputs -------------------------------------------------------------

    def encode(self, tokenizer: BertTokenizer, examples: list, label2id: dict[str, int] | None,
               opts: DataOptions) -> list[Feature]:
        raise NotImplementedError

    def loss_items(self, batch: dict[str, torch.Tensor]) -> int:
        """How many items the head's mean loss averages over in ``batch`` (examples by default)."""
        return len(batch["input_ids"])

    def outputs(self, out: Any) -> torch.Tensor:
        """The tensor of a model output that ``decode`` reads: (B, ...) per feature."""
        return out.logits

    def decode(self, examples: list, feats: list[Feature], outputs: list[np.ndarray], settings: dict[str, Any],
               opts: DataOptions) -> list:
        """Predictions, one per example; ``settings`` is the model's config (``id2label``...)."""
        raise NotImplementedError

    # --- scores and output ---------------------------------------------------------------------

    def score(self, examples: list, predictions: list, labels: list[str] | None) -> dict[str, float]:
        raise NotImplementedError

    def to_json(self, prediction: Any, output: np.ndarray | None = None) -> dict:
        return {"label": prediction}

    def report(self, out_dir: Path, examples: list, predictions: list, labels: list[str]) -> None:
        """Extra artefacts of a finished fine-tuning run (a confusion matrix...); none by default."""


def id2label(settings: dict[str, Any]) -> dict[int, str]:
    """The label names of a model's config, by class id."""
    return {int(i): name for i, name in settings.get("id2label", {}).items()}
