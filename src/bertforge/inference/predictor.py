"""A fine-tuned model at work: load its directory, predict for examples, evaluate on a labelled file,
or write one JSON line of predictions per input line. Training imports this for its dev scores;
this never imports training code (a server uses it too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertforge.data import columnar
from bertforge.data.batching import bucketed_batches
from bertforge.data.readers import check_labels
from bertforge.errors import ConfigError, UsageError, require_dir
from bertforge.export.layout import check_backend
from bertforge.io.atomic import atomic_path
from bertforge.model.directory import ModelDir
from bertforge.model.registry import ModelFamily, family_of
from bertforge.model.task_model import TaskModel
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
    """The task outputs of every feature, in order; batches sorted by length to avoid padding.

    ``model``: a torch head, or an ``OnnxModel`` (``inference/onnx.py``), which is called the same way."""
    was_training = model.training
    model.eval()
    results: list[np.ndarray | None] = [None] * len(feats)
    for batch_idx in _batches(feats, batch_size):
        batch = collate([feats[i] for i in batch_idx], pad_id)
        values = task.outputs(model(**model_inputs(batch, device))).float().cpu().numpy()
        for row, i in enumerate(batch_idx):
            n = len(feats[i].input_ids) if values.ndim >= 3 else None  # per-token outputs: trim the padding
            results[i] = values[row][:n] if n is not None else values[row]
    model.train(was_training)
    return results


def _batches(feats: list[Feature], batch_size: int) -> list[list[int]]:
    """Longest-first batches of features with the same number of rows (choices), so each collates."""
    groups: dict[int, list[int]] = {}
    for i, f in enumerate(feats):
        rows = len(f.input_ids) if f.input_ids and isinstance(f.input_ids[0], list) else 0
        groups.setdefault(rows, []).append(i)
    return [[members[j] for j in batch] for members in groups.values()
            for batch in bucketed_batches([feats[i].length for i in members], batch_size, shuffle=False)]


def predict_examples(model, task: Task, tokenizer: BertTokenizer, examples: list, opts: DataOptions,
                     batch_size: int, device: torch.device) -> tuple[list, list[np.ndarray]]:
    """(per-example predictions, raw outputs per feature) of a model on examples."""
    settings = getattr(model, "settings", None) or model.config.extra
    feats = task.encode(tokenizer, examples, getattr(model, "label2id", None) if task.has_labels else None, opts)
    outputs = run_model(model, task, feats, batch_size, tokenizer.pad_token_id, device)
    return task.decode(examples, feats, outputs, settings, opts), outputs


def check_max_length(opts: DataOptions, config) -> None:
    """Refuse inputs longer than the model has positions for (XLNet and ELMo have no position table)."""
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and opts.max_length > positions:
        raise UsageError(f"{opts.max_length} exceeds the model's {config.max_position_embeddings} positions "
                         "(max_position_embeddings)", setting="max_length")


def task_of(config, source: str | Path, family: ModelFamily) -> Task:
    """The task a model directory of ``family`` was fine-tuned for, from its config.json."""
    name = config.extra.get("bertforge_task")
    architecture = (config.extra.get("architectures") or [""])[0]
    if name is None:  # a checkpoint fine-tuned elsewhere: infer the task from its head
        kind = next((k for k, head in family.heads.items() if head.__name__ == architecture), None)
        name = next((t.name for t in TASKS.values() if t.head_kind == kind and t.describes(config.extra)), None)
    if name is None:
        raise ConfigError(f"cannot tell which task this model was fine-tuned for (architectures: "
                          f"{architecture or 'none'})", source=Path(source) / "config.json",
                          hint="fine-tune it with `bertforge finetune`")
    return get_task(name)


def check_label_names(task: Task, settings: dict[str, Any], source: str | Path) -> None:
    """Refuse a classifier whose config.json lost ``id2label``: the head would name its classes LABEL_0,
    LABEL_1, ... (the `transformers` default), answers that look right and mean nothing."""
    if task.has_labels and not settings.get("id2label"):
        raise ConfigError(f"has no id2label field, so the {task.name} model's class names are unknown (its "
                          "predictions would read LABEL_0, LABEL_1, ...)", source=Path(source) / "config.json",
                          hint='restore id2label (class id -> name, e.g. {"0": "neg", "1": "pos"}) as finetune '
                               "wrote it")


class Predictor:
    """A fine-tuned model directory ready to predict: its task, model, tokenizer and settings."""

    def __init__(self, task: Task, model, tokenizer: BertTokenizer, device: torch.device | None = None):
        self.task, self.model, self.tokenizer = task, model.eval(), tokenizer
        self.device = device or next(model.parameters()).device

    @classmethod
    def load(cls, path: str | Path | ModelDir, device: str | torch.device = "cpu", backend: str = "torch"
             ) -> "Predictor":
        """``backend``: ``torch`` (the weights), or ``onnx`` / ``onnx-int8`` (the graphs `bertforge export
        onnx` wrote into ``path`` or ``path/onnx``, run by ONNX Runtime on the CPU)."""
        if check_backend(backend) != "torch":
            return cls._load_onnx(path, device, backend)
        if not isinstance(path, ModelDir):
            require_dir(path, setting="model", what="model directory")
        source = ModelDir.read(path)
        if source.task is not None:  # feature-based, +BiLSTM or ELMo
            task = get_task(source.task_name)
            model = TaskModel.from_pretrained(source, task.head_kind)
        else:
            task = task_of(source.config, source.path, source.family)
            check_label_names(task, source.config.extra, source.path)
            model = source.family.heads[task.head_kind].from_pretrained(source.path)
        return cls(task, model.to(device), source.tokenizer, torch.device(device))

    @classmethod
    def _load_onnx(cls, path: str | Path, device: str | torch.device, backend: str) -> "Predictor":
        from bertforge.inference.onnx import OnnxModel

        if torch.device(device).type != "cpu":
            raise UsageError(f"the {backend} backend runs on the CPU, got device {device}", setting="backend")
        model = OnnxModel.load(path, backend)
        task = (get_task(model.settings["bertforge_task"]) if model.settings
                else task_of(model.config, model.path, family_of(model.config)))
        if not model.settings:
            check_label_names(task, model.config.extra, model.path)
        return cls(task, model, BertTokenizer.from_pretrained(model.path), torch.device("cpu"))

    @property
    def labels(self) -> list[str]:
        """The model's label names, by class id (empty for tasks without a label vocabulary)."""
        return [self.model.id2label[i] for i in sorted(self.model.id2label)] if self.task.has_labels else []

    def predict(self, examples: list, opts: DataOptions, batch_size: int = 128) -> tuple[list, list[np.ndarray]]:
        """(per-example predictions, raw outputs per feature)."""
        check_max_length(opts, self.model.config)
        return predict_examples(self.model, self.task, self.tokenizer, examples, opts, batch_size, self.device)

    def evaluate(self, data: str | Path, opts: DataOptions, batch_size: int = 128) -> dict[str, Any]:
        """The task's metrics on a labelled file (or ``datasets`` folder, or ``datasets.Dataset``)."""
        data = columnar.source(data)
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
