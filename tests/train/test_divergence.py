"""Training that diverges stops with one typed error (``Diverged``, a BertforgeError: one line, exit 2 in the CLI)
and leaves its checkpoints usable: non-finite losses, a loss that explodes, non-finite weights; learning rates
and step counts have upper bounds; resuming below the steps already done is refused."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn

from bertforge.errors import BertforgeError, CheckpointError, UsageError
from bertforge.train.checkpoint import latest_checkpoint, load_checkpoint
from bertforge.train.runtime import Diverged, Runtime, Stepper
from bertforge.train.settings import FinetuneArgs, PretrainArgs


def _stepper(**kwargs) -> tuple[Stepper, nn.Linear]:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return Stepper(Runtime(), model, optimizer, scheduler, ("loss",), **kwargs), model


def _steps(stepper: Stepper, scales: list[float]) -> list[dict]:
    """One step per scale, each read: the loss is the model's output on a fixed batch times ``scale``."""
    batch = {"attention_mask": torch.ones(2, 4, dtype=torch.long), "x": torch.ones(2, 3)}
    records = []
    for scale in scales:
        stepper.step([batch], lambda net, b, s=scale: {"loss": net(b["x"]).pow(2).mean() * s + s},
                     lambda b: {"loss": 2})
        records.append(stepper.read())
    return records


def test_non_finite_losses_in_a_row_raise_a_typed_one_line_error():
    stepper, model = _stepper(max_non_finite=3)
    before = [p.detach().clone() for p in model.parameters()]
    _steps(stepper, [math.nan] * 3)  # skipped steps, not yet too many
    with pytest.raises(Diverged) as e:
        _steps(stepper, [math.nan])
    assert isinstance(e.value, BertforgeError)  # the CLI prints it as one line and exits 2
    assert "4 non-finite losses in a row" in str(e.value) and "\n" not in str(e.value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # nothing applied


def test_an_exploding_loss_stops_after_the_set_number_of_log_records():
    stepper, _ = _stepper(explode_factor=10, explode_logs=3)
    records = _steps(stepper, [1.0, 0.5, 30.0, 1.0, 30.0, 30.0])  # one spike, then two: below the limit
    assert [round(r["loss"]) for r in records][2] > 10
    with pytest.raises(Diverged, match=r"the loss is .* above 10 x the first logged loss .* in 3 log records"):
        _steps(stepper, [30.0])


def test_a_loss_that_only_falls_never_counts_as_exploding():
    stepper, _ = _stepper(explode_factor=10, explode_logs=1)
    _steps(stepper, [5.0, 1.0, 0.1, 0.01, 5.0])  # back to the start is not above 10 x the start
    assert stepper.exploding == 0


def test_non_finite_weights_stop_training():
    stepper, model = _stepper()
    _steps(stepper, [1.0])
    with torch.no_grad():
        model.weight[0, 0] = math.inf
    with pytest.raises(Diverged, match="weights are no longer finite"):
        _steps(stepper, [1.0])


def test_the_explosion_count_survives_a_resume():
    stepper, _ = _stepper(explode_logs=2)
    _steps(stepper, [1.0, 50.0])
    resumed, _ = _stepper(explode_logs=2)
    resumed.load_state_dict(stepper.state_dict())
    with pytest.raises(Diverged):
        _steps(resumed, [50.0])


@pytest.mark.parametrize("cls, values, flag", [
    (PretrainArgs, {"lr": 1e30}, "--lr: must be <= 1"),
    (PretrainArgs, {"max_steps": 10**20}, "--max-steps: must be <= 1e+09"),
    (PretrainArgs, {"warmup_steps": 10**12}, "--warmup-steps"),
    (PretrainArgs, {"save_every": 10**12}, "--save-every"),
    (FinetuneArgs, {"lr": 2.0}, "--lr: must be <= 1"),
])
def test_learning_rates_and_step_counts_have_upper_bounds(cls, values, flag):
    base = ({"corpus": ["c.txt"], "out": "run"} if cls is PretrainArgs
            else {"model": "m", "train": "t", "dev": "d", "out": "o"})
    with pytest.raises(UsageError, match=flag.replace("+", r"\+")):
        cls(**base, **values)
    cls(**base, **{k: (1.0 if k == "lr" else 10**9) for k in values})  # the bound itself is allowed


# --- real pre-training runs ------------------------------------------------------------------------------

WORDS = "the a cat dog runs sees big small red green house tree river walks bird sings over under near far".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from bertforge.vocab import train_vocab

    rng = random.Random(0)
    d = tmp_path_factory.mktemp("diverge")
    docs = ["\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))).capitalize() + "."
                      for _ in range(rng.randint(3, 7))) for _ in range(150)]
    (d / "corpus.txt").write_text("\n\n".join(docs) + "\n")
    train_vocab([(d / "corpus.txt").read_text()], 60).save_pretrained(d / "tok")
    return d


def _args(corpus, out, **changes) -> PretrainArgs:
    torch.set_num_threads(1)
    values = dict(corpus=[str(corpus / "corpus.txt")], tokenizer=str(corpus / "tok"), out=str(out), preset="tiny",
                  seq_len=32, batch_size=4, max_steps=4, warmup_steps=0, log_every=1, save_every=1,
                  eval_every=1000, workers=1, progress=False)
    return PretrainArgs(**{**values, **changes})


@pytest.mark.slow
def test_a_diverging_pretraining_run_stops_with_one_line_and_a_usable_checkpoint(corpus, tmp_path):
    """lr 1 (the bound): AdamW moves every weight by about 1 a step, and the masked-LM loss explodes."""
    from bertforge.train.pretrain import pretrain

    out = tmp_path / "run"
    with pytest.raises(Diverged) as e:
        pretrain(_args(corpus, out, lr=1.0, max_steps=40))
    latest = latest_checkpoint(out / "checkpoints")
    assert latest is not None and f"the newest checkpoint, {latest}" in str(e.value), str(e.value)
    assert "\n" not in str(e.value) and e.value.step is not None and e.value.step < 40
    state = load_checkpoint(latest)  # usable: complete, checked, finite
    assert state["step"] < e.value.step
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert not (out / "model").exists()  # no final model of diverged weights


@pytest.mark.slow
def test_resuming_below_the_steps_done_is_refused_naming_both(corpus, tmp_path):
    from bertforge.train.pretrain import pretrain

    out = tmp_path / "run"
    pretrain(_args(corpus, out, lr=1e-3, max_steps=3))
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    model_bytes = (out / "model" / "model.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match=r"--max-steps 2 is below the 3 steps already done"):
        pretrain(_args(corpus, out, lr=1e-3, max_steps=2))
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert (out / "model" / "model.safetensors").read_bytes() == model_bytes
    assert pretrain(_args(corpus, out, lr=1e-3, max_steps=3))["step"] == 3  # the same number is a re-run
