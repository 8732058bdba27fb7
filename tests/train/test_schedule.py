import math

import pytest
import torch

from bertforge.train.schedule import build_schedule, lr_factor, warmup_ratio

PEAK = 1e-3


def _lrs(kind: str, warmup: int = 10, total: int = 110) -> list[float]:
    """The learning rate used by optimizer steps 0..total (the scheduler stepped after each)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=PEAK)
    sched = build_schedule(opt, warmup, total, kind)
    lrs = []
    for _ in range(total + 1):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize(
    "kind, mid, end", [("linear", 0.5, 0.0), ("cosine", 0.5, 0.0), ("constant", 1.0, 1.0)]
)
def test_values_at_start_warmup_mid_end(kind, mid, end):
    lrs = _lrs(kind)  # warm-up 10, total 110: decay over 100 steps, midpoint at step 60
    assert lrs[0] == 0.0
    assert lrs[5] == pytest.approx(0.5 * PEAK, rel=1e-12)
    assert lrs[10] == pytest.approx(PEAK, rel=1e-12)
    assert lrs[60] == pytest.approx(mid * PEAK, rel=1e-12)
    assert lrs[110] == pytest.approx(end * PEAK, abs=1e-18)
    if kind == "cosine":
        assert lrs[35] == pytest.approx(PEAK * 0.5 * (1 + math.cos(math.pi / 4)), rel=1e-12)
    if kind == "linear":
        assert lrs[35] == pytest.approx(0.75 * PEAK, rel=1e-12)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # never increases after the warm-up


def test_no_warmup_starts_at_peak_and_past_total_stays_at_zero():
    assert lr_factor(0, 0, 100) == 1.0
    assert lr_factor(150, 10, 100) == 0.0
    assert lr_factor(150, 10, 100, "cosine") == 0.0


def test_warmup_ratio_and_bad_arguments():
    assert warmup_ratio(0.1, 1000) == 100
    assert warmup_ratio(0.1, 1005) == 101  # rounded up
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=PEAK)
    with pytest.raises(ValueError):
        build_schedule(opt, 10, 100, "exponential")
    with pytest.raises(ValueError):
        build_schedule(opt, 200, 100)
    with pytest.raises(ValueError):
        warmup_ratio(1.5, 100)


def test_state_dict_round_trip_continues_the_schedule():
    def make():
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=PEAK)
        return opt, build_schedule(opt, 10, 50, "linear")

    opt, sched = make()
    for _ in range(17):
        opt.step()
        sched.step()
    opt2, sched2 = make()
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    assert sched2.get_last_lr() == sched.get_last_lr() == [pytest.approx(PEAK * 33 / 40)]
    for _ in range(10):
        for o, s in ((opt, sched), (opt2, sched2)):
            o.step()
            s.step()
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
