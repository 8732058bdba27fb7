"""A model directory read once: its family and config (config.json parsed once), its task record and its
tokenizer, handed to whatever loads, fine-tunes, predicts with or exports the model, as `transformers`'
``from_pretrained`` reads config.json once and passes the config object on."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from bertforge.errors import require_dir
from bertforge.io.jsonl import read_json_object
from bertforge.model.registry import ModelFamily, read_config_file
from bertforge.model.task_model import TASK_FILE
from bertforge.tokenization import BertTokenizer


@dataclass(frozen=True)
class ModelDir:
    path: Path
    family: ModelFamily
    config: Any  # the family's config class
    task: dict[str, Any] | None = None  # task.json: a TaskModel's settings; None for a family head or an encoder

    @classmethod
    def read(cls, path: str | os.PathLike | ModelDir) -> ModelDir:
        """Read and check ``path``'s config.json (an unknown model_type is a ConfigError naming the file and the
        known types) and task.json; a ModelDir is returned as it is."""
        if isinstance(path, ModelDir):
            return path
        path = require_dir(path, what="model directory")
        family, config = read_config_file(path / "config.json")
        task_file = path / TASK_FILE
        task = read_json_object(task_file, what="task file") if task_file.is_file() else None
        return cls(path, family, config, task)

    @cached_property
    def tokenizer(self) -> BertTokenizer:
        return BertTokenizer.from_pretrained(self.path)

    @property
    def task_name(self) -> str | None:
        """The task the model was fine-tuned for by bertforge (task.json, or config.json's bertforge_task)."""
        return (self.task or getattr(self.config, "extra", None) or {}).get("bertforge_task")
