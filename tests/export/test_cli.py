"""`bertforge export onnx` and `predict --backend onnx` through the real command line: the onnx backend
predicts what torch does; every bad input is one error line, exit status 2, and nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from unavailable import require

require("onnxruntime")

from bertforge.model import BertForSequenceClassification  # noqa: E402
from tests.export.models import labelled, tiny_config  # noqa: E402


def bertforge(*argv, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "BERTFORGE_DEBUG")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-m", "bertforge", *map(str, argv)], cwd=cwd, env=env, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=120)


@pytest.fixture
def clf(tiny_model_dir, tmp_path):
    """A private copy of the tiny classifier (commands below write beside it)."""
    return shutil.copytree(tiny_model_dir("classify", BertForSequenceClassification,
                                          tiny_config(**labelled("classify"))), tmp_path / "clf")


def test_export_then_predict_with_onnx_gives_torch_predictions(clf, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("a good movie\nthe plot was awful , but the film is fine\nwho lives in paris ?\n")
    done = bertforge("export", "onnx", "--model", clf, "--out", clf / "onnx", "--quantize", "int8", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert {"model.onnx", "model.int8.onnx", "config.json", "vocab.txt"} <= {p.name for p in (clf / "onnx").iterdir()}
    results = {}
    for backend in ("torch", "onnx", "onnx-int8"):
        out = tmp_path / f"{backend}.jsonl"
        done = bertforge("predict", "--model", clf, "--input", lines, "--output", out, "--backend", backend,
                         cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        results[backend] = [json.loads(line) for line in out.read_text().splitlines()]
    torch_rows, onnx_rows = results["torch"], results["onnx"]
    assert [r["label"] for r in onnx_rows] == [r["label"] for r in torch_rows]
    assert all(abs(a["score"] - b["score"]) < 1e-5 for a, b in zip(onnx_rows, torch_rows))
    assert len(results["onnx-int8"]) == 3


CASES = {
    "missing model dir": (["export", "onnx", "--model", "{tmp}/nowhere", "--out", "{tmp}/out"],
                          ["--model {tmp}/nowhere", "no such model directory"]),
    "unknown --quantize": (["export", "onnx", "--model", "{clf}", "--out", "{tmp}/out", "--quantize", "int4"],
                           ["--quantize", "'int4'", "int8"]),
    "opset too old": (["export", "onnx", "--model", "{clf}", "--out", "{tmp}/out", "--opset", "9"],
                      ["--opset", "at least 14"]),
    "--out is --model": (["export", "onnx", "--model", "{clf}", "--out", "{clf}"], ["--out", "replace its weights"]),
    "not exportable": (["export", "onnx", "--model", "{tmp}/mlm", "--out", "{tmp}/out"],
                       ["config.json", "cannot export architecture 'BertForMaskedLM'", "exportable:"]),
    "no model.onnx": (["predict", "--backend", "onnx", "--model", "{clf}", "--input", "{tmp}/lines.txt",
                       "--output", "{tmp}/out.jsonl"], ["--model {clf}", "has no model.onnx",
                                                        "bertforge export onnx --model {clf} --out {clf}/onnx"]),
    "no model.int8.onnx": (["predict", "--backend", "onnx-int8", "--model", "{tmp}/exported", "--input",
                            "{tmp}/lines.txt", "--output", "{tmp}/out.jsonl"],
                           ["has no model.int8.onnx", "--quantize int8"]),
    "unknown --backend": (["predict", "--backend", "tensorrt", "--model", "{clf}", "--input", "{tmp}/lines.txt",
                           "--output", "{tmp}/out.jsonl"], ["--backend", "'tensorrt'", "onnx-int8"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_line(case, clf, tmp_path):
    (tmp_path / "lines.txt").write_text("a good movie\n")
    if case == "not exportable":  # a checkpoint from elsewhere, of an architecture bertforge has no graph for
        shutil.copytree(clf, tmp_path / "mlm")
        config = json.loads((tmp_path / "mlm" / "config.json").read_text())
        (tmp_path / "mlm" / "config.json").write_text(json.dumps({**config, "architectures": ["BertForMaskedLM"]}))
    if case == "no model.int8.onnx":  # an export without --quantize
        (tmp_path / "exported").mkdir()
        for name in ("config.json", "vocab.txt"):
            shutil.copy(clf / name, tmp_path / "exported" / name)
        (tmp_path / "exported" / "model.onnx").write_bytes(b"")
    argv, expected = CASES[case]
    ctx = {"tmp": tmp_path, "clf": clf}
    before = sorted(p.name for p in tmp_path.iterdir()), sorted(p.name for p in clf.iterdir())
    done = bertforge(*(a.format(**ctx) for a in argv), cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("bertforge "), done.stderr
    for text in expected:
        assert text.format(**ctx) in lines[0], (text, lines[0])
    assert "Traceback" not in done.stderr and not done.stdout
    assert (sorted(p.name for p in tmp_path.iterdir()), sorted(p.name for p in clf.iterdir())) == before
