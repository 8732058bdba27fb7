"""What an exported model directory holds, and how to find one.

Shared by the exporter (``export/onnx.py``), the ONNX Runtime backend (``inference/onnx.py``) and the
command line, which checks paths before importing torch: so nothing here imports it.

An export directory is self-contained: the graphs, the model's config.json (task, labels, sizes) and
its tokenizer files. It may be a directory of its own or ``MODEL/onnx`` beside the weights, so that
``Predictor.load(MODEL, backend="onnx")`` finds it either way.
"""

from __future__ import annotations

import os
from pathlib import Path

from bertforge.errors import PathError, UsageError, require_dir

ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}  # backend -> its graph file
BACKENDS = ("torch", *ONNX_FILES)
MANIFEST = "onnx_export.json"  # how the graphs were made: source, opset, outputs, measured parity, int8 settings
COPIED = ("config.json", "task.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
          "special_tokens_map.json")  # task.json: a TaskModel's task, labels and head
SUBDIR = "onnx"  # where a model directory's own export lives, if it has one

# The exporter's settings, here so that the command line checks them before importing torch.
QUANTIZATIONS = ("int8",)
DEFAULT_OPSET = 17  # the first with LayerNormalization as one op
MIN_OPSET = 14  # scaled_dot_product_attention's export needs it
MAX_OPSET = 20  # the newest the TorchScript exporter writes


def check_export_settings(quantize: str | None, opset: int) -> None:
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise UsageError(f"unknown quantisation {quantize!r}", setting="quantize",
                         hint=f"choose {' or '.join(QUANTIZATIONS)}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UsageError(f"must be at least {MIN_OPSET} and at most {MAX_OPSET}, got {opset}", setting="opset")


def check_backend(backend: str, flag: str | None = "--backend") -> str:
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}", flag=flag, hint=f"choose one of {', '.join(BACKENDS)}")
    return backend


def find_export(path: str | os.PathLike, backend: str = "onnx", flag: str | None = None,
                setting: str | None = None) -> Path:
    """The directory holding ``backend``'s graph, config.json and vocab.txt: ``path`` itself or
    ``path/onnx``. A PathError saying how to make one when there is none."""
    if backend not in ONNX_FILES:
        raise UsageError(f"{backend!r} is not an ONNX backend", setting="backend",
                         hint=f"choose one of {', '.join(ONNX_FILES)}")
    name = ONNX_FILES[backend]
    p = require_dir(path, flag=flag, setting=setting, what="model directory")
    for d in (p, p / SUBDIR):
        if (d / name).is_file():
            missing = [f for f in ("config.json", "vocab.txt") if not (d / f).is_file()]
            if missing:
                raise PathError(f"has {name} but no {missing[0]}", path=d, flag=flag, setting=setting,
                                hint="export it again with `bertforge export onnx`")
            return d
    quantize = " --quantize int8" if backend == "onnx-int8" else ""
    has_weights = any((p / w).is_file() for w in ("model.safetensors", "pytorch_model.bin"))
    command = (f"--model {p} --out {p / SUBDIR}" if has_weights and (p / "config.json").is_file()
               else f"--model MODEL_DIR --out {p}")
    raise PathError(f"has no {name} (nor {SUBDIR}/{name})", path=p, flag=flag, setting=setting,
                    hint=f"export it first: bertforge export onnx {command}{quantize}")
