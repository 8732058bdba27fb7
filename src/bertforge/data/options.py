"""How to read a task's files and cut its inputs: the data flags of finetune, evaluate and predict."""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from bertforge.errors import UsageError
from bertforge.options import check, option

FORMATS = ("auto", "table", "snli", "fasttext", "swag", "conll", "peoples-daily", "jsonl", "squad")


@dataclass
class DataOptions:
    """How to read a task's files and cut its inputs (the CLI's data flags)."""

    format: str = option("auto", "file format: auto (by name and content); classify/regress: table (CSV/TSV/"
                         "JSONL), snli, fasttext, glue:TASK (MNLI, QQP, QNLI, SST-2, CoLA, STS-B, MRPC, RTE, "
                         "WNLI); choice: swag; tag: conll, peoples-daily, jsonl (words, tags); qa: squad",
                         group="data")
    text_field: str = option("text", "table/JSONL field with the text", group="data")
    text_pair_field: str | None = option("text_pair", "table/JSONL field with the second text of a pair",
                                         group="data")
    label_field: str = option("label", "table/JSONL field with the label", group="data")
    encoding: str = option("utf-8", "text encoding of the data files", group="data")
    scheme: str = option("BIO", "tagging scheme", choices=("BIO", "IOBES"), group="data")
    max_length: int = option(128, "pieces per input (QA: per window)", min=8, max=4096, group="data")
    doc_stride: int | None = option(None, "QA: pieces between the starts of consecutive context windows "
                                    "(Google's doc_stride, a step, not an overlap); default: half a window, so "
                                    "every context piece is seen in two windows", min=1, group="data")
    max_query_length: int = option(64, "QA: question pieces kept", min=1, group="data")
    n_best: int = option(20, "QA: candidate spans kept per question (the answer is the best valid span, found "
                         "exactly over every start and end, so this bounds the candidates, not the answer)", min=1,
                         group="data")
    max_answer_length: int = option(30, "QA: longest answer in pieces", min=1, group="data")
    null_threshold: float = option(0.0, "SQuAD v2: answer '' when the no-answer score beats the best span "
                                   "by more than this", group="data")

    def __post_init__(self) -> None:
        check(self)
        if not (self.format in FORMATS or self.format.startswith("glue:")):
            raise UsageError(f"unknown format {self.format!r}", setting="format",
                             hint=f"use one of {', '.join(FORMATS)} or glue:TASK")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise UsageError(f"unknown encoding {self.encoding!r}", setting="encoding",
                             hint="use a Python codec name such as utf-8, latin-1 or cp1252") from None
