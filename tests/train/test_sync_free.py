"""A training step never waits for the device: no tensor value is read on the host between the step's
host preparation (counts, copies to the device) and the next step, for pre-training and fine-tuning.

On the CPU reading a tensor costs nothing, so the test plays an accelerator: ``unpadded.free_to_read`` says
no tensor is free to read, and every call that would copy a device value to the host (``item``, ``tolist``,
``bool``, ``float``, ``int``, ``numpy``...) is counted while the step runs on the device. Logging reads
(``Stepper.read``) happen every ``--log-every`` steps and are not part of a step.
"""

import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from bertforge.config import BertConfig
from bertforge.data.masking import SpecialIds
from bertforge.model import BertForSequenceClassification
from bertforge.model import unpadded
from bertforge.objectives import MaskedLM, MaskedLMWithNSP, MaskingSettings
from bertforge.train.optim import build_optimizer
from bertforge.train.runtime import Runtime, Stepper, host_synchronisations
from bertforge.train.schedule import build_schedule

READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "cpu")


@contextmanager
def counted_reads(monkeypatch):
    """Count host reads of tensor values while ``state["on"]``; the Stepper's host preparation is exempt."""
    state = {"on": False, "calls": []}
    for name in READS:
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, __original=original, __name=name, **kwargs):
            if state["on"]:
                state["calls"].append(__name)
            return __original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, wrapper)
    prepare = Stepper.prepare

    def host_prepare(self, *args, **kwargs):
        on, state["on"] = state["on"], False
        try:
            return prepare(self, *args, **kwargs)
        finally:
            state["on"] = on
    monkeypatch.setattr(Stepper, "prepare", host_prepare)
    monkeypatch.setattr(unpadded, "free_to_read", lambda t: False)  # as on an accelerator
    yield state


def config(**kw):
    return BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64, **kw)


def stepper_for(model, loss_names):
    optimizer = build_optimizer(model, "adamw", lr=1e-3)
    assert getattr(optimizer, "_step_supports_amp_scaling", False)  # the fused kernel: skips on the device
    return Stepper(Runtime(), model, optimizer, build_schedule(optimizer, 2, 10, "linear"), loss_names)


def run_steps(state, stepper, batches, loss_fn, counts_fn):
    calls = []
    for batch in batches:
        state["on"], state["calls"] = True, []
        stepper.step([batch], loss_fn, counts_fn)
        state["on"] = False
        calls.append(list(state["calls"]))
    return calls


def pretraining_batches(objective, n=3, width=24):
    rng = np.random.default_rng(0)
    out = []
    for step in range(n):
        lengths = np.array([width, width - 3, width - 9, 11])  # padding: the unpadded path runs too
        tokens = rng.integers(5, 120, (4, width))
        tokens[:, 0] = 2
        rows = {"tokens": tokens, "lengths": lengths, "b_start": lengths // 2,
                "is_random_next": rng.integers(0, 2, 4).astype(bool)}
        out.append(objective.make_batch(rows, np.arange(4) + 4 * step, epoch=0))
    return out


@pytest.mark.parametrize("objective_class", [MaskedLMWithNSP, MaskedLM])
def test_pretraining_step_reads_nothing_from_the_device(monkeypatch, objective_class):
    torch.manual_seed(0)
    objective = objective_class(SpecialIds(cls=2, sep=3, mask=4, pad=0, vocab_size=120), seed=0,
                                masking=MaskingSettings())
    model = objective.build_model(config())
    objective.configure(model)
    stepper = stepper_for(model, objective.loss_names)
    with counted_reads(monkeypatch) as state:
        calls = run_steps(state, stepper, pretraining_batches(objective), objective.losses, objective.counts)
    assert calls == [[]] * len(calls), f"host reads in a pre-training step: {calls}"
    record = stepper.read()  # the logging read, outside the step
    assert np.isfinite(record["loss"]) and record["skipped_steps"] == 0


def test_finetuning_step_reads_nothing_from_the_device(monkeypatch):
    torch.manual_seed(0)
    model = BertForSequenceClassification(config(extra={"id2label": {"0": "a", "1": "b", "2": "c"}}))
    lengths = [[9, 4, 13, 7], [13, 13, 13, 13], [3, 11, 6, 12]]  # uneven, then full, then uneven
    batches = []
    for row_lengths in lengths:
        T = max(row_lengths)
        mask = (torch.arange(T)[None] < torch.tensor(row_lengths)[:, None]).long()
        batches.append({"input_ids": torch.randint(5, 120, (4, T)) * mask, "token_type_ids": torch.zeros(4, T).long(),
                        "attention_mask": mask, "labels": torch.randint(0, 3, (4,))})
    used = []
    layout = model.bert._layout
    monkeypatch.setattr(model.bert, "_layout", lambda *a: used.append(layout(*a)) or used[-1])

    def loss_fn(net, batch):
        return {"loss": net(**batch).loss}

    stepper = stepper_for(model, ("loss",))
    with counted_reads(monkeypatch) as state:
        calls = run_steps(state, stepper, batches, loss_fn, lambda b: {"loss": len(b["labels"])})
    assert calls == [[]] * len(calls), f"host reads in a fine-tuning step: {calls}"
    assert [u is not None for u in used] == [True, False, True]  # the padded batches ran unpadded
    assert np.isfinite(stepper.read()["loss"])


def test_finetuning_batches_are_random_by_default_and_fixed_by_seed_and_epoch():
    """What the fine-tuning steps above are fed (FinetuneRecipe._global_batches): a random order of the whole
    set, cut into batches, the same for the same (seed, epoch); --group-by-length sorts within chunks."""
    from bertforge.data.batching import bucketed_batches
    from bertforge.train.finetune import GROUP_CHUNK_BATCHES, random_batches

    batches = random_batches(100, 32, seed=1, epoch=0)
    assert [len(b) for b in batches] == [32, 32, 32, 4]
    assert sorted(i for b in batches for i in b) == list(range(100))
    assert batches == random_batches(100, 32, seed=1, epoch=0)
    assert batches != random_batches(100, 32, seed=1, epoch=1) != random_batches(100, 32, seed=2, epoch=0)
    lengths = [(7 * i) % 50 + 3 for i in range(1000)]
    grouped = bucketed_batches(lengths, 32, shuffle=True, seed=1, epoch=0, chunk_batches=GROUP_CHUNK_BATCHES)
    spread = lambda bs: np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in bs])
    assert spread(grouped) < spread(random_batches(1000, 32, seed=1, epoch=0)) / 5


def test_host_synchronisations_keeps_the_checkers_warnings_but_not_its_prototype_notice(monkeypatch):
    """What tests/test_cuda.py and benchmarks/gpu.py count on a GPU: CUDA's sync checker is switched on for the
    block and off after it, even when the block fails; its notice that it is a prototype (torch >= 2.11, which
    names "synchronization" too) and unrelated warnings are not synchronisations."""
    modes = []
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)
    with host_synchronisations() as found:
        warnings.warn("Synchronization debug mode is a prototype feature and does not yet detect all "
                      "synchronizing operations")
        warnings.warn("called a synchronizing CUDA operation\n  File ...")
        warnings.warn("an unrelated warning")
    assert found == ["called a synchronizing CUDA operation"] and modes == ["warn", "default"]
    with pytest.raises(KeyError), host_synchronisations():
        raise KeyError
    assert modes[-1] == "default"
