"""A fine-tuned model at work: load its directory, predict for examples, evaluate on a labelled file,
or write one JSON line of predictions per input line. Training imports this for its dev scores;
this never imports training code (a server uses it too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertforge.config import BertConfig
from bertforge.data.batching import bucketed_batches
from bertforge.data.readers import check_labels
from bertforge.errors import ConfigError, require_dir
from bertforge.io.atomic import atomic_path
from bertforge.tasks import TASKS, DataOptions, Task, get_task
from bertforge.tasks.features import Feature, collate
from bertforge.tokenization import BertTokenizer

MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
TARGETS = ("labels", "start_positions", "end_positions")


def model_inputs(batch: dict[str, torch.Tensor], device: torch.device, with_targets: bool = False
                 ) -> dict[str, torch.Tensor]:
    """The keyword arguments of a head's forward from a collated batch, on ``device``."""
    keys = MODEL_INPUTS + (tuple(k for k in TARGETS if k in batch) if with_targets else ())
    return {k: batch[k].to(device) for k in keys}


@torch.no_grad()
def run_model(model, task: Task, feats: list[Feature], batch_size: int, pad_id: int, device: torch.device
              ) -> list[np.ndarray]:
    """The task outputs of every feature, in order; batches sorted by length to avoid padding."""
    was_training = model.training
    model.eval()
    results: list[np.ndarray | None] = [None] * len(feats)
    for batch_idx in bucketed_batches([f.length for f in feats], batch_size, shuffle=False):
        batch = collate([feats[i] for i in batch_idx], pad_id)
        values = task.outputs(model(**model_inputs(batch, device))).float().cpu().numpy()
        for row, i in enumerate(batch_idx):
            n = len(feats[i].input_ids) if values.ndim >= 3 else None  # per-token outputs: trim the padding
            results[i] = values[row][:n] if n is not None else values[row]
    model.train(was_training)
    return results


def predict_examples(model, task: Task, tokenizer: BertTokenizer, examples: list, opts: DataOptions,
                     batch_size: int, device: torch.device) -> tuple[list, list[np.ndarray]]:
    """(per-example predictions, raw outputs per feature) of a model on examples."""
    settings = model.config.extra
    feats = task.encode(tokenizer, examples, getattr(model, "label2id", None) if task.has_labels else None, opts)
    outputs = run_model(model, task, feats, batch_size, tokenizer.pad_token_id, device)
    return task.decode(examples, feats, outputs, settings, opts), outputs


def task_of(config: BertConfig, source: str | Path) -> Task:
    """The task a model directory was fine-tuned for, from its config.json."""
    name = config.extra.get("bertforge_task")
    architecture = (config.extra.get("architectures") or [""])[0]
    if name is None:  # a checkpoint fine-tuned elsewhere: infer the task from its head
        by_head = {t.head.__name__: t.name for t in TASKS.values() if t.name != "regress"}
        name = by_head.get(architecture)
        if name == "classify" and config.extra.get("problem_type") == "regression":
            name = "regress"
    if name is None:
        raise ConfigError(f"cannot tell which task this model was fine-tuned for (architectures: "
                          f"{architecture or 'none'})", source=Path(source) / "config.json",
                          hint="fine-tune it with `bertforge finetune`")
    return get_task(name)


class Predictor:
    """A fine-tuned model directory ready to predict: its task, model, tokenizer and settings."""

    def __init__(self, task: Task, model, tokenizer: BertTokenizer, device: torch.device | None = None):
        self.task, self.model, self.tokenizer = task, model.eval(), tokenizer
        self.device = device or next(model.parameters()).device

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "Predictor":
        path = require_dir(path, flag="--model", what="model directory")
        config = BertConfig.from_json_file(path / "config.json")
        task = task_of(config, path)
        architecture = (config.extra.get("architectures") or [""])[0]
        head = task.feature_head if task.feature_head and "FeatureBased" in architecture else task.head
        model = head.from_pretrained(path).to(device)
        return cls(task, model, BertTokenizer.from_pretrained(path), torch.device(device))

    @property
    def labels(self) -> list[str]:
        """The model's label names, by class id (empty for tasks without a label vocabulary)."""
        return [self.model.id2label[i] for i in sorted(self.model.id2label)] if self.task.has_labels else []

    def predict(self, examples: list, opts: DataOptions, batch_size: int = 128) -> tuple[list, list[np.ndarray]]:
        """(per-example predictions, raw outputs per feature)."""
        return predict_examples(self.model, self.task, self.tokenizer, examples, opts, batch_size, self.device)

    def evaluate(self, data: str | Path, opts: DataOptions, batch_size: int = 128) -> dict[str, Any]:
        """The task's metrics on a labelled file."""
        examples = self.task.read(data, opts)
        if self.task.has_labels:
            check_labels(self.labels, self.task.label_names(examples), data, train_path="the model's label set")
        predictions, _ = self.predict(examples, opts, batch_size)
        return {"task": self.task.name, "data": str(data), "examples": len(examples),
                **self.task.score(examples, predictions, self.labels)}

    def predict_file(self, input_path: str | Path, output_path: str | Path, opts: DataOptions,
                     batch_size: int = 128) -> int:
        """One JSON line of predictions per input line (JSON objects, or plain text); returns the count."""
        examples = self.task.read_inputs(input_path, opts)
        predictions, outputs = self.predict(examples, opts, batch_size)
        per_example = outputs if len(outputs) == len(examples) else [None] * len(examples)
        with atomic_path(output_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            for prediction, output in zip(predictions, per_example):
                f.write(json.dumps(self.task.to_json(prediction, output), ensure_ascii=False) + "\n")
        return len(examples)
