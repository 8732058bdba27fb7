import json
import random
import warnings

import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch
from torch import nn

from bertforge.train import checkpoint as ckpt
from bertforge.train.checkpoint import (capture_rng_state, latest_checkpoint, load_checkpoint,
                                        restore_rng_state, save_checkpoint)
from bertforge.train.optim import build_optimizer
from bertforge.train.schedule import build_schedule

VOCAB, HIDDEN = 13, 8


class TiedLM(nn.Module):
    """A tiny masked-LM shape: tied embedding/decoder, LayerNorm, dropout (so RNG state matters)."""

    def __init__(self):
        super().__init__()
        self.embeddings = nn.Embedding(VOCAB, HIDDEN)
        self.dense = nn.Linear(HIDDEN, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN)
        self.dropout = nn.Dropout(0.2)
        self.decoder = nn.Linear(HIDDEN, VOCAB)
        self.decoder.weight = self.embeddings.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.dropout(self.LayerNorm(torch.tanh(self.dense(self.embeddings(ids))))))


def _setup(seed: int = 0):
    torch.manual_seed(seed), np.random.seed(seed), random.seed(seed)
    model = TiedLM()
    opt = build_optimizer(model, "adamw", lr=1e-2)
    sched = build_schedule(opt, warmup_steps=3, total_steps=10)
    data_gen = torch.Generator().manual_seed(1234)
    return model, opt, sched, data_gen


def _train(model, opt, sched, data_gen, steps: int) -> None:
    for _ in range(steps):
        ids = torch.randint(0, VOCAB, (4, 6), generator=data_gen)  # the "data loader"
        noise = torch.rand(()) + np.random.rand() + random.random()  # global RNGs in the loss
        loss = nn.functional.cross_entropy(model(ids).flatten(0, 1), ids.flatten()) * (1 + 0.01 * noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def _state(model, opt, sched, data_gen, step: int) -> dict:
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": capture_rng_state({"data": data_gen}), "data": {"epoch": 0, "batch": step},
            "config": {"lr": 1e-2}}


def test_resume_continues_training_identically(tmp_path):
    model, opt, sched, gen = _setup()
    _train(model, opt, sched, gen, 10)
    straight = {k: v.clone() for k, v in model.state_dict().items()}

    model, opt, sched, gen = _setup()
    _train(model, opt, sched, gen, 5)
    path = save_checkpoint(tmp_path, 5, _state(model, opt, sched, gen, 5))
    _train(model, opt, sched, gen, 3)  # the run goes on (and moves the RNGs) before it "crashes"

    model, opt, sched, gen = _setup(seed=99)  # fresh objects, different init
    assert latest_checkpoint(tmp_path) == path
    state = load_checkpoint(path)
    assert state["step"] == 5 and state["data"] == {"epoch": 0, "batch": 5}
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    restore_rng_state(state["rng"], {"data": gen})
    assert model.decoder.weight is model.embeddings.weight  # still tied
    _train(model, opt, sched, gen, 5)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, straight[name], rtol=0, atol=1e-7, msg=name)


def test_tied_weights_stored_once_and_restored(tmp_path):
    model = TiedLM()
    path = save_checkpoint(tmp_path, 1, {"model": model})  # a module is accepted too
    with safetensors.safe_open(path / "model.safetensors", framework="pt") as f:
        stored = set(f.keys())
    assert "embeddings.weight" in stored and "decoder.weight" not in stored
    loaded = load_checkpoint(path)["model"]
    assert loaded.keys() == model.state_dict().keys()
    assert loaded["decoder.weight"] is loaded["embeddings.weight"]
    torch.testing.assert_close(loaded["decoder.weight"], model.decoder.weight, rtol=0, atol=0)


def test_overlapping_and_strided_views_are_copied(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    state = {"base": base, "row": base[1], "col": base[:, 2], "t": base.t()}
    loaded = load_checkpoint(save_checkpoint(tmp_path, 0, {"model": state}))["model"]
    for name, value in state.items():
        torch.testing.assert_close(loaded[name], value, rtol=0, atol=0)


def test_keep_last_prunes_oldest(tmp_path):
    for step in range(1, 6):
        save_checkpoint(tmp_path, step * 100, {"data": step}, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000400", "step-00000500"]
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000500"
    save_checkpoint(tmp_path, 500, {"data": "again"}, keep_last=2)  # same step: replaced
    assert load_checkpoint(tmp_path / "step-00000500")["data"] == "again"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000400", "step-00000500"]


def _write_half_then_fail(obj, path, *args, **kwargs):
    with open(path, "wb") as f:
        f.write(b"\x00" * 100)  # part of a file, then the "disk is full"
    raise OSError("No space left on device")


@pytest.mark.parametrize("target", ["model", "trainer"])
def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch, target):
    good = save_checkpoint(tmp_path, 1, {"model": TiedLM(), "data": 1})
    if target == "model":
        monkeypatch.setattr(safetensors.torch, "save_file", _write_half_then_fail)
    else:
        monkeypatch.setattr(torch, "save", _write_half_then_fail)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path, 2, {"model": TiedLM(), "data": 2})
    assert [p.name for p in tmp_path.iterdir()] == [good.name]  # no step-2, tmp dir removed
    assert latest_checkpoint(tmp_path) == good
    assert load_checkpoint(good)["data"] == 1


def test_killed_writer_leaves_only_an_ignored_tmp_dir(tmp_path):
    good = save_checkpoint(tmp_path, 1, {"data": 1})
    # a process killed mid-save: a whole-looking copy still under its temporary name
    stale = tmp_path / ".tmp-step-00000002-deadbeef"
    save_checkpoint(tmp_path / "elsewhere", 2, {"data": 2}).rename(stale)
    assert latest_checkpoint(tmp_path) == good
    save_checkpoint(tmp_path, 3, {"data": 3})  # the next save cleans it up
    assert not stale.exists()


@pytest.mark.parametrize(
    "damage", ["truncated_json", "garbage_json", "missing_json", "short_file", "missing_file"]
)
def test_broken_newest_checkpoint_is_skipped_with_warning(tmp_path, damage):
    good = save_checkpoint(tmp_path, 1, {"model": {"w": torch.ones(3)}, "data": 1})
    bad = save_checkpoint(tmp_path, 2, {"model": {"w": torch.ones(3)}, "data": 2})
    manifest = bad / "checkpoint.json"
    if damage == "truncated_json":
        manifest.write_text(manifest.read_text()[:40])
    elif damage == "garbage_json":
        manifest.write_bytes(b"\xff\x00not json")
    elif damage == "missing_json":
        manifest.unlink()
    elif damage == "short_file":
        data = (bad / "trainer_state.pt").read_bytes()
        (bad / "trainer_state.pt").write_bytes(data[: len(data) // 2])
    else:
        (bad / "model.safetensors").unlink()
    with pytest.warns(UserWarning, match="step-00000002"):
        assert latest_checkpoint(tmp_path) == good
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        load_checkpoint(bad)


def test_no_checkpoint(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (tmp_path / "step-notanumber").mkdir()
        assert latest_checkpoint(tmp_path) is None


def _draws(torch_gen: torch.Generator, np_gen: np.random.Generator) -> list:
    return [random.random(), np.random.rand(3).tolist(), np.random.randn(), torch.rand(3).tolist(),
            torch.randn(2, generator=torch_gen).tolist(), np_gen.normal(size=2).tolist()]


def test_rng_round_trip_through_a_checkpoint(tmp_path):
    torch_gen, np_gen = torch.Generator().manual_seed(7), np.random.default_rng(7)
    _draws(torch_gen, np_gen)
    np.random.randn()  # leaves a cached gaussian in numpy's legacy state
    gens = {"torch_gen": torch_gen, "np_gen": np_gen}
    path = save_checkpoint(tmp_path, 0, {"rng": capture_rng_state(gens)})
    before = _draws(torch_gen, np_gen)
    _draws(torch_gen, np_gen)  # move everything on
    restore_rng_state(load_checkpoint(path)["rng"], gens)
    assert _draws(torch_gen, np_gen) == before
    with pytest.raises(KeyError, match="other"):
        restore_rng_state(capture_rng_state(), {"other": torch_gen})


def test_checkpoint_json_lists_files_with_sizes(tmp_path):
    path = save_checkpoint(tmp_path, 42, {"model": {"w": torch.zeros(4)}, "metrics": {"loss": 1.5}})
    manifest = json.loads((path / "checkpoint.json").read_text())
    assert manifest["step"] == 42 and manifest["complete"] is True
    assert manifest["files"] == {name: (path / name).stat().st_size
                                 for name in ("model.safetensors", "trainer_state.pt")}
    assert sorted(p.name for p in path.iterdir()) == [
        "checkpoint.json", "model.safetensors", "trainer_state.pt"]
    assert ckpt.load_checkpoint(path)["metrics"] == {"loss": 1.5}
