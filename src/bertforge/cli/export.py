"""``bertforge export onnx``: a model directory to a self-contained directory of ONNX graphs
(``bertforge.export.onnx``), which ``predict --backend onnx`` and ``Predictor.load(..., backend="onnx")`` run."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from bertforge.cli.commands import Command, family_model, model_dir, out_dir
from bertforge.errors import PathError, UsageError
from bertforge.export.layout import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, SUBDIR, check_export_settings


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a model directory: any bertforge head, or a bare encoder")
    p.add_argument("--out", required=True, help="directory for model.onnx, config.json and the tokenizer "
                   "(MODEL/onnx lets predict --backend onnx --model MODEL find it)")
    p.add_argument("--quantize", metavar="int8", help="also write model.int8.onnx (dynamic INT8 quantisation)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset, {MIN_OPSET} to {MAX_OPSET} (default: {DEFAULT_OPSET})")


def _run(args: argparse.Namespace) -> None:
    check_export_settings(args.quantize, args.opset)
    from bertforge.model.registry import EXPORT

    model_source = family_model(model_dir(args.model), "export onnx", EXPORT)
    source, out = model_source.path, out_dir(args.out)
    if out.resolve() == source.resolve():
        raise PathError("is the model directory itself; the export would replace its weights", path=out,
                        flag="--out", hint=f"export to {source / SUBDIR} or a new directory")
    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"needs the onnx and onnxruntime packages ({missing[0]} is missing)",
                         hint="pip install 'bertforge[onnx]'")
    from bertforge.export.onnx import export_onnx

    manifest = export_onnx(model_source, out, quantize=args.quantize, opset=args.opset)
    for name, info in manifest["files"].items():
        detail = (f"largest difference from torch {info['max_abs_diff']:.2g}" if "max_abs_diff" in info else
                  f"{info['weight_type']} weights, per_channel={info['per_channel']}, "
                  f"reduce_range={info['reduce_range']} ({info['cpu']})")
        print(f"{Path(out) / name}: {info['bytes'] / 2**20:.1f} MiB, {detail}")
    print(f"{manifest['architecture']}, opset {manifest['opset']}, outputs {', '.join(manifest['outputs'])}; "
          f"run it with: bertforge predict --backend onnx --model {out} ...")


EXPORT_ONNX = Command("export onnx", "a model directory to ONNX graphs (all heads; optional INT8)", _arguments, _run,
                      group_help="export models to run outside PyTorch")
