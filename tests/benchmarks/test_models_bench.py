"""benchmarks/models.py's ELMo bound: the step's matrix products and convolutions are recorded with their FLOPs
and replayed alone, so the figure it prints is the step's own dense work, not an estimate."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

# Loaded from its file: benchmarks/ on sys.path would shadow real packages (its onnx.py hides onnx).
_SPEC = importlib.util.spec_from_file_location("benchmarks_models",
                                               Path(__file__).resolve().parents[2] / "benchmarks" / "models.py")
models = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(models)


def test_the_replayed_calls_are_the_steps_products_with_their_flops():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    conv = torch.nn.Conv1d(4, 8, 3)
    x, signal = torch.randn(16, 64), torch.randn(2, 4, 20)

    def step():
        (linear(x).sum() + conv(signal).sum()).backward()

    calls = models.dense_calls(step)
    names = sorted(func.overloadpacket.__name__ for func, *_ in calls)
    assert names == ["addmm", "convolution", "convolution_backward", "mm"]  # forward, input grad skipped: x, signal
    flops = {func.overloadpacket.__name__: n for func, _, _, n in calls}
    assert flops["addmm"] == 2 * 16 * 64 * 32 and flops["mm"] == 2 * 16 * 64 * 32  # forward; weight gradient
    assert flops["convolution"] == 2 * 2 * 8 * 18 * 4 * 3
    models.replay(calls)  # runs the same kernels on the copies


@pytest.mark.slow
def test_the_elmo_part_prints_its_bound(capsys):
    sys.argv = ["models.py", "--only", "elmo", "--vocab", "50", "--steps", "1", "--warmup", "0", "--threads", "1"]
    models.main()
    out = capsys.readouterr().out
    assert "fp32 matrix product, 2048 x 2048 x 2048" in out
    assert out.count("replayed at their own shapes") == 2 and out.count("at the 2048-cube rate") == 2
