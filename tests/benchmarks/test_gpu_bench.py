"""benchmarks/gpu.py runs on CPU with --device cpu --tiny, so the GPU benchmark never rots: every part
measures and prints its figures (compile and the torchrun part in the slow test). The GPU tests'
own code runs on the CPU too."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"


def run(tmp_path, *flags):
    out = tmp_path / "figures.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--json", str(out), *flags],
                          capture_output=True, text=True, env=env, timeout=840)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_every_part_runs_on_cpu(tmp_path, hf):
    stdout, figures = run(tmp_path, "--no-compile", "--skip", "ddp")
    for heading in ("1. pre-training step", "2. fine-tuning step", "3. encode", "4. host synchronisations"):
        assert heading in stdout
    row = figures["pretrain_T32_eager"]
    for who in ("bertforge", "transformers"):
        assert row[who]["tokens_per_s"] > 0 and 0 < row[who]["mfu"] < 1
    assert {"bertforge unpadded, repad", "bertforge padded", "transformers"} <= set(figures["finetune"])
    assert all(v["sentences_per_s"] > 0 for v in figures["encode"].values())


@pytest.mark.slow
def test_compile_and_ddp_parts_run_on_cpu(tmp_path, hf):
    stdout, figures = run(tmp_path, "--skip", "finetune", "encode")
    assert figures["pretrain_T32_compiled"]["bertforge"]["tokens_per_s"] > 0
    assert figures["ddp"]["plain"] > 0 and figures["ddp"]["ddp"] > 0
    assert "5. DDP overhead" in stdout


def test_the_cuda_checks_run_on_cpu():
    """tests/test_cuda.py is skipped without a GPU; its own code still runs here (BERTFORGE_TEST_DEVICE=cpu), so
    a session that is lent a GPU does not find it broken. Only its CUDA-only checks skip."""
    tests = SCRIPT.parents[1] / "tests" / "test_cuda.py"
    env = {**os.environ, "BERTFORGE_TEST_DEVICE": "cpu", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=SCRIPT.parents[1])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) >= 10, proc.stdout[-1000:]  # not skipped: they ran
