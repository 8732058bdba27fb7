"""The ONNX Runtime backend: an exported model (``bertforge export onnx``) run on the CPU in place of the
torch module. Called with the same three inputs, it returns the same named outputs (``logits``,
``start_logits``...), so ``run_model``, ``task.outputs`` and ``decode`` work on it unchanged. The config is read
as its family's (``model/registry.py``), and the graph gets the inputs it declares (a family without token types,
such as ModernBERT, exports no ``token_type_ids``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from bertforge.config import BertConfig
from bertforge.export.layout import ONNX_FILES, find_export
from bertforge.model.bert import check_inputs
from bertforge.model.registry import family_of, read_config_file
from bertforge.model.task_model import TASK_FILE


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when set (as torch honours it), else the cores this process may run on."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        pass
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def as_int64(x) -> np.ndarray:
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return array.astype(np.int64, copy=False)


class OnnxModel:
    """An ONNX Runtime session over an exported model, with the model's config (labels, sizes)."""

    training = False  # what run_model and Predictor read from a torch module

    def __init__(self, session, config, path: Path, settings: dict | None = None):
        self.session, self.config, self.path = session, config, path
        self.settings = settings  # a TaskModel's task.json (task, labels), None for the other heads
        self.output_names = [o.name for o in session.get_outputs()]
        self.input_names = {i.name for i in session.get_inputs()}
        self.input_rank = len(session.get_inputs()[0].shape)  # 3 for multiple choice: (B, C, T)

    @classmethod
    def load(cls, path: str | os.PathLike, backend: str = "onnx", threads: int | None = None) -> "OnnxModel":
        """The graph of ``backend`` (``onnx``: model.onnx, ``onnx-int8``: model.int8.onnx) in ``path`` or
        ``path/onnx``, in a session with ``threads`` intra-op threads (default: :func:`default_threads`)
        and every graph optimisation."""
        import onnxruntime as ort

        where = find_export(path, backend, setting="model")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(where / ONNX_FILES[backend]), options, providers=["CPUExecutionProvider"])
        task_file = where / TASK_FILE
        settings = json.loads(task_file.read_text(encoding="utf-8")) if task_file.is_file() else None
        return cls(session, read_config_file(where / "config.json")[1], where, settings)

    def run(self, input_ids, token_type_ids=None, attention_mask=None) -> dict[str, np.ndarray]:
        """The outputs by name, as arrays. Inputs (B, T), or (B, C, T) for multiple choice, as arrays or
        tensors; checked as the torch model checks them, so a bad id is an error, not a wrong answer."""
        ids = as_int64(input_ids)
        types = np.zeros_like(ids) if token_type_ids is None else as_int64(token_type_ids)
        mask = np.ones_like(ids) if attention_mask is None else as_int64(attention_mask)
        if ids.ndim != self.input_rank:
            raise ValueError(f"input_ids must have {self.input_rank} dimensions for this model "
                             f"({'batch, choices, length' if self.input_rank == 3 else 'batch, length'}), "
                             f"got shape {ids.shape}")
        if isinstance(self.config, BertConfig):
            flat = [torch.from_numpy(a.reshape(-1, a.shape[-1]) if a.ndim else a) for a in (ids, types, mask)]
            check_inputs(self.config, *flat)
        else:
            self.check(ids)
        feeds = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}
        return dict(zip(self.output_names, self.session.run(
            self.output_names, {name: value for name, value in feeds.items() if name in self.input_names})))

    def check(self, ids: np.ndarray) -> None:
        """What any family's embeddings take: ids in the vocabulary, no longer than the position bound."""
        limit = family_of(self.config).max_positions(self.config)
        if limit is not None and ids.shape[-1] > limit:
            raise ValueError(f"sequence length {ids.shape[-1]} exceeds the model's {limit} positions; truncate the "
                             "input or split it into windows")
        if ids.size and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {self.config.vocab_size})")

    def __call__(self, input_ids, token_type_ids=None, attention_mask=None, **_) -> SimpleNamespace:
        """The outputs as the torch model's record would hold them (tensors sharing the arrays' memory)."""
        return SimpleNamespace(**{name: torch.from_numpy(value) for name, value in
                                  self.run(input_ids, token_type_ids, attention_mask).items()})

    def eval(self) -> "OnnxModel":
        return self

    def train(self, mode: bool = True) -> "OnnxModel":
        if mode:
            raise RuntimeError("an ONNX Runtime model runs inference only; fine-tune the torch model")
        return self

    @property
    def id2label(self) -> dict[int, str]:
        return {int(i): name for i, name in (self.settings or self.config.extra).get("id2label", {}).items()}

    @property
    def label2id(self) -> dict[str, int]:
        return {name: int(i) for name, i in (self.settings or self.config.extra).get("label2id", {}).items()}
