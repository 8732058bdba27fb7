"""Fine-tuning resumes: a run cut anywhere (mid-epoch, at an epoch's or a seed's end, or by SIGKILL) and run
again ends with the weights, dev figures and log of an uninterrupted run; a changed setting is refused naming
its flag; a finished run is not trained again. --optimizer and --schedule reach the training."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from bertforge.cli import main as cli
from bertforge.config import BertConfig
from bertforge.errors import CheckpointError, UsageError
from bertforge.model import BertForPreTraining
from bertforge.train import finetune as recipe
from bertforge.train.checkpoint import latest_checkpoint, load_checkpoint, read_run_config
from bertforge.train.finetune import FinetuneArgs, finetune
from bertforge.train.runtime import Stepper
from bertforge.vocab import train_vocab

POSITIVE, NEGATIVE = ["good", "great", "fine", "lovely"], ["bad", "awful", "poor", "sad"]
FILLER = "the a movie film plot actor was is very quite and but it this story".split()


def rows(rng, n, target):
    """Sentences with one sentiment word; ``target(rng, label)`` is what each row is labelled."""
    out = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = rng.sample(FILLER, 5) + [rng.choice(POSITIVE if label == "pos" else NEGATIVE)]
        rng.shuffle(words)
        out.append({"text": " ".join(words), "label": target(rng, label)})
    return out


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small random BERT; a sentiment score to regress (+1 / -1) whose dev targets are noise, so the dev figure
    moves every epoch and an earlier epoch can be the best: the best-epoch record and its weights must survive a
    cut. For the SIGKILL test, a longer classification task."""
    d, rng = tmp_path_factory.mktemp("resume"), random.Random(0)
    tok = train_vocab([" ".join(POSITIVE + NEGATIVE + FILLER)] * 20, 80, min_frequency=1)
    tok.save_pretrained(d / "model")
    torch.manual_seed(0)
    BertForPreTraining(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
                       ).save_pretrained(d / "model")
    score, noise, label = (lambda r, y: 1.0 if y == "pos" else -1.0), (lambda r, y: r.uniform(-1, 1)), (lambda r, y: y)
    return {"model": d / "model", "train": write_jsonl(d / "train.jsonl", rows(rng, 48, score)),
            "dev": write_jsonl(d / "dev.jsonl", rows(rng, 24, noise)),
            "long_train": write_jsonl(d / "long-train.jsonl", rows(rng, 320, label)),
            "long_dev": write_jsonl(d / "long-dev.jsonl", rows(rng, 40, label))}


def args(data, out, **kw):
    """48 examples in batches of 16, 3 epochs, 2 seeds: 9 steps a seed, 18 in all; dropout on, so the RNG
    state matters; a checkpoint every 2 steps and at each epoch's end."""
    base = dict(task="regress", model=str(data["model"]), train=str(data["train"]), dev=str(data["dev"]),
                out=str(out), epochs=3, lr=2e-3, batch_size=16, seeds=[1, 2], save_every=2, log_every=1,
                progress=False)
    return FinetuneArgs(**{**base, **kw})


def weights(out):
    return load_file(out / "model" / "model.safetensors")


def assert_same_run(a, b):
    """Equal weights (every tensor), eval_results.json (dev figures and best epoch of each seed) and training
    log (apart from timings)."""
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, different
    assert json.loads((a / "eval_results.json").read_text()) == json.loads((b / "eval_results.json").read_text())
    assert log(a) == log(b)


def log(out):
    return [{k: v for k, v in json.loads(line).items() if k not in ("elapsed_s", "tokens_per_s")}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


class Killed(Exception):
    """Stands for SIGKILL in-process."""


def run_until(settings, done, monkeypatch):
    """Fine-tune until the checkpoint after ``done`` steps (over all seeds) is written, go on for one more step
    (logged: the resumed run must drop it), then stop dead before anything else is saved."""
    save, step = recipe.save_checkpoint, Stepper.step
    cut = {"saved": False, "steps": 0}

    def save_or_die(directory, at, state, keep_last):
        if cut["saved"]:
            raise Killed
        path = save(directory, at, state, keep_last=keep_last)
        cut["saved"] = at == done
        return path

    def step_or_die(self, *a, **k):
        if cut["saved"]:
            if cut["steps"] == 1:
                raise Killed
            cut["steps"] += 1
        return step(self, *a, **k)

    monkeypatch.setattr(recipe, "save_checkpoint", save_or_die)
    monkeypatch.setattr(Stepper, "step", step_or_die)
    with pytest.raises(Killed):
        finetune(settings)
    assert cut["steps"] == 1
    monkeypatch.setattr(recipe, "save_checkpoint", save)
    monkeypatch.setattr(Stepper, "step", step)


def count_steps(monkeypatch) -> list:
    """Record every optimizer step the fine-tuning loop takes from now on."""
    steps, step = [], Stepper.step
    monkeypatch.setattr(Stepper, "step", lambda self, *a, **k: steps.append(1) or step(self, *a, **k))
    return steps


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("straight") / "run"
    finetune(args(data, out))
    return out


# Checkpoints (steps over both seeds): 2, 3 (epoch end), 4, 6 (epoch end), 8, 9 (seed 1 done), 11, 12 (epoch end),
# 13, 15 (epoch end), 17, 18 (done). Seed 1's best epoch is its first (see below), so its weights must outlive a cut.
CUTS = {2: "mid-epoch, before any dev score", 3: "epoch end, the best epoch is the one just finished",
        6: "epoch end, the best epoch is an earlier one", 8: "mid-epoch, the best epoch's weights kept apart",
        9: "between the seeds", 13: "mid-epoch in the second seed"}


@pytest.mark.parametrize("cut", CUTS, ids=[f"{k}-{v.split(',')[0].replace(' ', '-')}" for k, v in CUTS.items()])
def test_a_run_cut_at_a_checkpoint_resumes_to_the_uninterrupted_result(data, straight, tmp_path, monkeypatch,
                                                                       capsys, cut):
    out = tmp_path / "run"
    run_until(args(data, out), cut, monkeypatch)
    assert not (out / "eval_results.json").exists()
    capsys.readouterr()
    steps = count_steps(monkeypatch)
    finetune(args(data, out))
    assert f"resuming from {out / 'checkpoints' / f'step-{cut:08d}'}" in capsys.readouterr().out
    assert len(steps) == 18 - cut  # only what the checkpoint had not done
    assert_same_run(straight, out)
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000018"]  # the finished run's, alone


def test_an_earlier_epoch_scores_best_on_dev_so_the_cuts_test_the_best_epoch_record(straight):
    per_seed = json.loads((straight / "eval_results.json").read_text())["per_seed"]
    assert {seed: r["best_epoch"] for seed, r in per_seed.items()} == {"1": 1, "2": 3}  # of 3


def test_a_finished_run_is_not_trained_again(data, straight, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    finetune(args(data, out))
    before = {p: p.read_bytes() for d in (out / "model", out / "checkpoints" / "step-00000018") for p in d.iterdir()}
    summary = json.loads((out / "eval_results.json").read_text())
    capsys.readouterr()
    steps = count_steps(monkeypatch)
    assert finetune(args(data, out)) == summary
    assert "every seed has finished; nothing to train" in capsys.readouterr().out
    assert steps == [] and {p: p.read_bytes() for p in before} == before
    assert_same_run(straight, out)


@pytest.mark.parametrize("change, message", [
    ({"lr": 1e-3}, "--lr was 0.002 and is 0.001 now"),
    ({"optimizer": "lamb"}, "--optimizer was 'adamw' and is 'lamb' now"),
    ({"schedule": "cosine"}, "--schedule was 'linear' and is 'cosine' now"),
    ({"seeds": [1]}, "--seeds was [1, 2] and is [1] now"),
    ({"epochs": 4}, "--epochs was 3 and is 4 now"),
])
def test_a_changed_setting_is_refused_naming_its_flag(data, tmp_path, monkeypatch, change, message):
    out = tmp_path / "run"
    run_until(args(data, out), 4, monkeypatch)
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match=rf"cannot resume from .*step-00000004: {re.escape(message)}"):
        finetune(args(data, out, **change))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files  # nothing touched


def test_the_cli_refuses_a_changed_data_option_in_one_line(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    run_until(args(data, out), 2, monkeypatch)
    with pytest.raises(SystemExit) as exit:
        cli(["finetune", "--task", "regress", "--model", str(data["model"]), "--train", str(data["train"]),
             "--dev", str(data["dev"]), "--out", str(out), "--epochs", "3", "--lr", "2e-3", "--batch-size", "16",
             "--seeds", "1", "2", "--save-every", "2", "--max-length", "64", "--no-progress"])
    error = capsys.readouterr().err
    assert exit.value.code == 2 and error.count("\n") == 1, error
    assert "--max-length was 128 and is 64 now" in error and "--log-every" not in error, error


def test_save_every_and_keep_last_decide_which_checkpoints_exist(data, tmp_path, monkeypatch):
    for save_every, keep_last, cut, kept in ((None, 2, 6, [3, 6]), (2, 2, 8, [6, 8]), (2, 3, 8, [4, 6, 8]),
                                             (4, 1, 8, [8])):
        out = tmp_path / f"run-{save_every}-{keep_last}"
        run_until(args(data, out, save_every=save_every, keep_last=keep_last), cut, monkeypatch)
        assert sorted(int(p.name.split("-")[1]) for p in (out / "checkpoints").iterdir()) == kept, (save_every,
                                                                                                   keep_last)
    state = load_checkpoint(latest_checkpoint(tmp_path / "run-2-3" / "checkpoints"))
    assert state["position"] == {"seed": 0, "epoch": 2, "batch": 2, "step": 8}  # the next batch: epoch 3's third
    assert state["best"]["epoch"] == 0 and state["best"]["weights"].keys() == state["model"].keys()
    state = load_checkpoint(tmp_path / "run-None-2" / "checkpoints" / "step-00000003")
    assert state["best"]["epoch"] == 0 and state["best"]["weights"] is None  # the model itself: not saved twice


def test_optimizer_and_schedule_change_the_weights_and_are_recorded(data, tmp_path):
    """One seed, 2 epochs (6 steps, 1 of warm-up): each choice trains other weights than the default, which is
    AdamW with linear decay (the same weights, bit for bit, when named)."""
    def run(name, **flags):
        finetune(args(data, tmp_path / name, seeds=[1], epochs=2, **flags))
        return weights(tmp_path / name)

    default = run("default")
    named = run("named", optimizer="adamw", schedule="linear")
    assert all(torch.equal(default[k], named[k]) for k in default)
    for flags in ({"optimizer": "lamb"}, {"schedule": "cosine"}, {"schedule": "constant"},
                  {"optimizer": "lamb", "schedule": "cosine"}):
        name = "-".join(flags.values())
        assert any(not torch.equal(default[k], w) for k, w in run(name, **flags).items()), flags
        recorded = json.loads((tmp_path / name / "finetune_args.json").read_text())
        assert {k: recorded[k] for k in flags} == flags
        assert {k: read_run_config(latest_checkpoint(tmp_path / name / "checkpoints"))[k] for k in flags} == flags


def test_a_bad_optimizer_or_schedule_is_a_clear_error(data, tmp_path, capsys):
    with pytest.raises(UsageError, match="--optimizer: invalid choice 'sgd'; choose from adamw, lamb"):
        args(data, tmp_path / "a", optimizer="sgd")
    with pytest.raises(UsageError, match="--schedule: invalid choice 'step'; choose from linear, cosine, constant"):
        args(data, tmp_path / "b", schedule="step")
    with pytest.raises(UsageError, match="--seeds: seed 1 is given twice"):
        args(data, tmp_path / "c", seeds=[1, 2, 1])
    for flag, value in (("--optimizer", "sgd"), ("--schedule", "step")):
        with pytest.raises(SystemExit) as exit:
            cli(["finetune", "--task", "classify", "--model", "m", "--train", "t", "--dev", "d", "--out", "o",
                 flag, value])
        assert exit.value.code == 2
        assert f"argument {flag}: invalid choice: '{value}'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_sigkill_mid_epoch_then_the_same_command_equals_an_uninterrupted_run(data, tmp_path):
    """The real thing: `bertforge finetune` killed with SIGKILL after its first checkpoint, run again."""
    def start(out):
        argv = ["finetune", "--task", "classify", "--model", str(data["model"]), "--train", str(data["long_train"]),
                "--dev", str(data["long_dev"]), "--out", str(out), "--epochs", "2", "--lr", "2e-3",
                "--batch-size", "16", "--seeds", "1", "2", "--save-every", "3", "--log-every", "1", "--no-progress"]
        return subprocess.Popen([sys.executable, "-m", "bertforge", *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})

    straight = start(tmp_path / "straight")
    output = straight.communicate(timeout=300)[0]
    assert straight.returncode == 0, output
    killed = start(tmp_path / "killed")
    checkpoints, deadline = tmp_path / "killed" / "checkpoints", time.time() + 240
    while not any(checkpoints.glob("step-*/checkpoint.json")) and killed.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "eval_results.json").exists()
    position = load_checkpoint(latest_checkpoint(checkpoints))["position"]
    assert position["seed"] == 0 and position["batch"] > 0  # cut in the middle of the first seed's epoch

    resumed = start(tmp_path / "killed")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert "resuming from" in output
    assert_same_run(tmp_path / "straight", tmp_path / "killed")
