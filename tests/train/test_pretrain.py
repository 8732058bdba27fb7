"""Pre-training end to end: it learns, resumes exactly after SIGKILL, stops cleanly on Ctrl-C,
splits exactly over DDP processes, and refuses bad input with a clear message."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.torch import load_file

from bertforge.train.logs import read_metrics
from bertforge.train.pretrain import PretrainArgs, pretrain
from bertforge.vocab import train_vocab

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = ("the a cat dog runs sees big small red green house tree river walks quickly slowly "
             "bird sings over under near far").split()
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    docs = ["\n".join(" ".join(rng.choice(words, rng.integers(4, 12))).capitalize() + "."
                      for _ in range(rng.integers(3, 8))) for _ in range(120)]
    path.write_text("\n\n".join(docs) + "\n")
    tok_dir = path.parent / "tok"
    train_vocab([path.read_text()], 80).save_pretrained(tok_dir)
    return path, tok_dir


def cli_args(corpus, out, **overrides):
    path, tok = corpus
    args = {"--corpus": str(path), "--tokenizer": str(tok), "--out": str(out), "--preset": "tiny",
            "--seq-len": "32", "--batch-size": "4", "--max-steps": "60", "--save-every": "10",
            "--eval-every": "20", "--log-every": "5", "--warmup-steps": "5", "--lr": "1e-3",
            "--workers": "1", "--eval-instances": "32"}
    args.update({k: str(v) for k, v in overrides.items()})
    return [x for kv in args.items() for x in kv] + ["--no-progress"]


def run_cli(argv, **kwargs):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "bertforge", "pretrain", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def losses(out):
    """(step, training loss, the objective's first held-out loss) of every log record."""
    def held_out(r):
        return next((v for k, v in r.items() if k.startswith("eval_") and k.endswith("_loss")), None)
    return [(r["step"], r.get("loss"), held_out(r)) for r in read_metrics(out / "metrics.jsonl")]


OBJECTIVES = ["mlm+nsp", "ltr", "plm", "bilm"]  # BERT, GPT, XLNet, ELMo
RECIPE_FAMILIES = {"modernbert": {"--objective": "mlm", "--arch": "modernbert"}}  # the small-budget recipe's


def test_learns_and_writes_a_transformers_model(corpus, tmp_path, hf):
    result = pretrain(PretrainArgs(corpus=[str(corpus[0])], tokenizer=str(corpus[1]), out=str(tmp_path),
                                   preset="tiny", objective="mlm+nsp", seq_len=32, batch_size=8, max_steps=80, lr=2e-3,
                                   warmup_steps=8, eval_every=40, save_every=40, workers=1, progress=False,
                                   eval_fraction=0.2))  # ~370 held-out masked tokens: accuracy is not noise
    first, last = result["first_eval"], result["final_eval"]
    # ln(80) = 4.4 at random init; the corpus is random words from a list of 22, so ~3.1 is the floor
    assert last["eval_mlm_loss"] < first["eval_mlm_loss"] - 0.5
    assert last["eval_mlm_accuracy"] > first["eval_mlm_accuracy"] + 0.05
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    theirs = hf.BertForPreTraining.from_pretrained(tmp_path / "model")
    tok = hf.BertTokenizer.from_pretrained(tmp_path / "model")
    assert theirs.config.vocab_size == len(tok) == 80
    record = read_metrics(tmp_path / "metrics.jsonl")[-2]
    assert {"step", "loss", "mlm_loss", "nsp_loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s"} <= set(record)


@pytest.mark.parametrize("objective", [*OBJECTIVES, *RECIPE_FAMILIES])
def test_sigkill_then_rerun_equals_uninterrupted_run(corpus, tmp_path, objective):
    flags = RECIPE_FAMILIES.get(objective, {"--objective": objective})
    straight = run_cli(cli_args(corpus, tmp_path / "straight", **flags))
    assert straight.wait(timeout=300) == 0, straight.stdout.read()

    killed = run_cli(cli_args(corpus, tmp_path / "killed", **flags))
    marker = tmp_path / "killed" / "checkpoints" / "step-00000020" / "checkpoint.json"
    deadline = time.time() + 240
    while not marker.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "model").exists()

    resumed = run_cli(cli_args(corpus, tmp_path / "killed", **flags))
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert "resuming from" in output
    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    assert losses(tmp_path / "straight") == losses(tmp_path / "killed")


def test_ctrl_c_saves_and_exits_cleanly_then_resumes(corpus, tmp_path):
    proc = run_cli(cli_args(corpus, tmp_path, **{"--save-every": "1000", "--max-steps": "400"}))
    log = tmp_path / "metrics.jsonl"
    deadline = time.time() + 240

    def trained() -> bool:  # a training step's record, not just the step-0 baseline
        lines = log.read_text().splitlines() if log.exists() else []
        return any(line.startswith('{"step": ') and not line.startswith('{"step": 0,') for line in lines)

    while not trained() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, output
    assert "run the same command again to resume" in output
    checkpoints = sorted((tmp_path / "checkpoints").iterdir())
    assert len(checkpoints) == 1 and 0 < int(checkpoints[0].name.split("-")[1]) < 400
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_two_gloo_processes_make_the_same_update_as_one_with_twice_the_batch(corpus, tmp_path, objective):
    common = {"--max-steps": "3", "--save-every": "3", "--eval-every": "3", "--dropout": "0", "--warmup-steps": "0",
              "--objective": objective}
    one = run_cli(cli_args(corpus, tmp_path / "one", **common, **{"--batch-size": "8"}))
    assert one.wait(timeout=300) == 0, one.stdout.read()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "bertforge", "pretrain", *cli_args(corpus, tmp_path / "two", **common,
                                                                    **{"--batch-size": "4"})],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout + two.stderr
    a = load_file(tmp_path / "one" / "model" / "model.safetensors")
    b = load_file(tmp_path / "two" / "model" / "model.safetensors")
    # Batches of 4 and of 8 round differently; Adam turns that into up to ~lr-sized differences where a
    # gradient is near zero. ELMo's char CNN has such weights (2e-5 measured after 3 steps at lr 1e-3).
    assert max((a[k] - b[k]).abs().max().item() for k in a) < (1e-4 if objective == "bilm" else 1e-5)
    la, lb = losses(tmp_path / "one"), losses(tmp_path / "two")
    held_out = [y for _, _, y in la if y is not None]
    moved = abs(held_out[-1] - held_out[0])  # step 3 against the random initialisation
    assert [s for s, *_ in la] == [s for s, *_ in lb]
    for (_, x, y), (_, u, v) in zip(la, lb):
        assert (x is None) == (u is None) and (x is None or abs(x - u) < 1e-5)
        assert (y is None) == (v is None) and (y is None or abs(y - v) < 1e-5)
    assert moved > 1e-3  # the update is real, so the equality above means something
    assert json.loads((tmp_path / "two" / "run_config.json").read_text())["batch_size"] == 4


def test_two_gloo_processes_without_nsp(corpus, tmp_path):
    """Without NSP the pooler and NSP head get no gradient; DDP must still run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "bertforge", "pretrain", *cli_args(corpus, tmp_path, **{"--max-steps": "2"}),
                          "--no-nsp"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl") if "loss" in r] == [2]
    assert all(r.get("nsp_loss") is None for r in read_metrics(tmp_path / "metrics.jsonl"))


def test_bad_input_and_resume_mismatch(corpus, tmp_path):
    base = dict(corpus=[str(corpus[0])], tokenizer=str(corpus[1]), preset="tiny", seq_len=32, batch_size=4,
                max_steps=4, save_every=2, eval_every=4, workers=1, progress=False, recipe="google")  # BERT, NSP
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.txt: is empty"):
        pretrain(PretrainArgs(**{**base, "corpus": [str(empty)]}, out=str(tmp_path / "a")))
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        pretrain(PretrainArgs(**{**base, "corpus": [str(tmp_path / "nope.txt")]}, out=str(tmp_path / "a")))
    single = tmp_path / "single.txt"
    single.write_text("".join(f"The cat sees dog number {i}\n" for i in range(50)))
    with pytest.raises(ValueError, match="--no-nsp"):
        pretrain(PretrainArgs(**{**base, "corpus": [str(single)]}, out=str(tmp_path / "b")))

    pretrain(PretrainArgs(**base, out=str(tmp_path / "run")))
    with pytest.raises(ValueError, match=r"--lr was 0.0001 and is 0.001 now"):
        pretrain(PretrainArgs(**{**base, "lr": 1e-3, "max_steps": 6}, out=str(tmp_path / "run")))
    with pytest.raises(ValueError, match=r"model.num_hidden_layers was 2 and is 4 now"):
        pretrain(PretrainArgs(**{**base, "preset": "mini", "max_steps": 6}, out=str(tmp_path / "run")))

    other_vocab = tmp_path / "tok2"
    train_vocab([corpus[0].read_text()], 60).save_pretrained(other_vocab)
    with pytest.raises(ValueError, match="--init-from: the tokenizer has .* tokens but the checkpoint has vocab_size 80"):
        pretrain(PretrainArgs(**{**base, "tokenizer": str(other_vocab)}, init_from=str(tmp_path / "run" / "model"),
                              out=str(tmp_path / "c")))
    assert not (tmp_path / "c").exists()  # found after the data was prepared: the half-made run is removed


def test_failed_checkpoint_write_leaves_the_previous_one_usable(corpus, tmp_path, monkeypatch):
    base = dict(corpus=[str(corpus[0])], tokenizer=str(corpus[1]), preset="tiny", seq_len=32, batch_size=4,
                max_steps=6, save_every=2, eval_every=100, workers=1, progress=False, out=str(tmp_path))
    import bertforge.train.checkpoint as checkpoint

    real_save = checkpoint.torch.save
    calls = {"n": 0}

    def failing_save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint dies half-written
            with open(f, "wb") as fh:
                fh.write(b"partial")
            raise OSError("disk full")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(checkpoint.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        pretrain(PretrainArgs(**base))
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-00000002"]
    result = pretrain(PretrainArgs(**base))
    assert result["status"] == "done" and result["step"] == 6


def test_init_from_across_objectives_sets_is_decoder_and_says_so(corpus, tmp_path, capsys):
    """A left-to-right model continued as a masked LM must attend both ways: is_decoder becomes false (and the
    reverse for ltr), in one printed line, and the saved model says so."""
    base = dict(corpus=[str(corpus[0])], tokenizer=str(corpus[1]), preset="tiny", seq_len=32, batch_size=4,
                max_steps=2, save_every=2, eval_every=100, workers=1, progress=False)
    pretrain(PretrainArgs(**base, objective="ltr", out=str(tmp_path / "ltr")))
    assert json.loads((tmp_path / "ltr" / "model" / "config.json").read_text())["is_decoder"] is True
    capsys.readouterr()
    ltr, mlm = tmp_path / "ltr" / "model", tmp_path / "mlm" / "model"
    pretrain(PretrainArgs(**base, objective="mlm", init_from=str(ltr), out=str(tmp_path / "mlm")))
    said = [line for line in capsys.readouterr().out.splitlines() if "is_decoder" in line]
    assert said == [f"--init-from {ltr}: for --objective mlm, is_decoder true -> false"]
    assert json.loads((mlm / "config.json").read_text())["is_decoder"] is False
    pretrain(PretrainArgs(**base, objective="ltr", init_from=str(mlm), out=str(tmp_path / "back")))
    assert "is_decoder false -> true" in capsys.readouterr().out
    assert json.loads((tmp_path / "back" / "model" / "config.json").read_text())["is_decoder"] is True


def test_counting_flops_leaves_the_run_unchanged_and_a_flop_budget_sets_the_steps(corpus, tmp_path, monkeypatch):
    """A step's FLOPs are counted before training (forward and backward on the first batches): the weights
    must come out as if nothing were counted; --max-flops turns a budget into whole steps."""
    from bertforge.train import pretrain as recipe

    base = dict(corpus=[str(corpus[0])], tokenizer=str(corpus[1]), preset="tiny", seq_len=32, batch_size=4,
                max_steps=6, save_every=6, eval_every=3, log_every=1, warmup_steps=2, lr=1e-3, workers=1,
                eval_instances=16, progress=False, objective="mlm")
    counted = pretrain(PretrainArgs(**base, out=str(tmp_path / "counted")))
    with monkeypatch.context() as m:
        m.setattr(recipe, "step_flops", lambda *a, **k: 1)
        pretrain(PretrainArgs(**base, out=str(tmp_path / "skipped")))
    weights = [load_file(tmp_path / run / "model" / "model.safetensors") for run in ("counted", "skipped")]
    assert weights[0].keys() == weights[1].keys()
    assert all((weights[0][k] == weights[1][k]).all() for k in weights[0])
    per_step = counted["flops_per_step"]
    assert per_step > 6 * 2 * 128 * 128 * 4 * 32  # at least the encoder's two layers' linear maps, 3x forward
    logged = [r for r in read_metrics(tmp_path / "counted" / "metrics.jsonl") if "flops" in r]
    assert [r["flops"] for r in logged] == [r["step"] * per_step for r in logged]
    budget = pretrain(PretrainArgs(**{**base, "max_steps": 1000}, max_flops=3.5 * per_step, out=str(tmp_path / "b")))
    assert budget["step"] == 4 and budget["flops"] == 4 * per_step
    # A warm-up share follows the steps the budget makes (4 here), where the 1,000 steps it replaced would give 250.
    share = PretrainArgs(**{**base, "max_steps": 1000, "warmup_steps": None}, max_flops=3.5 * per_step,
                         warmup_share=0.5, out=str(tmp_path / "share"))
    assert pretrain(share)["step"] == 4
    config = json.loads((tmp_path / "share" / "run_config.json").read_text())
    assert (config["warmup_steps"], config["warmup_share"], config["max_steps"]) == (2, 0.5, 4)
    from bertforge.errors import CheckpointError

    with pytest.raises(CheckpointError, match="--max-flops .* is 2 steps, below the 4 already done"):
        pretrain(PretrainArgs(**{**base, "max_steps": 1000}, max_flops=1.5 * per_step, out=str(tmp_path / "b")))
