"""bertforge: pre-train, fine-tune, evaluate and serve BERT, with transformers-compatible checkpoints.

The names users reach for are importable from the top (``from bertforge import BertModel``), loaded on
first use so that ``import bertforge`` and ``bertforge --help`` stay fast (no torch until needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_EXPORTS = {
    "BertConfig": "bertforge.config",
    "BertTokenizer": "bertforge.tokenization",
    "BertModel": "bertforge.model",
    "BertForPreTraining": "bertforge.model",
    "BertForSequenceClassification": "bertforge.model",
    "BertForMultipleChoice": "bertforge.model",
    "BertForTokenClassification": "bertforge.model",
    "BertForQuestionAnswering": "bertforge.model",
    "encode": "bertforge.inference",
    "fill_mask": "bertforge.inference",
    "Predictor": "bertforge.inference",
    "fetch": "bertforge.data.fetch",
    "pretrain": "bertforge.train.pretrain",
    "PretrainArgs": "bertforge.train.settings",
    "finetune": "bertforge.train.finetune",
    "FinetuneArgs": "bertforge.train.settings",
    "DataOptions": "bertforge.data.options",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from bertforge.config import BertConfig
    from bertforge.data.fetch import fetch
    from bertforge.inference import Predictor, encode, fill_mask
    from bertforge.model import (BertForMultipleChoice, BertForPreTraining, BertForQuestionAnswering,
                                 BertForSequenceClassification, BertForTokenClassification, BertModel)
    from bertforge.data.options import DataOptions
    from bertforge.tokenization import BertTokenizer
    from bertforge.train.finetune import finetune
    from bertforge.train.pretrain import pretrain
    from bertforge.train.settings import FinetuneArgs, PretrainArgs


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bertforge' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
