"""ONNX export of every bertforge head and the bare encoder, and INT8 dynamic quantisation.

Exportable: every model of a family that can export (``model/registry.py``: BERT, ModernBERT), by its head
kind: the encoder (last_hidden_state, and pooler_output where it has a pooler), the pre-training model
(masked-LM and next-sentence logits), the masked LM, the fine-tuning heads (sequence classification and
regression, multiple choice, token classification, span QA), and TaskModel on BERT (frozen or fine-tuned
features, with or without the BiLSTM). Inputs: input_ids, token_type_ids, attention_mask, int64, with
dynamic batch and sequence axes ((B, C, T) with a dynamic choice axis for multiple choice).

Exporter: torch.onnx's TorchScript-based one (``dynamo=False``). It needs only the ``onnx`` package
(the torch.export-based default also needs ``onnxscript``), handles every model here, and its graphs
match the torch models to ~1e-5. It traces, so the model's control flow is fixed at export: the
example batch has a padded row, which puts the attention-mask path into the graph (a batch without
padding gives the same numbers through it), and the input checks, which hold for any valid batch,
drop out. Every export is checked against the torch model on a batch of another shape, with padding.

INT8: ONNX Runtime's dynamic quantisation of the encoder's MatMuls (weights int8 per output channel,
activations uint8 per batch, scaled at run time); see :func:`quantize_int8` for the settings and why.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bertforge.errors import ConfigError, UsageError
from bertforge.export.layout import COPIED, DEFAULT_OPSET, MANIFEST, ONNX_FILES, check_export_settings
from bertforge.io.atomic import atomic_dir
from bertforge.model.directory import ModelDir
from bertforge.model.registry import (CHOICE, ENCODER, EXPORT, FAMILIES, MASKED_LM, PRETRAINING, SEQUENCE, SPAN,
                                      TOKEN, family_of)
from bertforge.model.task_model import BertFeatures, TaskModel

INPUTS = ("input_ids", "token_type_ids", "attention_mask")

B, T = "batch", "sequence"
# The outputs of each exportable head kind, by the names of its output record, with their axes (None: fixed).
# TaskModel (a task layer, maybe after a BiLSTM, on BERT's features; frozen or not) has those of its kind.
OUTPUTS: dict[str, dict[str, tuple[str | None, ...]]] = {
    ENCODER: {"last_hidden_state": (B, T, None), "pooler_output": (B, None)},
    PRETRAINING: {"prediction_logits": (B, T, None), "seq_relationship_logits": (B, None)},
    MASKED_LM: {"logits": (B, T, None)},
    SEQUENCE: {"logits": (B, None)},
    CHOICE: {"logits": (B, "choices")},
    TOKEN: {"logits": (B, T, None)},
    SPAN: {"start_logits": (B, T), "end_logits": (B, T)},
}


def exportable() -> list[str]:
    """The class names of every exportable model, for a hint."""
    return [cls.__name__ for f in FAMILIES.values() if EXPORT in f.can for kind, cls in f.heads.items()
            if kind in OUTPUTS] + [TaskModel.__name__ + " (on BERT)"]


def head_kind(model: nn.Module) -> str | None:
    """The head kind of ``model`` in its family (the first that names its class), or None when it is not one
    an exporting family has."""
    if isinstance(model, TaskModel):
        return model.kind if isinstance(model.encoder, BertFeatures) else None
    try:
        family = family_of(getattr(model, "config", None))
    except ConfigError:
        return None
    if EXPORT not in family.can:
        return None
    return next((kind for kind, cls in family.heads.items() if cls is type(model) and kind in OUTPUTS), None)


def input_axes(model: nn.Module) -> tuple[str, ...]:
    return (B, "choices", T) if head_kind(model) == CHOICE else (B, T)


def output_axes(model: nn.Module) -> dict[str, tuple[str | None, ...]]:
    """The outputs ``model`` has (an encoder without a pooler has no pooler_output)."""
    kind = head_kind(model)
    if kind is None:
        what = "a TaskModel on ELMo" if isinstance(model, TaskModel) else f"a {type(model).__name__}"
        raise UsageError(f"cannot export {what}", hint=f"exportable: {', '.join(exportable())}")
    axes = dict(OUTPUTS[kind])
    if "pooler_output" in axes and getattr(model, "pooler", None) is None:
        del axes["pooler_output"]
    return axes


class _Graph(nn.Module):
    """The model as a function of the three inputs returning a tuple of tensors, which is what tracing takes."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, input_ids, token_type_ids, attention_mask):
        out = self.model(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        return tuple(getattr(out, name) for name in self.names)


def example_inputs(config, batch: int, length: int, choices: int | None = None, seed: int = 0
                   ) -> dict[str, torch.Tensor]:
    """A valid batch (B, T), or (B, C, T): random ids, two segments when the model has them, and rows
    padded more and more (the first full, the last to half its length)."""
    g = torch.Generator().manual_seed(seed)
    rows = batch * (choices or 1)
    ids = torch.randint(0, config.vocab_size, (rows, length), generator=g)
    types = torch.zeros_like(ids)
    if getattr(config, "type_vocab_size", 1) > 1:
        types[:, length // 2:] = 1
    lengths = [length - (length // 2) * i // max(rows - 1, 1) for i in range(rows)]
    mask = (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).long()
    shape = (batch, choices, length) if choices else (batch, length)
    return {"input_ids": ids.view(shape), "token_type_ids": types.view(shape), "attention_mask": mask.view(shape)}


@contextmanager
def _quiet(native: bool = False):
    """Silence the exporters' chatter: the TorchScript exporter's deprecation notice, tracer warnings
    about the input checks (they hold for any valid batch), the quantiser's advice logged at WARNING,
    and with ``native`` what C++ writes to stderr itself (shape-inference notes on the BiLSTM's packing);
    errors still arrive as exceptions."""
    level = logging.root.manager.disable
    logging.disable(logging.WARNING)
    saved = None
    if native:
        sys.stderr.flush()
        saved = os.dup(2)
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
        logging.disable(level)


def export_model(model: nn.Module, path: str | os.PathLike, *, opset: int = DEFAULT_OPSET) -> dict[str, Any]:
    """Write ``model`` to ``path`` as one ONNX graph with dynamic batch (and choice) and sequence axes;
    check it against the model on a batch of another shape. Returns the axes and the largest difference."""
    check_export_settings(None, opset)
    outputs, inputs = output_axes(model), input_axes(model)
    choices = 3 if len(inputs) == 3 else None
    example = example_inputs(model.config, 2, min(7, model.config.max_position_embeddings), choices)
    dynamic = {name: {i: a for i, a in enumerate(axes) if a} for name, axes in
               [*((n, inputs) for n in INPUTS), *outputs.items()]}
    was_training = model.training
    graph = _Graph(model, tuple(outputs)).eval()  # eval before the exporter sees it: no dropout in the trace
    try:
        with _quiet(native=True):
            torch.onnx.export(graph, tuple(example[n] for n in INPUTS), str(path), dynamo=False,
                              opset_version=opset, input_names=list(INPUTS), output_names=list(outputs),
                              dynamic_axes=dynamic, do_constant_folding=True)
    finally:
        model.train(was_training)
    diff, used = check_export(model, path, outputs, choices)
    return {"inputs": {n: list(inputs) for n in used}, "outputs": {n: list(a) for n, a in outputs.items()},
            "max_abs_diff": diff}


def real_tokens(value, axes: tuple[str | None, ...], attention_mask) -> np.ndarray:
    """An output's values at real tokens only, when it has one value per token (B, T, ...): the torch
    model may skip padded positions (leaving zeros there) while the graph computes them; nobody reads them."""
    value = np.asarray(value)
    if len(axes) > 1 and axes[1] == T:
        return value[np.asarray(attention_mask).astype(bool)]
    return value


@torch.no_grad()
def check_export(model: nn.Module, path: str | os.PathLike, outputs: dict[str, tuple[str | None, ...]],
                 choices: int | None, tolerance: float = 1e-3) -> tuple[float, list[str]]:
    """The largest difference between the graph (ONNX Runtime) and the model on a padded 3 x 11 batch
    (shapes the export never saw), at real tokens; a RuntimeError above ``tolerance`` times the outputs' scale.
    Also the graph's inputs: the exporter leaves out one the model ignores (ModernBERT's token_type_ids)."""
    import onnxruntime as ort

    batch = example_inputs(model.config, 3, min(11, model.config.max_position_embeddings), choices and 2, seed=1)
    names = tuple(outputs)
    was_training = model.training
    model.eval()
    try:
        expected = _Graph(model, names)(*(batch[n] for n in INPUTS))
    finally:
        model.train(was_training)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    used = [i.name for i in session.get_inputs()]
    got = session.run(list(names), {n: batch[n].numpy() for n in used})
    worst, mask = 0.0, batch["attention_mask"]
    for name, want, have in zip(names, expected, got):
        want, have = (real_tokens(v, outputs[name], mask) for v in (want.numpy(), have))
        diff = float(np.abs(want - have).max())
        if diff > tolerance * max(1.0, float(np.abs(want).max())):
            raise RuntimeError(f"the exported {name} differs from the model's by {diff:.3g} on a check batch; "
                               f"the export is wrong (please report it)")
        worst = max(worst, diff)
    return worst, used


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def int8_settings() -> dict[str, Any]:
    """How to quantise for this CPU (see :func:`quantize_int8`)."""
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    vnni = sorted(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})
    return {"weight_type": "QInt8", "activation_type": "QUInt8", "per_channel": True,
            "reduce_range": x86 and not vnni, "op_types": ["MatMul"],
            "cpu": f"{platform.machine()}" + (f" with {', '.join(vnni)}" if vnni else " without VNNI" if x86 else "")}


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike, **overrides: Any) -> dict[str, Any]:
    """Dynamic INT8 quantisation of a float graph (ONNX Runtime's ``quantize_dynamic``); returns the settings.

    - Weights signed int8 (QInt8), activations uint8 quantised per batch at run time: u8 x s8 is the
      fast integer matmul path on x86 (VNNI's vpdpbusd) and on ARM.
    - Per output channel: each row of a weight matrix gets its own scale, which keeps the error small
      for weights whose rows differ in range (measured on SNLI, benchmarks/onnx.py).
    - reduce_range (7-bit weights) only on x86 without VNNI: there u8 x s8 products are summed in pairs
      into int16 (vpmaddubsw), which can saturate; with VNNI (or AMX, or on ARM) the sums are 32-bit and
      the 8th bit is kept. Decided from this CPU's flags: a graph for an older x86 server should be
      quantised on one (or with ``reduce_range=True``).
    - Only MatMuls, the encoder's linear layers (>95% of the time): the embedding tables and the small
      head (Gemm) stay float, which costs file size, not speed, and keeps the outputs closer.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    settings = {**int8_settings(), **overrides}
    with _quiet():
        quantize_dynamic(Path(src), Path(dst), weight_type=getattr(QuantType, settings["weight_type"]),
                         per_channel=settings["per_channel"], reduce_range=settings["reduce_range"],
                         op_types_to_quantize=list(settings["op_types"]))
    return settings


def load_for_export(model_dir: str | os.PathLike | ModelDir) -> nn.Module:
    """The model a directory's config.json names (``architectures``; its family's encoder when it names none),
    or the TaskModel its task.json describes."""
    from bertforge.tasks import get_task

    source = ModelDir.read(model_dir)
    if source.task is not None:
        model = TaskModel.from_pretrained(source, get_task(source.task_name).head_kind)
        output_axes(model)  # a BERT encoder, or a clear error
        return model.eval()
    heads = {cls.__name__: cls for kind, cls in source.family.heads.items() if kind in OUTPUTS}
    named = getattr(source.config, "extra", {}).get("architectures")
    architecture = named[0] if named else getattr(source.family.heads.get(ENCODER), "__name__", "none")
    if EXPORT not in source.family.can or architecture not in heads:
        raise ConfigError(f"cannot export architecture {architecture!r}", source=source.path / "config.json",
                          hint=f"exportable: {', '.join(exportable())}")
    return heads[architecture].from_pretrained(source.path).eval()


def export_onnx(model_dir: str | os.PathLike | ModelDir, out: str | os.PathLike, *, quantize: str | None = None,
                opset: int = DEFAULT_OPSET) -> dict[str, Any]:
    """Export a model directory to ``out`` (written whole or not at all): model.onnx (and model.int8.onnx
    with ``quantize="int8"``), its config.json and tokenizer files, and onnx_export.json, which
    records how; returns that record."""
    check_export_settings(quantize, opset)
    import onnx
    import onnxruntime

    source = ModelDir.read(model_dir)
    model, model_dir = load_for_export(source), source.path
    with atomic_dir(out) as tmp:
        fp32 = tmp / ONNX_FILES["onnx"]
        graph = export_model(model, fp32, opset=opset)
        files = {fp32.name: {"bytes": fp32.stat().st_size, "max_abs_diff": graph.pop("max_abs_diff")}}
        if quantize == "int8":
            int8 = tmp / ONNX_FILES["onnx-int8"]
            settings = quantize_int8(fp32, int8)
            files[int8.name] = {"bytes": int8.stat().st_size, **settings}
        for name in COPIED:
            if (model_dir / name).is_file():
                shutil.copyfile(model_dir / name, tmp / name)
        manifest = {"source": str(model_dir), "architecture": type(model).__name__,
                    "exporter": "torch.onnx.export(dynamo=False), TorchScript-based", "opset": opset,
                    "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                    **graph, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
