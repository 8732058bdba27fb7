import json
import math

import numpy as np
import pytest
import torch

from bertforge.train.logs import MetricsLog, NonFiniteGuard, Throughput, plot_curves, read_metrics


def _record(step: int) -> dict:
    return {"train_loss": 5.0 / step, "lr": 1e-4 * step}


def test_metrics_log_appends_flushed_json_lines(tmp_path):
    path = tmp_path / "logs" / "metrics.jsonl"
    log = MetricsLog(path)
    log.log(1, train_loss=torch.tensor(2.5), acc=np.float32(0.5), note="warm-up")
    expected = {"step": 1, "train_loss": 2.5, "acc": 0.5, "note": "warm-up"}
    assert read_metrics(path) == [expected]  # readable before close: flushed
    log.log(2, train_loss=float("nan"))
    log.close()
    records = read_metrics(path)
    assert len(records) == 2 and math.isnan(records[1]["train_loss"])
    with MetricsLog(path) as log:  # a plain re-open appends
        log.log(3, train_loss=1.0)
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]


def test_resumed_log_equals_uninterrupted_log(tmp_path):
    with MetricsLog(tmp_path / "straight.jsonl") as log:
        for step in range(1, 11):
            log.log(step, **_record(step))
    path = tmp_path / "resumed.jsonl"
    with MetricsLog(path) as log:  # checkpoint at step 5, crash after logging step 7 ...
        for step in range(1, 8):
            log.log(step, **_record(step))
    with open(path, "a") as f:
        f.write('{"step": 8, "train_lo')  # ... in the middle of writing step 8
    with pytest.warns(UserWarning, match="broken metrics line"):
        log = MetricsLog(path, resume_from_step=5)
    with log:
        for step in range(6, 11):
            log.log(step, **_record(step))
    assert path.read_text() == (tmp_path / "straight.jsonl").read_text()
    assert not list(tmp_path.glob(".*"))  # no temp file left


def test_append_after_a_cut_line_starts_a_fresh_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
    with MetricsLog(path) as log:
        log.log(3, loss=0.5)
    with pytest.warns(UserWarning):
        assert read_metrics(path) == [{"step": 1, "loss": 1.0}, {"step": 3, "loss": 0.5}]


def test_plot_curves_writes_png_and_skips_missing_keys(tmp_path):
    records = [{"step": s, "train_loss": 3 / s, "lr": 1e-4 * min(s, 10) / 10} for s in range(1, 51)]
    records += [{"step": s, "eval_loss": 2.5 / s, "eval_accuracy": 1 - 1 / s} for s in range(10, 51, 10)]
    out = tmp_path / "plots" / "curves.png"
    keys = ["train_loss", "eval_loss", "eval_accuracy", "eval_f1", "lr"]  # no record has eval_f1
    panels = plot_curves(records, out, keys=keys)
    assert panels == {"loss": ["train_loss", "eval_loss"], "accuracy": ["eval_accuracy"], "lr": ["lr"]}
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1024
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]  # written via a temp file
    assert plot_curves(records, out) == {  # default: every numeric metric
        "accuracy": ["eval_accuracy"], "loss": ["eval_loss", "train_loss"], "lr": ["lr"]}
    by_hand = plot_curves(records, out, keys={"losses": ["train_loss", "nope"]})
    assert by_hand == {"losses": ["train_loss"]}
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_curves(records, out, keys=["nope"])


def test_throughput_over_a_moving_window():
    now = [100.0]
    tp = Throughput(window=2, clock=lambda: now[0])
    assert tp.rate == 0.0
    for tokens, dt in [(1000, 1.0), (3000, 1.0), (500, 0.5)]:
        now[0] += dt
        tp.update(tokens)
    assert tp.rate == pytest.approx((3000 + 500) / 1.5)  # the first update fell out of the window
    assert tp.total == 4500
    now[0] += 60  # a long evaluation pause
    tp.reset()
    now[0] += 2.0
    assert tp.update(1000) == pytest.approx(500.0)


def test_non_finite_guard_skips_then_raises():
    guard = NonFiniteGuard(max_consecutive=2)
    assert guard.check(1.0)
    assert not guard.check(float("nan"))
    assert not guard.check(torch.tensor(float("inf")))
    assert guard.check(torch.tensor(0.7))  # a finite loss resets the run
    assert not guard.check(float("nan")) and not guard.check(float("-inf"))
    assert guard.skipped == 4
    restored = NonFiniteGuard(max_consecutive=2)
    restored.load_state_dict(json.loads(json.dumps(guard.state_dict())))
    message = r"3 non-finite losses in a row at step 9 .*learning rate.*bf16.*data"
    with pytest.raises(RuntimeError, match=message):
        restored.check(torch.tensor(float("nan")), step=9)
    assert restored.skipped == 5
