"""What only a GPU can show: bertforge's CUDA paths give the CPU's results, train in mixed precision, skip a
non-finite step on the device, never wait for the device inside a training step, and resume exactly.

Skipped where there is no CUDA device (CI and this project's CPU machines). `benchmarks/device_check.sh` runs
this module first on a lent GPU. ``BERTFORGE_TEST_DEVICE=cpu`` runs the same checks on the CPU, to check the
checks themselves: the device-against-CPU comparisons then compare the CPU's unpadded path with its padded
path, and the CUDA-only checks skip.
"""

import copy
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from bertforge.config import BertConfig
from bertforge.inference import encode
from bertforge.model import BertForSequenceClassification, BertModel
from bertforge.model import unpadded
from bertforge.train.optim import build_optimizer
from bertforge.train.runtime import Runtime, Stepper, host_synchronisations
from bertforge.train.schedule import build_schedule
from bertforge.vocab import train_vocab



def _device() -> torch.device | None:
    forced = os.environ.get("BERTFORGE_TEST_DEVICE")
    if forced:
        return torch.device(forced)
    return torch.device("cuda") if torch.cuda.is_available() else None


DEVICE = _device()
pytestmark = pytest.mark.skipif(DEVICE is None, reason="no CUDA device (BERTFORGE_TEST_DEVICE=cpu runs these "
                                                       "checks on the CPU)")
cuda_only = pytest.mark.skipif(DEVICE is None or DEVICE.type != "cuda", reason="CUDA only")
TOL = 1e-4  # fp32 on both sides; the GPU's kernels add in other orders than the CPU's
LABELS = {"id2label": {"0": "a", "1": "b", "2": "c"}}


@pytest.fixture(autouse=True)
def ieee_fp32(monkeypatch):
    """fp32 matmuls in full precision on the GPU (no TF32), so that fp32 results compare with the CPU's."""
    if torch.cuda.is_available():
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def config(**kw) -> BertConfig:
    return BertConfig(**{**dict(vocab_size=120, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                intermediate_size=128, max_position_embeddings=64), **kw})


def without_dropout(model):
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    for m in model.modules():
        if hasattr(m, "dropout_p"):
            m.dropout_p = 0.0
    return model


def batch(lengths, seed=0, labels=False):
    """Right-padded ids, token types (a second segment from the middle of each row), mask (and labels)."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    mask = (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).long()
    out = {"input_ids": torch.randint(5, 120, (len(lengths), T), generator=g) * mask,
           "token_type_ids": (torch.arange(T)[None] >= torch.tensor(lengths)[:, None] // 2).long() * mask,
           "attention_mask": mask}
    if labels:
        out["labels"] = torch.randint(0, 3, (len(lengths),), generator=g)
    return out


def on(device, b):
    return {k: unpadded.to_device(v, device) for k, v in b.items()}


def assert_close(a, b, what=""):
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    assert a.shape == b.shape, what
    err = (a - b).abs().max().item()
    assert err <= TOL * max(1.0, b.abs().max().item()), f"{what}: max difference {err:.3g}"


@pytest.mark.parametrize("variant", ["repad", "jagged", "loop", "bucket"])
@pytest.mark.parametrize("causal", [False, True])
def test_the_encoder_on_the_device_equals_the_padded_encoder_on_the_cpu(monkeypatch, variant, causal):
    """Every attention variant of the unpadded path (jagged falls back to repad when causal), outputs at the
    real tokens and every gradient, against the padded path on the CPU."""
    monkeypatch.setitem(unpadded.ATTENTION, DEVICE.type, variant)
    torch.manual_seed(0)
    reference = without_dropout(BertModel(config(is_decoder=causal))).train()
    reference.unpad_threshold = float("inf")
    model = copy.deepcopy(reference).to(DEVICE)
    model.unpad_threshold = 0.0
    b = batch([9, 3, 12, 7, 12])
    real = b["attention_mask"].bool()
    results = []
    for m, inputs in ((reference, b), (model, on(DEVICE, b))):
        out = m(**inputs)
        hidden = out.last_hidden_state * inputs["attention_mask"][..., None]
        (hidden.pow(2).sum() + out.pooler_output.sum()).backward()
        results.append((hidden, out.pooler_output, {n: p.grad for n, p in m.named_parameters()}))
    (h_cpu, p_cpu, g_cpu), (h_dev, p_dev, g_dev) = results
    assert_close(h_dev.cpu()[real], h_cpu[real], "hidden states")
    assert_close(p_dev, p_cpu, "pooler")
    for name, grad in g_cpu.items():
        assert_close(g_dev[name], grad, name)


def test_a_classifier_loss_and_gradients_on_the_device_equal_the_cpu():
    """The sentence head's shortcut (the last layer at one position) and the loss, on the device."""
    torch.manual_seed(0)
    reference = without_dropout(BertForSequenceClassification(config(extra=LABELS))).train()
    reference.bert.unpad_threshold = float("inf")
    model = copy.deepcopy(reference).to(DEVICE)
    model.bert.unpad_threshold = 0.0
    b = batch([9, 3, 12, 7], labels=True)
    losses = []
    for m, inputs in ((reference, b), (model, on(DEVICE, b))):
        loss = m(**inputs).loss
        loss.backward()
        losses.append(loss)
    assert_close(losses[1], losses[0], "loss")
    grads = dict(model.named_parameters())
    for name, p in reference.named_parameters():
        assert_close(grads[name].grad, p.grad, name)


def test_encode_on_the_device_equals_the_cpu():
    texts = ["the cat sat on the mat", "a dog", "the red bird sings over the green house near the river",
             "cats", "a big dog runs quickly under the small tree"] * 7
    tokenizer = train_vocab(texts, 60, min_frequency=1)
    torch.manual_seed(0)
    model = BertModel(config(vocab_size=tokenizer.vocab_size)).eval()
    for pooling in ("mean", "cls", "pooler"):
        cpu = encode(model, tokenizer, texts, pooling=pooling, max_batch_size=8)
        dev = encode(copy.deepcopy(model).to(DEVICE), tokenizer, texts, pooling=pooling, max_batch_size=8)
        assert_close(dev, cpu, pooling)


def stepper(model, amp="off"):
    optimizer = build_optimizer(model, "adamw", lr=1e-3)
    return Stepper(Runtime(device=DEVICE, amp=amp), model, optimizer, build_schedule(optimizer, 2, 20, "linear"),
                   ("loss",))


def loss_fn(net, b):
    return {"loss": net(**b).loss}


def counts_fn(b):
    return {"loss": len(b["labels"])}


BATCHES = [batch([9, 4, 13, 7], seed=s, labels=True) for s in range(3)] + [batch([13] * 4, seed=3, labels=True)]


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_training_follows_fp32(amp):
    """Four steps in bf16 (fp16 with its loss scaler) land near the fp32 steps: finite, none skipped, the same
    losses to the precision's width."""
    if DEVICE.type == "cuda" and amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    records = {}
    for mode in ("off", amp):
        torch.manual_seed(0)
        model = without_dropout(BertForSequenceClassification(config(extra=LABELS))).to(DEVICE).train()
        s = stepper(model, mode)
        records[mode] = []
        for b in BATCHES:
            s.step([b], loss_fn, counts_fn)
            records[mode].append(s.read())
    for fp32, mixed in zip(records["off"], records[amp]):
        assert np.isfinite(mixed["loss"]) and mixed["skipped_steps"] == 0
        assert abs(mixed["loss"] - fp32["loss"]) < 0.05, (fp32, mixed)


def test_a_non_finite_step_is_skipped_on_the_device():
    torch.manual_seed(0)
    model = BertForSequenceClassification(config(extra=LABELS)).to(DEVICE).train()
    s = stepper(model)
    s.step([BATCHES[0]], loss_fn, counts_fn)  # the optimizer's state exists from here
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    poison = model.classifier.weight.register_hook(lambda g: torch.full_like(g, float("inf")))
    s.step([BATCHES[1]], loss_fn, counts_fn)
    poison.remove()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters()), "a non-finite step moved weights"
    assert s.read()["skipped_steps"] == 1
    s.step([BATCHES[2]], loss_fn, counts_fn)
    assert not torch.equal(model.classifier.weight, before["classifier.weight"])
    assert s.read()["skipped_steps"] == 1


@cuda_only
@pytest.mark.parametrize("unpad_threshold", [None, 0.0], ids=["device-default", "unpadded"])
@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_a_training_step_never_waits_for_the_device(amp, unpad_threshold):
    """CUDA's own sync checker (torch.cuda.set_sync_debug_mode) over fine-tuning steps on padded batches, on the
    device's default path (padded on a GPU) and the unpadded one (which reads row lengths from host copies), after
    a first step that builds the state."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(config(extra=LABELS)).to(DEVICE).train()
    model.bert.unpad_threshold = unpad_threshold
    s = stepper(model, amp)
    s.step([BATCHES[0]], loss_fn, counts_fn)
    torch.cuda.synchronize()
    with host_synchronisations() as synced:
        for b in BATCHES[1:]:
            s.step([b], loss_fn, counts_fn)
    assert not synced, synced
    assert np.isfinite(s.read()["loss"])


def test_pretraining_on_the_device_resumes_after_sigkill(tmp_path):
    """`bertforge pretrain` on the device (fp32, so the kernels' order is the only difference between the runs),
    killed after its step-10 checkpoint and run again, ends where the uninterrupted run ends."""
    rng = np.random.default_rng(0)
    words = "the a cat dog runs sees big small red green house tree river walks bird sings over under".split()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join("\n".join(" ".join(rng.choice(words, rng.integers(4, 12))) + "."
                                            for _ in range(rng.integers(3, 8))) for _ in range(120)) + "\n")
    train_vocab([corpus.read_text()], 80).save_pretrained(tmp_path / "tok")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0")}
    if DEVICE.type != "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ""

    def run(out):
        argv = ["--corpus", str(corpus), "--tokenizer", str(tmp_path / "tok"), "--out", str(out), "--preset",
                "tiny", "--seq-len", "32", "--batch-size", "8", "--max-steps", "20", "--save-every", "10",
                "--eval-every", "10", "--log-every", "5", "--warmup-steps", "4", "--lr", "1e-3", "--workers", "1",
                "--eval-instances", "32", "--amp", "off", "--no-progress"]
        return subprocess.Popen([sys.executable, "-m", "bertforge", "pretrain", *argv], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    straight = run(tmp_path / "straight")
    output = straight.communicate(timeout=600)[0]
    assert straight.returncode == 0, output
    killed = run(tmp_path / "killed")
    marker = tmp_path / "killed" / "checkpoints" / "step-00000010" / "checkpoint.json"
    deadline = time.time() + 300
    while not marker.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    resumed = run(tmp_path / "killed")
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0 and "resuming from" in output, output
    from safetensors.torch import load_file

    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert_close(b[k], a[k], k)
