"""GLUE's metrics against scikit-learn and scipy, the GLUE score by hand, the recipes and --set, --seeds,
and the submission files' format."""

from __future__ import annotations

import random
import zipfile

import pytest
from scipy import stats
from sklearn import metrics as sk

from bertforge.errors import UsageError
from bertforge.glue import score
from bertforge.glue.recipes import RECIPES
from bertforge.glue.settings import GlueSettings
from bertforge.glue.submission import FILES, render, write_submission


def _labels(rng, names, n=60):
    return [rng.choice(names) for _ in range(n)]


def test_metrics_match_sklearn_and_scipy():
    rng = random.Random(3)
    gold, pred = _labels(rng, "01"), _labels(rng, "01")
    assert score.glue_metrics("cola", gold, pred) == pytest.approx({"mcc": sk.matthews_corrcoef(gold, pred)})
    for task in ("mrpc", "qqp"):
        assert score.glue_metrics(task, gold, pred) == pytest.approx(
            {"accuracy": sk.accuracy_score(gold, pred), "f1": sk.f1_score(gold, pred, pos_label="1")})
    nli = ("entailment", "neutral", "contradiction")
    gm, pm, gmm, pmm = (_labels(rng, nli) for _ in range(4))
    assert score.glue_metrics("mnli", gm, pm, gmm, pmm) == pytest.approx(
        {"accuracy_m": sk.accuracy_score(gm, pm), "accuracy_mm": sk.accuracy_score(gmm, pmm)})
    assert score.glue_metrics("rte", gm, pm) == pytest.approx({"accuracy": sk.accuracy_score(gm, pm)})
    y = [rng.uniform(0, 5) for _ in range(40)]
    x = [v + rng.gauss(0, 1.5) for v in y]
    assert score.glue_metrics("stsb", y, x) == pytest.approx(
        {"pearson": stats.pearsonr(y, x)[0], "spearman": stats.spearmanr(y, x)[0]})
    with pytest.raises(ValueError, match="dev_mismatched"):
        score.glue_metrics("mnli", gm, pm)


def test_glue_score_by_hand():
    # BERT-base's GLUE test row (the paper's Table 1): the leaderboard averages each task's metrics first
    per_task = {"cola": {"mcc": 0.521}, "sst2": {"accuracy": 0.935}, "mrpc": {"accuracy": 0.849, "f1": 0.889},
                "stsb": {"pearson": 0.871, "spearman": 0.858}, "qqp": {"accuracy": 0.891, "f1": 0.712},
                "mnli": {"accuracy_m": 0.846, "accuracy_mm": 0.834}, "qnli": {"accuracy": 0.905},
                "rte": {"accuracy": 0.664}}
    tasks = {k: score.task_score(v) for k, v in per_task.items()}
    assert tasks["mrpc"] == pytest.approx(0.869) and tasks["mnli"] == pytest.approx(0.84)
    by_hand = (0.521 + 0.935 + 0.869 + 0.8645 + 0.8015 + 0.84 + 0.905 + 0.664) / 8
    assert score.glue_score(tasks) == pytest.approx(by_hand)


def test_medians_per_metric():
    seeds = [{"accuracy": 0.5, "f1": 0.9}, {"accuracy": 0.7, "f1": 0.1}, {"accuracy": 0.6, "f1": 0.3}]
    assert score.medians(seeds) == {"accuracy": 0.6, "f1": 0.3}
    assert score.medians(seeds[:2]) == pytest.approx({"accuracy": 0.6, "f1": 0.5})


def test_recipes():
    paper, sane = RECIPES["paper"]["rte"], RECIPES["sane"]["mnli"]
    assert (paper.lr, paper.batch_size, paper.epochs, paper.max_length) == ((5e-5, 4e-5, 3e-5, 2e-5), 32, 3, 128)
    assert (sane.lr, sane.batch_size, sane.epochs, sane.max_length) == ((4e-5,), 16, 5, 128)
    assert RECIPES["sane"]["rte"].seeds == 5 and sane.seeds == 3


def _settings(**kw) -> GlueSettings:
    return GlueSettings(**{"data": "glue", "model": "m", "out": "out", **kw})


def test_overrides_and_seeds():
    s = _settings(tasks=["rte,MNLI", "sst-2"], overrides=["all.epochs=2", "rte.lr=2e-5,3e-5", "rte.epochs=7"],
                  seeds="2")
    assert s.tasks == ["rte", "mnli", "sst2"]
    rte, mnli = s.recipe_for("rte"), s.recipe_for("mnli")
    assert (rte.lr, rte.epochs, mnli.lr, mnli.epochs) == ((2e-5, 3e-5), 7, (4e-5,), 2)
    assert s.seeds_for("rte") == [1, 2]
    s = _settings(tasks=["rte", "mnli"], seeds="7,3", overrides=["rte.seeds=4"], from_mnli=True)
    assert s.tasks == ["mnli", "rte"]  # MNLI first: RTE starts from its model
    assert s.seeds_for("mnli") == [7, 3] and s.seeds_for("rte") == [1, 2, 3, 4]


@pytest.mark.parametrize("kw, message", [
    ({"tasks": ["rte", "ax"]}, "--tasks: unknown task 'ax'"),
    ({"seeds": "1,x"}, "--seeds: expected N or a list"),
    ({"seeds": "0"}, "--seeds: expected N >= 1"),
    ({"overrides": ["rte.lr"]}, "--set: 'rte.lr' is not TASK.key=value"),
    ({"overrides": ["rte.speed=3"]}, "--set: 'rte.speed=3': unknown key 'speed'"),
    ({"overrides": ["wnli.lr=1e-5"]}, "--set: 'wnli.lr=1e-5': 'wnli' is not one of the tasks run"),
    ({"overrides": ["rte.epochs=0"]}, "--set: 'rte.epochs=0': epochs must be >= 1"),
    ({"overrides": ["rte.lr=0"]}, "--set: 'rte.lr=0': lr must be > 0 and <= 1, got 0"),
    ({"overrides": ["all.lr=1e-5,2"]}, "--set: 'all.lr=1e-5,2': lr must be > 0 and <= 1, got 2"),
    ({"overrides": ["rte.batch_size=big"]}, "--set: 'rte.batch_size=big': 'big' is not an integer"),
    ({"tasks": ["rte"], "from_mnli": True}, "--from-mnli: needs MNLI"),
    ({"recipe": "fast"}, "--recipe: invalid choice 'fast'"),
])
def test_bad_settings_name_the_flag(kw, message, tmp_path):
    with pytest.raises(UsageError) as e:
        _settings(out=str(tmp_path / "out"), **kw)
    assert str(e.value).startswith(message)


def test_from_mnli_accepts_an_out_with_finished_mnli_cells(tmp_path):
    cell = tmp_path / "out" / "cells" / "mnli" / "lr-4e-05" / "seed-1"
    cell.mkdir(parents=True)
    (cell / "glue_result.json").write_text("{}")
    assert _settings(out=str(tmp_path / "out"), tasks=["rte"], from_mnli=True).tasks == ["rte"]


def test_submission_files(tmp_path):
    assert render("CoLA.tsv", ["0", "1"], ["1", "0"]) == "index\tprediction\n0\t1\n1\t0\n"
    assert render("STS-B.tsv", ["0"], [3.14159]) == "index\tprediction\n0\t3.142\n"
    assert render("MNLI-mm.tsv", ["0"], ["neutral"]) == "index\tprediction\n0\tneutral\n"
    written = write_submission(tmp_path, {"AX.tsv": (["0", "1"], ["entailment", "contradiction"]),
                                          "RTE.tsv": (["0"], ["not_entailment"]), "QQP.tsv": (["5"], ["1"])})
    assert [p.name for p in written] == ["QQP.tsv", "RTE.tsv", "AX.tsv"]  # the server's order
    with zipfile.ZipFile(tmp_path / "submission.zip") as zf:
        assert zf.namelist() == ["QQP.tsv", "RTE.tsv", "AX.tsv"]
        assert zf.read("AX.tsv").decode() == "index\tprediction\n0\tentailment\n1\tcontradiction\n"
    assert len(FILES) == 11
    with pytest.raises(ValueError, match="MNLI.tsv"):
        write_submission(tmp_path, {"MNLI.tsv": ([], [])})


def test_flags_are_checked_before_torch_is_imported(tmp_path):
    import subprocess
    import sys

    code = ("import sys\nfrom bertforge.cli import main\ntry:\n    main(['glue', '--data', 'd', '--model', 'm', "
            "'--out', 'o', '--set', 'rte.epochs=0'])\nexcept SystemExit as e:\n"
            "    print(e.code, 'torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.stdout.split() == ["2", "False"], p.stderr
    assert p.stderr.strip() == "bertforge glue: error: --set: 'rte.epochs=0': epochs must be >= 1 and <= 1000, got 0"
