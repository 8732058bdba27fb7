"""ELECTRA's objective: replaced-token-detection labels, the lambda weighting, the shared embeddings, repeatable
sampling from the generator's softmax, the FLOPs count against a hand computation, a short run that learns, the
command line end to end (transformers loads both models), and bad input."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bertforge.constants import IGNORE_INDEX
from bertforge.data.masking import SpecialIds
from bertforge.errors import ConfigError, UsageError
from bertforge.model.electra import ElectraConfig, ElectraPair, sample_tokens
from bertforge.objectives import OBJECTIVES, MaskingSettings, ReplacedTokenDetection
from bertforge.train.settings import PretrainArgs

SP = SpecialIds(cls=2, sep=3, mask=4, pad=0, vocab_size=120)
CONFIG = dict(vocab_size=120, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
              attention_probs_dropout_prob=0.0)


def rows(n=6, width=24, seed=0):
    """Stored packed instances [CLS] text [SEP] of lengths 10..24 (so a batch has padding)."""
    rng = np.random.default_rng(seed)
    tokens = np.zeros((n, width), dtype=np.uint16)
    lengths = rng.integers(10, width + 1, n).astype(np.int16)
    lengths[0] = width
    for r, m in enumerate(lengths):
        tokens[r, :m] = [SP.cls, *rng.integers(10, 120, m - 2), SP.sep]
    return {"tokens": tokens, "lengths": lengths, "b_start": lengths.copy()}


def objective(seed=3, **fields):
    return ReplacedTokenDetection(SP, seed=seed, masking=MaskingSettings(masked_lm_prob=0.3), **fields)


def model_of(obj, seed=0):
    torch.manual_seed(seed)
    return obj.build_model(ElectraConfig(**CONFIG)).eval()


def batch_of(obj, epoch=0, data=None):
    data = rows() if data is None else data
    return obj.make_batch(data, np.arange(len(data["lengths"])), epoch)


def test_rtd_labels_are_the_sampled_tokens_that_differ_from_the_original():
    obj = objective()
    model, batch = model_of(obj), batch_of(obj)
    with torch.no_grad():
        out = obj._forward(model, batch)
    labels, real = batch["labels"], batch["attention_mask"].bool()
    masked = labels != IGNORE_INDEX
    original = torch.where(masked, labels, batch["input_ids"])
    # The draws, recomputed independently: inverse CDF of the generator's softmax (float64) at the batch's uniforms.
    probs = out.prediction_logits.double().softmax(-1).numpy()
    u = batch["uniforms"][masked].double().numpy()
    drawn = np.array([np.searchsorted(np.cumsum(p), x * p.sum(), side="right") for p, x in zip(probs, u)])
    corrupted = out.discriminator_input_ids
    assert torch.equal(corrupted[masked], torch.from_numpy(drawn))
    assert torch.equal(corrupted[~masked], original[~masked])  # only the masked positions are replaced
    expected = ((corrupted != original) & real).long()
    assert torch.equal(out.rtd_labels, expected)
    assert 0 < int(expected.sum()) <= int(masked.sum())
    assert not out.rtd_labels[~real].any()
    # The loss is transformers' BCE over the real tokens, at the discriminator's logits.
    bce = F.binary_cross_entropy_with_logits(out.rtd_logits[real], expected[real].float())
    assert abs(out.rtd_loss.item() - bce.item()) < 1e-6


def test_a_sample_equal_to_the_original_is_labelled_original():
    obj = objective()
    model = model_of(obj)
    data = rows()
    data["tokens"][:, 1:] = np.where(data["tokens"][:, 1:] > 3, 50, data["tokens"][:, 1:])  # a text of one word
    batch = batch_of(obj, data=data)
    with torch.no_grad():  # a generator that always predicts that word: nothing is replaced
        model.generator.generator_lm_head.bias[50] = 100.0
        out = obj._forward(model, batch)
    assert (batch["labels"] != IGNORE_INDEX).any()
    assert not out.rtd_labels.any()


def test_the_discriminator_loss_is_weighted_by_lambda():
    obj, light = objective(), objective(disc_weight=1.0)
    assert obj.disc_weight == 50.0  # the paper's lambda, the default
    model, batch = model_of(obj), batch_of(obj)
    with torch.no_grad():
        out = obj._forward(model, batch)
        heavy_losses, light_losses = obj.losses(model, batch), light.losses(model, batch)
    real = batch["attention_mask"].bool()
    bce = F.binary_cross_entropy_with_logits(out.rtd_logits[real], out.rtd_labels[real].float()).item()
    assert abs(heavy_losses["weighted_rtd"].item() - 50.0 * bce) < 1e-4
    assert abs(light_losses["weighted_rtd"].item() - bce) < 1e-6
    assert heavy_losses["mlm"].item() == light_losses["mlm"].item() == out.mlm_loss.item()
    counts = obj.counts(batch)
    assert counts == {"mlm": int((batch["labels"] != IGNORE_INDEX).sum()), "weighted_rtd": int(real.sum())}


def test_the_generator_shares_the_discriminators_embeddings():
    model = model_of(objective())
    ours, theirs = model.generator.electra.embeddings, model.discriminator.electra.embeddings
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm"):
        assert getattr(ours, name) is getattr(theirs, name), name
    assert model.generator.generator_lm_head.weight is theirs.word_embeddings.weight
    assert model.generator.config.hidden_size == 8 == CONFIG["hidden_size"] // 4
    assert model.generator.electra.embeddings_project.weight.shape == (8, 16)  # its own projection
    shared = sum(p.numel() for p in theirs.parameters())
    assert model.num_parameters() == (model.discriminator.num_parameters() + model.generator.num_parameters()
                                      - shared)


def test_gradients_no_gradient_through_sampling():
    obj = objective()
    model, batch = model_of(obj), batch_of(obj)
    model.train()
    obj.losses(model, batch)["weighted_rtd"].backward()
    generator_encoder = model.generator.electra.encoder.layer[0].attention.self.query.weight
    assert generator_encoder.grad is None  # the samples carry no gradient back to the generator
    assert model.discriminator.electra.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    obj.losses(model, batch)["mlm"].backward()
    assert generator_encoder.grad.abs().sum() > 0
    assert model.discriminator.discriminator_predictions.dense.weight.grad is None
    assert model.discriminator.electra.embeddings.word_embeddings.weight.grad.abs().sum() > 0  # shared


def test_the_same_seed_gives_the_same_loss_and_another_seed_other_samples():
    def run(seed, model_seed=0):
        obj = objective(seed=seed)
        model = model_of(obj, model_seed).train()
        batch = batch_of(obj)
        out = obj._forward(model, batch)
        return out.mlm_loss.item(), out.rtd_loss.item(), out.discriminator_input_ids

    a, b, c = run(3), run(3), run(4)
    assert a[:2] == b[:2] and torch.equal(a[2], b[2])
    assert not torch.equal(a[2], c[2])


def test_sampling_draws_from_the_softmax():
    logits = torch.tensor([[2.0, 0.0, -1.0, 1.0, -30.0]]).expand(40000, 5)
    u = torch.from_numpy(np.random.default_rng(0).random(40000).astype(np.float32))
    counts = np.bincount(sample_tokens(logits, u).numpy(), minlength=5) / 40000
    probs = logits[0].softmax(-1).numpy()
    assert np.abs(counts - probs).max() < 4 * np.sqrt(0.25 / 40000)
    assert counts[4] == 0
    assert sample_tokens(torch.zeros(3, 4), torch.tensor([0.0, 0.4999, 0.9999])).tolist() == [0, 1, 3]


def test_batches_repeat_per_instance_and_change_per_epoch():
    obj = objective()
    data = rows()
    e0, again = batch_of(obj, 0, data), batch_of(obj, 0, data)
    assert torch.equal(e0["uniforms"], again["uniforms"])
    assert not torch.equal(e0["uniforms"], batch_of(obj, 1, data)["uniforms"])
    tail = obj.make_batch({k: v[3:] for k, v in data.items()}, np.arange(3, 6), 0)
    width = tail["uniforms"].shape[1]
    assert torch.equal(tail["uniforms"], e0["uniforms"][3:, :width])  # wherever the instance lands
    assert (e0["uniforms"][e0["attention_mask"] == 0] == 0).all()


def full_batch(obj, s=20, n=3):
    tokens = np.random.default_rng(0).integers(5, CONFIG["vocab_size"], (n, s)).astype(np.uint16)
    tokens[:, 0], tokens[:, -1] = SP.cls, SP.sep
    data = {"tokens": tokens, "lengths": np.full(n, s, np.int16), "b_start": np.full(n, s, np.int16),
            "is_random_next": np.zeros(n, np.uint8)}
    return obj.make_batch(data, np.arange(n), 0)


def test_step_flops_against_a_hand_computation():
    """The step FLOPs counted from what runs (train/flops.py) against the ELECTRA paper's way of counting."""
    from bertforge.train.flops import step_flops

    # Discriminator H=32, E=16, I=64, L=2, V=120; generator 1/4: H=8, I=32, one head, E=16; seq 20, batch 3;
    # round(0.3 x 20) = 6 masked positions a sequence.
    obj = objective()
    s = 20
    disc_layer = 2 * (4 * 32 * 32 + 2 * 32 * s + 2 * 32 * 64)  # QKV+output, scores+values, feed-forward
    disc = 2 * 16 * 32 + 2 * disc_layer  # embeddings_project, two layers
    gen_layer = 2 * (4 * 8 * 8 + 2 * 8 * s + 2 * 8 * 32)
    gen = 2 * 16 * 8 + 2 * gen_layer
    disc_head = 2 * (32 * 32 + 32)  # dense H -> H, dense_prediction H -> 1
    gen_head = 2 * (8 * 16 + 16 * 120)  # generator_predictions H -> E, tied output E -> V
    forward = 3 * (s * (disc + gen + disc_head) + 6 * gen_head)
    batch = full_batch(obj)
    assert int((batch["labels"] != -100).sum()) == 3 * 6
    counted = step_flops(obj, model_of(obj).train(), [batch])
    # forward + backward = 3 x forward; the generator's last layer runs at the masked positions alone, and
    # the embedding projection needs no input gradient, so what runs is a little less
    assert 0.99 * 3 * forward <= counted <= 3 * forward
    wider = objective(generator_size=0.5)
    assert step_flops(wider, model_of(wider).train(), [full_batch(wider)]) > counted  # a wider generator costs more


def test_a_training_step_reads_nothing_from_the_device(monkeypatch):
    """As on an accelerator (tests/train/test_sync_free.py): no tensor value is read on the host during the forward
    and backward pass; the masked positions come from the labels' host copy."""
    from bertforge.model import unpadded

    obj = objective()
    model = model_of(obj).train()
    monkeypatch.setattr(unpadded, "free_to_read", lambda t: False)
    batch = {k: unpadded.to_device(v, "cpu") for k, v in batch_of(obj).items()}  # with host copies now
    calls = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "cpu"):
        def counted(self, *args, __original=getattr(torch.Tensor, name), __name=name, **kwargs):
            calls.append(__name)
            return __original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counted)
    losses = obj.losses(model, batch)
    (losses["mlm"] + losses["weighted_rtd"]).backward()
    monkeypatch.undo()
    assert calls == [], calls
    assert model.discriminator.electra.encoder.layer[0].output.dense.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("size", [1.5, 0.0, -1.0])
def test_a_generator_wider_than_the_discriminator_is_refused(size):
    with pytest.raises(ConfigError, match="generator_size"):
        objective(generator_size=size)


def test_only_an_electra_model_continues_and_the_error_lists_what_works(tmp_path):
    from bertforge.model.xlnet import XLNetConfig, XLNetLMHeadModel

    XLNetLMHeadModel(XLNetConfig(vocab_size=120, d_model=32, n_layer=1, n_head=2, d_inner=64)).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=r"holds a xlnet model.*objectives for a xlnet model: plm"):
        objective().load_model(tmp_path)


def test_pretrain_settings_refuse_bad_electra_input(tmp_path):
    corpus = tmp_path / "c.txt"
    with pytest.raises(UsageError, match=r"--generator-size"):
        PretrainArgs(corpus=[str(corpus)], out=str(tmp_path / "o"), objective="electra", generator_size=1.5)
    with pytest.raises(UsageError, match=r"--arch: --objective electra trains electra or roformer, not xlnet.*"
                                         r"--objective plm"):
        PretrainArgs(corpus=[str(corpus)], out=str(tmp_path / "o"), objective="electra", arch="xlnet")
    with pytest.raises(UsageError, match=r"--generator-size.*hidden size 13.*must be even.*--preset tiny"):
        PretrainArgs(corpus=[str(corpus)], out=str(tmp_path / "o"), objective="electra", arch="roformer",
                     preset="tiny", generator_size=0.1)  # 128 x 0.1 -> 13 dims in one rotary head
    PretrainArgs(corpus=[str(corpus)], out=str(tmp_path / "o"), objective="electra", arch="roformer",
                 preset="tiny", generator_size=0.25)  # 32 dims: fine
    with pytest.raises(UsageError, match=r"--preset: modernbert-base is another family's own size; --objective "
                                         r"electra builds electra, in Google's BERT sizes.*--arch modernbert"):
        PretrainArgs(corpus=[str(corpus)], out=str(tmp_path / "o"), objective="electra", preset="modernbert-base")
    args = PretrainArgs(corpus=[str(corpus)], out=str(tmp_path / "o"), arch="electra")
    assert args.objective == "electra" and OBJECTIVES["electra"] is ReplacedTokenDetection


# --- end to end (slow) ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from bertforge.vocab import train_vocab

    rng = np.random.default_rng(0)
    det, adj, noun = ["the", "a"], ["big", "small", "red", "green"], ["cat", "dog", "house", "tree", "river", "bird"]
    verb = ["sees", "likes", "walks", "sings", "runs"]

    def sentence():  # a grammar, so a replaced word is out of place (in random word salad it would not be)
        return " ".join(rng.choice(c) for c in (det, adj, noun, verb, det, noun)).capitalize() + "."

    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    docs = ["\n".join(sentence() for _ in range(rng.integers(3, 8))) for _ in range(120)]
    path.write_text("\n\n".join(docs) + "\n")
    tok_dir = path.parent / "tok"
    train_vocab([path.read_text()], 80).save_pretrained(tok_dir)
    return path, tok_dir


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["electra", "roformer"])
def test_a_short_run_lowers_both_losses(corpus, tmp_path, arch):
    """ELECTRA's own model and RoFormer (rotary positions), at the small-budget recipe's 40% masked: the generator
    learns the words and the discriminator beats the base rate of always answering "original" (at the paper's 15%
    its loss falls to the base rate's entropy in these 30 steps, and no further)."""
    from bertforge.train.pretrain import pretrain

    torch.set_num_threads(1)
    result = pretrain(PretrainArgs(corpus=[str(corpus[0])], tokenizer=str(corpus[1]), out=str(tmp_path),
                                   objective="electra", arch=arch, preset="tiny", seq_len=32, batch_size=8,
                                   max_steps=30, lr=2e-3, warmup_steps=3, eval_every=30, save_every=30,
                                   log_every=5, workers=1, progress=False, eval_fraction=0.2))
    first, last = result["first_eval"], result["final_eval"]
    assert last["eval_mlm_loss"] < first["eval_mlm_loss"] - 0.3  # the generator learns the words
    p = last["eval_replaced_share"]
    base_rate_entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))  # the loss of answering the base rate
    assert last["eval_rtd_loss"] < base_rate_entropy - 0.01 < first["eval_rtd_loss"]  # it spots replacements
    assert last["eval_weighted_rtd_loss"] == pytest.approx(50 * last["eval_rtd_loss"])
    assert 0.3 < last["eval_replaced_share"] < 0.4  # 40% masked, some sampled back as the original
    assert last["eval_rtd_accuracy"] > 1 - last["eval_replaced_share"] + 0.02


@pytest.mark.slow
def test_the_command_line_writes_both_models_that_transformers_loads(corpus, tmp_path, hf):
    out = tmp_path / "run"
    argv = ["--corpus", str(corpus[0]), "--tokenizer", str(corpus[1]), "--out", str(out), "--objective", "electra",
            "--preset", "tiny", "--seq-len", "32", "--batch-size", "4", "--max-steps", "12", "--eval-every", "6",
            "--save-every", "6", "--warmup-steps", "2", "--workers", "1", "--eval-instances", "16", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "bertforge", "pretrain", *argv], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    disc = hf.ElectraForPreTraining.from_pretrained(out / "model").eval()
    gen = hf.ElectraForMaskedLM.from_pretrained(out / "model" / "generator").eval()
    tok = hf.BertTokenizer.from_pretrained(out / "model")
    assert disc.config.hidden_size == 128 and gen.config.hidden_size == 32 and len(tok) == disc.config.vocab_size
    assert torch.equal(disc.electra.embeddings.word_embeddings.weight, gen.electra.embeddings.word_embeddings.weight)
    assert torch.equal(gen.generator_lm_head.weight, gen.electra.embeddings.word_embeddings.weight)  # tied
    ours = ElectraPair.from_pretrained(out / "model").eval()
    ids = tok(["the cat sees a big dog ."], return_tensors="pt")
    with torch.no_grad():
        theirs_logits = disc(**ids).logits
        ours_logits = ours.discriminator(ids["input_ids"], ids["token_type_ids"], ids["attention_mask"]).logits
    assert (theirs_logits - ours_logits).abs().max() < 1e-5
    # The discriminator fine-tunes through the task's ELECTRA head, and predict answers what transformers computes.
    rows = [{"text": t, "label": str(i % 2)} for i, t in enumerate(["the cat sees a dog .", "a big dog runs .",
                                                                    "the bird sings .", "a small house ."] * 4)]
    for name in ("train", "dev"):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tuned = subprocess.run([sys.executable, "-m", "bertforge", "finetune", "--task", "classify", "--model",
                            str(out / "model"), "--train", str(tmp_path / "train.jsonl"), "--dev",
                            str(tmp_path / "dev.jsonl"), "--out", str(tmp_path / "ft"), "--epochs", "1",
                            "--batch-size", "4", "--no-progress"], env=env, capture_output=True, text=True, timeout=300)
    assert tuned.returncode == 0, tuned.stdout + tuned.stderr
    (tmp_path / "in.jsonl").write_text('{"text": "the cat sees a big dog ."}\n')
    predicted = subprocess.run([sys.executable, "-m", "bertforge", "predict", "--model", str(tmp_path / "ft" / "model"),
                                "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "p.jsonl")], env=env,
                               capture_output=True, text=True, timeout=300)
    assert predicted.returncode == 0, predicted.stderr
    clf = hf.ElectraForSequenceClassification.from_pretrained(tmp_path / "ft" / "model").eval()
    with torch.no_grad():
        probs = clf(**ids).logits.softmax(-1)[0]
    answer = json.loads((tmp_path / "p.jsonl").read_text())
    assert answer["label"] == clf.config.id2label[int(probs.argmax())]
    assert abs(answer["score"] - float(probs.max())) < 1e-5
    # A run directory of another family cannot continue as ELECTRA; the error lists what works.
    from bertforge.model.xlnet import XLNetConfig, XLNetLMHeadModel

    XLNetLMHeadModel(XLNetConfig(vocab_size=80, d_model=32, n_layer=1, n_head=2, d_inner=64)).save_pretrained(
        tmp_path / "xlnet")
    shutil.copytree(corpus[1], tmp_path / "xlnet", dirs_exist_ok=True)  # its tokenizer
    bad = subprocess.run([sys.executable, "-m", "bertforge", "pretrain", *argv[:4], "--out", str(tmp_path / "x"),
                          "--objective", "electra", "--init-from", str(tmp_path / "xlnet")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "--init-from" in bad.stderr and "xlnet" in bad.stderr and "plm" in bad.stderr, bad.stderr
    wide = subprocess.run([sys.executable, "-m", "bertforge", "pretrain", *argv[:4], "--out", str(tmp_path / "w"),
                           "--objective", "electra", "--generator-size", "2"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert wide.returncode == 2 and "--generator-size" in wide.stderr, wide.stderr


@pytest.mark.slow
def test_a_resumed_run_ends_with_the_same_weights(corpus, tmp_path, capsys):
    """Interrupted after its step-10 checkpoint (the later checkpoint and the model removed), the run resumes and
    ends where an uninterrupted one does: masks, draws and dropout all repeat."""
    from bertforge.train.pretrain import pretrain
    from safetensors.torch import load_file

    torch.set_num_threads(1)

    def run(out):
        return pretrain(PretrainArgs(corpus=[str(corpus[0])], tokenizer=str(corpus[1]), out=str(out),
                                     objective="electra", preset="tiny", seq_len=32, batch_size=4, max_steps=20,
                                     lr=1e-3, warmup_steps=2, eval_every=10, save_every=10, keep_last=3,
                                     workers=1, progress=False, eval_instances=16))

    run(tmp_path / "a")
    run(tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "model")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step-00000020")
    capsys.readouterr()
    run(tmp_path / "b")
    assert "(step 10)" in capsys.readouterr().out  # it resumed, not started again
    for part in ("model.safetensors", "generator/model.safetensors"):
        a, b = load_file(tmp_path / "a" / "model" / part), load_file(tmp_path / "b" / "model" / part)
        assert a.keys() == b.keys()
        assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6, part
