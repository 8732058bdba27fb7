"""Small random models of every exportable kind, and padded batches to compare a torch model with its
ONNX graph on."""

from __future__ import annotations

from pathlib import Path

import torch

from bertforge.config import BertConfig
from bertforge.export.onnx import example_inputs
from bertforge.tokenization import BertTokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ("a the good bad great awful fine poor movie film plot was is very and but it alice bob lives in paris "
         "london where does live who what . , ? !").split()
VOCAB = {token: i for i, token in enumerate(SPECIALS + WORDS)}
LABELS = ["neg", "pos", "neutral"]


def tiny_config(layers: int = 2, **extra) -> BertConfig:
    config = BertConfig.preset("tiny", vocab_size=len(VOCAB), num_hidden_layers=layers, max_position_embeddings=128)
    config.extra.update(extra)
    return config


def labelled(task: str, labels: list[str] = LABELS) -> dict:
    return {"bertforge_task": task, "id2label": {str(i): n for i, n in enumerate(labels)},
            "label2id": {n: i for i, n in enumerate(labels)}}


def save(model, path: Path) -> Path:
    model.save_pretrained(path)
    BertTokenizer(VOCAB).save_pretrained(path)
    return path


def batch(config: BertConfig, b: int, t: int, choices: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """(b, t) or (b, choices, t): random ids, two segments, rows padded more and more (the first full)."""
    return example_inputs(config, b, t, choices, seed=seed)
