"""--report-to tensorboard: event files beside metrics.jsonl with the same figures and the run's settings,
read back with TensorBoard's own reader and compared with metrics.jsonl."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.cli import main
from bertforge.train.logs import MetricsLog, read_metrics
from unavailable import require

require("tensorboard")  # the extra these tests read events with


def events(directory: Path) -> tuple[dict[str, list[tuple[int, float]]], list[tuple[int, str]]]:
    """Scalars by tag as (step, value), and the settings texts as (step, text), of one TensorBoard run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    acc = EventAccumulator(str(directory), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    texts = ([(e.step, make_ndarray(e.tensor_proto)[0].decode()) for e in acc.Tensors("settings/text_summary")]
             if "settings/text_summary" in acc.Tags()["tensors"] else [])
    return scalars, texts


def expected(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard should hold for these metrics.jsonl records: every number, as float32, by name."""
    out: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        for k, v in r.items():
            if k not in ("step", "seed") and isinstance(v, (int, float)) and not isinstance(v, bool):
                out.setdefault(k, []).append((r["step"], float(np.float32(v))))
    return out


def settings_of(text: str) -> dict:
    """The settings back from the Markdown code block."""
    return json.loads("\n".join(line[4:] for line in text.splitlines()))


def run(*argv) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main([str(a) for a in argv])
    return out.getvalue()


# --- the log itself ---------------------------------------------------------------------------------

def test_every_number_of_a_record_becomes_a_scalar_and_settings_text(tmp_path):
    settings = {"lr": 0.001, "corpus": ["a.txt"], "nested": {"max_length": 128}}
    log = MetricsLog(tmp_path / "metrics.jsonl", report_to="tensorboard", settings=settings)
    for step in range(0, 30, 3):
        log.log(step, loss=torch.tensor(1.0 / (step + 1)), lr=np.float32(step * 1e-4), tokens_seen=step * 64,
                note="text is not plotted", per_class=[0.5, 0.25], report={"f1": 0.5}, diverged=False)
    log.log(30, eval_accuracy=0.75)
    log.close()
    records = read_metrics(tmp_path / "metrics.jsonl")
    scalars, texts = events(tmp_path / "tensorboard")
    assert scalars == expected(records)
    assert set(scalars) == {"loss", "lr", "tokens_seen", "eval_accuracy"}
    assert [step for step, _ in texts] == [0] and settings_of(texts[0][1]) == settings


def test_a_resumed_log_drops_the_events_after_its_checkpoint(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl", resume_from_step=-1, report_to="tensorboard", settings={"run": 1})
    for step in range(1, 11):
        log.log(step, loss=float(step))
    log.close()
    log = MetricsLog(tmp_path / "metrics.jsonl", resume_from_step=6, report_to="tensorboard", settings={"run": 2})
    for step in range(7, 13):
        log.log(step, loss=100.0 + step)  # what the resumed run logs instead of the cut run's 7..10
    log.close()
    records = read_metrics(tmp_path / "metrics.jsonl")
    scalars, texts = events(tmp_path / "tensorboard")
    assert scalars["loss"] == [(s, float(s)) for s in range(1, 7)] + [(s, 100.0 + s) for s in range(7, 13)]
    assert scalars == expected(records)
    assert [(step, settings_of(text)) for step, text in texts] == [(0, {"run": 1}), (6, {"run": 2})]


def test_each_seed_is_a_run_of_its_own(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl", report_to="tensorboard")
    for seed in (1, 2):
        for step in (1, 2, 3):
            log.log(step, seed=seed, epoch=0, loss=seed * 10.0 + step)
    log.close()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert sorted(p.name for p in (tmp_path / "tensorboard").iterdir()) == ["seed-1", "seed-2"]
    for seed in (1, 2):
        scalars, _ = events(tmp_path / "tensorboard" / f"seed-{seed}")
        assert scalars == expected([r for r in records if r["seed"] == seed])


def test_no_event_files_without_the_setting(tmp_path):
    with MetricsLog(tmp_path / "metrics.jsonl") as log:
        log.log(1, loss=1.0)
    assert not (tmp_path / "tensorboard").exists()
    with pytest.raises(ValueError, match="report_to must be one of none, tensorboard"):
        MetricsLog(tmp_path / "m.jsonl", report_to="wandb")


# --- the commands ---------------------------------------------------------------------------------

WORDS = "the a cat dog runs sees big small red green house tree river walks quickly slowly bird sings".split()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny pre-training run with --report-to tensorboard, resumed once from an earlier checkpoint, and a
    two-seed fine-tuning of its model."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("tb")
    rng = np.random.default_rng(0)
    docs = ["\n".join(" ".join(rng.choice(WORDS, rng.integers(4, 10))).capitalize() + "."
                      for _ in range(rng.integers(3, 6))) for _ in range(40)]
    (d / "corpus.txt").write_text("\n\n".join(docs) + "\n")
    pre = ["pretrain", "--corpus", d / "corpus.txt", "--out", d / "pre", "--preset", "tiny", "--vocab-size", 60,
           "--seq-len", 32, "--batch-size", 4, "--max-steps", 8, "--save-every", 4, "--eval-every", 4,
           "--log-every", 1, "--warmup-steps", 2, "--workers", 1, "--no-progress", "--report-to", "tensorboard",
           "--eval-fraction", 0.2, "--objective", "mlm+nsp"]
    run(*pre)
    shutil.rmtree(d / "pre" / "checkpoints" / "step-00000008")  # as if cut after step 4's checkpoint
    run(*pre)  # resumes from step 4: the records and events after it are written again
    rows = [{"text": " ".join(rng.choice(WORDS, 6)), "label": "pos" if i % 2 else "neg"} for i in range(24)]
    for name in ("train", "dev"):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run("finetune", "--task", "classify", "--model", d / "pre" / "model", "--train", d / "train.jsonl",
        "--dev", d / "dev.jsonl", "--out", d / "ft", "--epochs", 2, "--batch-size", 8, "--log-every", 1,
        "--seeds", 1, 2, "--no-progress", "--report-to", "tensorboard")
    return d


def test_pretrain_events_equal_metrics_jsonl_after_a_resume(runs):
    records = read_metrics(runs / "pre" / "metrics.jsonl")
    scalars, texts = events(runs / "pre" / "tensorboard")
    assert scalars == expected(records)
    assert [s for s, _ in scalars["loss"]] == list(range(1, 9))  # each step once: the cut run's 5..8 dropped
    assert {"loss", "lr", "tokens_per_s", "eval_mlm_loss", "eval_nsp_accuracy"} <= set(scalars)
    run_config = json.loads((runs / "pre" / "run_config.json").read_text())
    assert [(s, settings_of(t)) for s, t in texts] == [(0, run_config), (4, run_config)]


def test_finetune_events_per_seed_equal_metrics_jsonl(runs):
    records = read_metrics(runs / "ft" / "metrics.jsonl")
    args = json.loads((runs / "ft" / "finetune_args.json").read_text())
    for seed in (1, 2):
        scalars, texts = events(runs / "ft" / "tensorboard" / f"seed-{seed}")
        assert scalars == expected([r for r in records if r["seed"] == seed])
        assert {"loss", "dev_accuracy", "epoch"} <= set(scalars)
        assert [settings_of(t) for _, t in texts] == [args]


def test_missing_tensorboard_is_a_flag_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as when the package is not installed
    (tmp_path / "c.txt").write_text("A b.\nC d.\n")
    for argv in (["pretrain", "--corpus", tmp_path / "c.txt", "--out", tmp_path / "run"],
                 ["finetune", "--task", "classify", "--model", tmp_path, "--train", tmp_path / "c.txt", "--dev", tmp_path / "c.txt",
                  "--out", tmp_path / "ft"]):
        with pytest.raises(SystemExit) as e:
            main([str(a) for a in argv] + ["--report-to", "tensorboard"])
        assert e.value.code == 2
        [line] = capsys.readouterr().err.splitlines()
        assert "--report-to: tensorboard needs the tensorboard package" in line and "bertforge[tensorboard]" in line
    assert not (tmp_path / "run").exists() and not (tmp_path / "ft").exists()
    from bertforge.ablation.plan import Study
    from bertforge.errors import UsageError
    from bertforge.glue.settings import GlueSettings

    (tmp_path / "t.jsonl").write_text('{"text": "a", "label": "x"}\n')
    with pytest.raises(UsageError, match="--report-to: tensorboard needs the tensorboard package"):
        Study.quick(corpus=[str(tmp_path / "c.txt")], task=[f"t=classify:{tmp_path}/t.jsonl,{tmp_path}/t.jsonl"],
                    out=str(tmp_path / "study"), report_to="tensorboard")
    with pytest.raises(UsageError, match="--report-to: tensorboard needs the tensorboard package"):
        GlueSettings(data=str(tmp_path), model=str(tmp_path), out=str(tmp_path / "glue"), report_to="tensorboard")


def test_ablate_passes_the_setting_on(tmp_path, monkeypatch):
    from bertforge.ablation import run as ablation_run
    from bertforge.ablation.plan import Study, variants_of

    (tmp_path / "c.txt").write_text("A b.\n")
    (tmp_path / "t.jsonl").write_text('{"text": "a", "label": "x"}\n')
    study = Study.quick(corpus=[str(tmp_path / "c.txt")], task=[f"t=classify:{tmp_path}/t.jsonl,{tmp_path}/t.jsonl"],
                        out=str(tmp_path / "study"), report_to="tensorboard")
    bert = variants_of(study.preset)["bert"]
    assert ablation_run.pretrain_args(study, bert, tmp_path).report_to == "tensorboard"
    seen = []
    monkeypatch.setattr("bertforge.train.finetune.finetune", lambda args: seen.append(args))
    ablation_run._finetune(study, bert, study.specs[0], 1, 1e-4, log=lambda *_: None)
    assert [a.report_to for a in seen] == ["tensorboard"]
    assert Study.quick(corpus=study.corpus, task=study.task, out=study.out).report_to == "none"
