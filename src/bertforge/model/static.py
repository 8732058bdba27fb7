"""Static word vectors: word2vec (gensim's skip-gram) trained on the same pieces every other model reads,
the non-contextual first generation that contextual encoders replaced. Used frozen, under a task model
(``model/task_model.py``); a model directory holds config.json (``"model_type": "static"``), the vectors
as model.safetensors, and the tokenizer."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bertforge.errors import ConfigError
from bertforge.io.atomic import atomic_write_text
from bertforge.io.jsonl import read_json_object
from bertforge.io.weights import read_state_dict, save_state_dict


@dataclass
class StaticConfig:
    vocab_size: int
    hidden_size: int = 128  # vector size
    window: int = 5
    epochs: int = 5
    seed: int = 1

    def to_dict(self) -> dict:
        return {"model_type": "static", **asdict(self)}

    def validate(self) -> None:
        for name in ("vocab_size", "hidden_size", "window", "epochs"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"field {name!r} must be a positive integer, got {getattr(self, name)!r}")

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "StaticConfig":
        return cls.from_dict(read_json_object(path), source=path)

    @classmethod
    def from_dict(cls, data: dict, source: str | os.PathLike | None = None) -> "StaticConfig":
        data = {k: v for k, v in data.items() if k not in ("model_type", "architectures")}
        try:
            config = cls(**data)
        except TypeError as e:
            raise ConfigError(f"not a static word-vector config: {e}", source=source) from None
        config.validate()
        return config


class StaticEmbeddings(nn.Module):
    """One frozen vector per piece, whatever its context: (B, T) ids -> (B, T, hidden_size)."""

    def __init__(self, config: StaticConfig):
        super().__init__()
        self.config = config
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embeddings.requires_grad_(False)
        self.output_dim = self.hidden_size = config.hidden_size

    def forward(self, input_ids, token_type_ids=None, attention_mask=None) -> torch.Tensor:
        return self.embeddings(input_ids)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.config.save(path / "config.json")
        save_state_dict(self.state_dict(), path / "model.safetensors")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "StaticEmbeddings":
        model = cls(StaticConfig.load(Path(path) / "config.json"))
        model.load_state_dict(read_state_dict(Path(path)))
        return model


def train_word2vec(sequences: Iterable[list[int]], config: StaticConfig, workers: int = 1) -> StaticEmbeddings:
    """Skip-gram vectors for every piece id (pieces never seen keep a small random vector)."""
    from gensim.models import Word2Vec

    sentences = [[str(i) for i in seq] for seq in sequences]
    w2v = Word2Vec(sentences, vector_size=config.hidden_size, window=config.window, min_count=1, sg=1,
                   epochs=config.epochs, seed=config.seed, workers=workers)
    rng = np.random.default_rng(config.seed)
    vectors = rng.normal(0, 0.01, (config.vocab_size, config.hidden_size)).astype(np.float32)
    for piece, row in zip(w2v.wv.index_to_key, w2v.wv.vectors):
        vectors[int(piece)] = row
    model = StaticEmbeddings(config)
    model.embeddings.weight.data.copy_(torch.from_numpy(vectors))
    return model
