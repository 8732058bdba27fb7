"""`bertforge ablate`: the whole chain on tiny settings (pre-train, fine-tune, report), resumability, equal
data across variants, and bad input."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from bertforge.ablation.plan import Study, TaskSpec, select_variants
from bertforge.errors import UsageError

pytestmark = pytest.mark.slow

# One variant of each kind: the NSP and packed formats, LTR + BiLSTM (a reused model), ELMo, XLNet, random init,
# frozen BERT and static vectors.
VARIANTS = ["bert", "ltr+bilstm", "elmo", "xlnet", "random", "bert-frozen", "word2vec", "no-nsp"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, fetched):
    root = tmp_path_factory.mktemp("ablate-inputs")
    corpus = fetched("gensim-data") / "lee_background.cor"
    rng = np.random.default_rng(0)
    words = "the a cat dog runs sees big small house tree river bird sings".split()
    rows = [{"text": " ".join(rng.choice(words, 6)), "label": str(i % 2)} for i in range(48)]
    for name, part in (("train", rows[:32]), ("dev", rows[32:])):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return corpus, root


def run(argv, cwd):
    return subprocess.run([sys.executable, "-m", "bertforge", "ablate", *argv], capture_output=True, text=True,
                          cwd=cwd, timeout=1200, env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"})


def test_quick_chain_writes_the_table_and_resumes(inputs, tmp_path):
    corpus, root = inputs
    argv = ["--quick", "--corpus", str(corpus), "--task", f"sent=classify:{root}/train.jsonl,{root}/dev.jsonl",
            "--out", str(tmp_path / "study"), "--variants", *VARIANTS, "--steps", "12", "--no-progress"]
    first = run(argv, tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    results = json.loads((tmp_path / "study" / "results.json").read_text())
    assert list(results["variants"]) == VARIANTS
    # each cell is the dev accuracy of the model its fine-tuning run kept, evaluated here again from the files
    from bertforge.ablation.plan import variants_of
    from bertforge.ablation.run import finetune_dir
    from bertforge.data.options import DataOptions
    from bertforge.inference import Predictor

    study = Study.quick(corpus=[str(corpus)], task=[f"sent=classify:{root}/train.jsonl,{root}/dev.jsonl"],
                        out=str(tmp_path / "study"), variants=VARIANTS, steps=12, progress=False)
    for name in VARIANTS:
        cell = results["variants"][name]["tasks"]["sent"]
        assert cell["metric"] == "accuracy" and cell["split"] == "dev" and list(cell["per_seed"]) == ["1"]
        run_dir = finetune_dir(study, variants_of("tiny")[name], study.specs[0], 1, cell["lr"])
        evaluated = Predictor.load(run_dir / "model").evaluate(root / "dev.jsonl", DataOptions(max_length=64))
        assert cell["mean"] == pytest.approx(evaluated["accuracy"], abs=1e-9), name
    pretrained = {n: results["variants"][n]["pretrain"] for n in ("bert", "no-nsp", "elmo", "xlnet")}
    assert {p["objective"] for p in pretrained.values()} == {"mlm+nsp", "mlm", "bilm", "plm"}
    # the same compute: every pre-training run took the same steps of the same batch and length
    assert {p["steps"] for p in pretrained.values()} == {12}
    assert pretrained["no-nsp"]["tokens_seen"] == pretrained["elmo"]["tokens_seen"] == pretrained["xlnet"]["tokens_seen"]
    table = (tmp_path / "study" / "ablation.md").read_text()
    assert "| LTR & No NSP + BiLSTM |" in table and "## Claims" in table
    assert "| BERT frozen, scalar-mix + BiLSTM |" in table  # tiny has 2 layers: no last 4 to concatenate
    assert (tmp_path / "study" / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # packed-text variants read one prepared corpus
    data = {p.parent.name: p.resolve() for p in (tmp_path / "study" / "pretrain").glob("*/data")}
    assert data["no-nsp"] == data["elmo"] == data["xlnet"] != data["bert"]

    again = run(argv, tmp_path)  # everything is done: nothing runs again
    assert again.returncode == 0
    assert "pre-training" not in again.stdout and "fine-tuning" not in again.stdout


def test_variants_of_a_format_see_the_same_instances_in_the_same_order(inputs, tmp_path):
    from bertforge.data.prepare import prepare
    from bertforge.data.pretraining_data import InstanceStore, PretrainingBatches
    from bertforge.objectives import OBJECTIVES
    from bertforge.train.pretrain import prepare_settings
    from bertforge.train.settings import PretrainArgs
    from bertforge.vocab import train_vocab_from_corpus

    corpus, _ = inputs
    tok = train_vocab_from_corpus([corpus], 500, tmp_path / "tok")
    stores = {}
    for objective in ("mlm", "ltr", "plm", "bilm"):
        args = PretrainArgs(corpus=[str(corpus)], out=str(tmp_path), objective=objective, seq_len=64, seed=3)
        meta = prepare([corpus], tmp_path / "tok", tmp_path / f"data-{objective}", prepare_settings(args), workers=1,
                       progress=False)
        store = InstanceStore(tmp_path / f"data-{objective}", "train")
        objective_ = OBJECTIVES[objective].from_args(tok, args)
        batches = PretrainingBatches(store, objective_, 8)
        stores[objective] = (meta["fingerprint"], [store.rows(batches.indices(step, 0, 0))["tokens"] for step in range(5)])
    first = stores.pop("mlm")
    for objective, (fingerprint, tokens) in stores.items():
        assert fingerprint == first[0], objective
        assert all(np.array_equal(a, b) for a, b in zip(tokens, first[1])), objective


def test_bad_input(inputs, tmp_path):
    corpus, root = inputs
    with pytest.raises(UsageError, match="unknown variant 'gpt4'.*bert, bert-learned-positions, no-nsp"):
        select_variants(["gpt4"], "mini")
    with pytest.raises(UsageError, match="no dev file"):
        TaskSpec.parse(f"sent=classify:{root}/train.jsonl")
    with pytest.raises(UsageError, match="--steps: must be >= 1"):
        Study(corpus=[str(corpus)], task=[f"sent=classify:{root}/train.jsonl,{root}/dev.jsonl"], out=str(tmp_path),
              steps=0)
    out = run(["--corpus", str(corpus), "--task", f"x=summarize:{root}/train.jsonl,{root}/dev.jsonl", "--out",
               str(tmp_path / "s")], tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "unknown task family 'summarize'" in out.stderr
    assert not (tmp_path / "s").exists()


def test_real_pre_training_cut_by_ctrl_c_then_resumed_counts_both_sessions(inputs, tmp_path, monkeypatch):
    """The same as below with the real vocabulary, prepare and pretrain at a tiny size: Ctrl-C (a real SIGINT)
    once the first checkpoint is written cuts the first session; the second resumes and finishes; the
    timing is the sum of the two sessions' pre-training time, measured here around the real function."""
    import os
    import signal
    import threading

    import bertforge.train.pretrain
    from bertforge.ablation import run as ablation_run
    from bertforge.ablation.plan import variants_of

    _, root = inputs
    rng = np.random.default_rng(0)
    words = "the a cat dog runs sees big small house tree river bird sings over under near far".split()
    corpus = tmp_path / "corpus.txt"  # 60 short documents: a few held-out instances keep each evaluation cheap
    corpus.write_text("\n\n".join("\n".join(" ".join(rng.choice(words, 8)) + " ." for _ in range(4))
                                  for _ in range(60)) + "\n")
    study = Study(corpus=[str(corpus)], task=[f"sent=classify:{root}/train.jsonl,{root}/dev.jsonl"],
                  out=str(tmp_path / "study"), preset="tiny", steps=20, seq_len=32, batch_size=8, warmup_steps=5,
                  vocab_size=60, progress=False)
    variant = variants_of("tiny")["no-nsp"]
    run_root = ablation_run.model_root(study, variant)
    real, sessions = bertforge.train.pretrain.pretrain, []

    def timed(args):  # the real pre-training, with a stopwatch around it
        started = time.perf_counter()
        try:
            return real(args)
        finally:
            sessions.append(time.perf_counter() - started)

    def ctrl_c_after_the_first_checkpoint():
        while not any((run_root / "checkpoints").glob("step-*")):
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(bertforge.train.pretrain, "pretrain", timed)
    tokenizer = ablation_run._tokenizer(study, print)
    interrupter = threading.Thread(target=ctrl_c_after_the_first_checkpoint, daemon=True)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        ablation_run._pretrain(study, variant, tokenizer, print)
    interrupter.join(10)
    assert not (run_root / "model").exists() and len(sessions) == 1
    ablation_run._pretrain(study, variant, tokenizer, print)  # resumes from the checkpoint and finishes
    config = json.loads((run_root / "model" / "config.json").read_text())
    assert config["vocab_size"] == len((tokenizer / "vocab.txt").read_text().split()) and len(sessions) == 2
    seconds = json.loads((run_root / "timing.json").read_text())["seconds"]
    assert seconds == pytest.approx(sum(sessions), abs=0.05)


def test_a_cut_pre_training_session_still_counts_its_wall_clock(inputs, tmp_path, monkeypatch):
    """The table's minutes are the sum over sessions: a session cut short adds its part before it stops."""
    import bertforge.data.prepare
    import bertforge.train.pretrain
    from bertforge.ablation import run as ablation_run
    from bertforge.ablation.plan import variants_of

    corpus, root = inputs
    study = Study(corpus=[str(corpus)], task=[f"sent=classify:{root}/train.jsonl,{root}/dev.jsonl"],
                  out=str(tmp_path / "study"), preset="tiny", steps=10, progress=False)
    monkeypatch.setattr(bertforge.data.prepare, "prepare", lambda *a, **k: None)
    monkeypatch.setattr(bertforge.train.pretrain, "pretrain", lambda args: time.sleep(0.2) or {"status": "interrupted"})
    (tmp_path / "study" / "data" / "packed").mkdir(parents=True)
    for _ in range(2):
        with pytest.raises(KeyboardInterrupt):
            ablation_run._pretrain(study, variants_of("tiny")["no-nsp"], tmp_path / "tok", print)
    seconds = json.loads((tmp_path / "study" / "pretrain" / "no-nsp" / "timing.json").read_text())["seconds"]
    assert 0.4 <= seconds < 5
