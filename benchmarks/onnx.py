"""ONNX Runtime fp32 and INT8 vs PyTorch fp32: speed and size on SNLI test pairs; accuracy of a fine-tuned model.

All three run the same predict path (``run_model``: length-bucketed batches) on the same features, in
the same process, interleaved, with the same number of threads; tokens/s counts real (unpadded)
tokens, median of the repeats. Without ``--model``: MiniLM with a 3-way head (random, seeded), speed
and size only; nothing is fine-tuned. With ``--model DIR`` (a classifier fine-tuned on SNLI, e.g. by
``experiments/real_data.py snli``): that model, and also its accuracy on the SNLI test set for each
backend, so the INT8 loss is measured. Goals: INT8 loses <= 1.0 accuracy point and runs >= 1.5x
PyTorch fp32 on 2 cores.

    .venv/bin/python benchmarks/onnx.py [--threads 2] [--pairs 1000] [--repeats 3] [--model runs/snli/model]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

# This file is onnx.py: with its directory first on the import path, `import onnx` would import it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bertforge.data.fetch import fetch  # noqa: E402
from bertforge.data.readers import read_snli  # noqa: E402
from bertforge.export.layout import ONNX_FILES  # noqa: E402
from bertforge.export.onnx import export_onnx  # noqa: E402
from bertforge.inference import Predictor  # noqa: E402
from bertforge.inference.onnx import OnnxModel  # noqa: E402
from bertforge.inference.predictor import run_model  # noqa: E402
from bertforge.model import BertForSequenceClassification  # noqa: E402
from bertforge.tasks import DataOptions  # noqa: E402
from bertforge.tokenization import BertTokenizer  # noqa: E402

SNLI_LABELS = ["contradiction", "entailment", "neutral"]


def minilm_classifier(where: Path) -> Path:
    """MiniLM with a seeded random 3-way SNLI head, saved as a fine-tuned-looking model directory."""
    path = fetch("minilm", quiet=True)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the head is new, on purpose
        model = BertForSequenceClassification.from_pretrained(
            path, num_labels=3, id2label={str(i): n for i, n in enumerate(SNLI_LABELS)},
            label2id={n: i for i, n in enumerate(SNLI_LABELS)}, bertforge_task="classify")
    model.save_pretrained(where)
    BertTokenizer.from_pretrained(path).save_pretrained(where)
    return where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a classifier fine-tuned on SNLI: also measure its test accuracy")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=1000, help="SNLI test pairs timed (default: 1000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scratch = tempfile.TemporaryDirectory(prefix="bertforge-onnx-bench-")  # removed at exit
    tmp = Path(scratch.name)
    model_dir = Path(args.model) if args.model else minilm_classifier(tmp / "model")
    out = tmp / "onnx"
    start = time.perf_counter()
    manifest = export_onnx(model_dir, out, quantize="int8")
    export_s = time.perf_counter() - start

    torch_predictor = Predictor.load(model_dir)
    task, tokenizer = torch_predictor.task, torch_predictor.tokenizer
    if task.name != "classify" or sorted(torch_predictor.labels) != SNLI_LABELS:
        raise SystemExit(f"--model must be an SNLI classifier (labels {SNLI_LABELS}), got task {task.name} "
                         f"with labels {torch_predictor.labels}")
    models = {"PyTorch fp32": torch_predictor.model,
              "ONNX Runtime fp32": OnnxModel.load(out, "onnx", threads=args.threads),
              "ONNX Runtime INT8": OnnxModel.load(out, "onnx-int8", threads=args.threads)}
    sizes = {"PyTorch fp32": (model_dir / "model.safetensors").stat().st_size,
             "ONNX Runtime fp32": (out / ONNX_FILES["onnx"]).stat().st_size,
             "ONNX Runtime INT8": (out / ONNX_FILES["onnx-int8"]).stat().st_size}

    opts = DataOptions(max_length=args.max_length)
    examples, _ = read_snli(fetch("snli", quiet=True) / "snli_1.0_test.jsonl")
    label2id = torch_predictor.model.label2id
    feats = task.encode(tokenizer, examples, label2id, opts)
    timed = feats[:args.pairs]
    tokens = sum(f.length for f in timed)
    cpu = torch.device("cpu")

    def run(model, features):
        return run_model(model, task, features, args.batch_size, tokenizer.pad_token_id, cpu)

    reference = run(models["PyTorch fp32"], timed)
    seconds: dict[str, list[float]] = {name: [] for name in models}
    agreement = {}
    for name, model in models.items():  # warm-up; and how often each picks PyTorch's class on the timed pairs
        outputs = run(model, timed)
        agreement[name] = float(np.mean([a.argmax() == b.argmax() for a, b in zip(outputs, reference)]))
    for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits every backend alike
        for name, model in models.items():
            start = time.perf_counter()
            run(model, timed)
            seconds[name].append(time.perf_counter() - start)

    accuracy = {}
    if args.model:
        gold = [e.label for e in examples]
        for name, model in models.items():
            predictions = task.decode(examples, feats, run(model, feats), torch_predictor.model.config.extra, opts)
            accuracy[name] = float(np.mean([p == g for p, g in zip(predictions, gold)]))

    info = manifest["files"][ONNX_FILES["onnx-int8"]]
    print(f"{'fine-tuned ' + str(model_dir) if args.model else 'MiniLM + random 3-way head (speed only)'}; "
          f"threads={args.threads}, batch {args.batch_size}, max length {args.max_length}; torch {torch.__version__}, "
          f"onnxruntime {manifest['onnxruntime']}, opset {manifest['opset']}; export + quantisation {export_s:.0f} s")
    print(f"INT8: {info['weight_type']} weights, per_channel={info['per_channel']}, "
          f"reduce_range={info['reduce_range']}, ops {', '.join(info['op_types'])} ({info['cpu']}); fp32 graph vs torch max |diff| "
          f"{manifest['files'][ONNX_FILES['onnx']]['max_abs_diff']:.1g}")
    print(f"\nSNLI test: {len(timed)} pairs timed ({tokens:,} tokens), median of {args.repeats}"
          + (f"; accuracy on all {len(examples):,} test pairs" if accuracy else ""))
    base = statistics.median(seconds["PyTorch fp32"])
    header = f"  {'backend':<19} {'size MiB':>9} {'tokens/s':>10} {'vs PyTorch':>11}"
    print(header + (f" {'same class':>11} {'accuracy':>9}" if accuracy else ""))
    for name in models:
        s = statistics.median(seconds[name])
        row = f"  {name:<19} {sizes[name] / 2**20:>9.1f} {tokens / s:>10,.0f} {base / s:>10.2f}x"
        if accuracy:  # with a random head, "same class" would measure noise, not the model
            lost = 100 * (accuracy["PyTorch fp32"] - accuracy[name])
            row += (f" {agreement[name]:>10.1%} {accuracy[name]:>9.4f}"
                    + (f"  ({-lost:+.2f} pt)" if name != "PyTorch fp32" else ""))
        print(row)
    int8_speedup = base / statistics.median(seconds["ONNX Runtime INT8"])
    goals = [f"INT8 {int8_speedup:.2f}x PyTorch fp32 (goal >= 1.5x)"]
    if accuracy:
        change = 100 * (accuracy["ONNX Runtime INT8"] - accuracy["PyTorch fp32"])
        goals.append(f"INT8 accuracy {change:+.2f} points vs PyTorch fp32 (goal: at most 1.0 lost)")
    print("\n" + "; ".join(goals))


if __name__ == "__main__":
    main()
