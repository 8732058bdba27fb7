"""`bertforge glue` end to end on a tiny random BERT: predictions, metrics recomputed with scikit-learn and scipy,
the GLUE score by hand, --from-mnli, AX, the submission's files and headers, resuming; the same MNLI data
through `bertforge finetune` gives the same model; bad inputs end in one line naming file, line or flag."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest
from scipy import stats
from sklearn import metrics as sk

from bertforge.data.readers import read_glue
from tests.glue.files import NLI2, NLI3, build_glue
from in_process import cli


def _glue(capsys, data, model, out, *flags):
    return cli(capsys, "glue", "--data", data, "--model", model, "--out", out, "--no-progress", *flags)


def _gold(glue: Path, task: str, name: str) -> list:
    folder = {"mnli": "MNLI", "rte": "RTE", "cola": "CoLA", "stsb": "STS-B"}[task]
    return [e.label for e in read_glue(glue / folder / name, task)]


def _expected(task: str, gold: dict, predicted: dict) -> dict:
    """GLUE's metrics, computed with scikit-learn and scipy from the dev predictions the cell kept."""
    if task == "mnli":
        return {"accuracy_m": sk.accuracy_score(gold["dev_matched.tsv"], predicted["dev_matched.tsv"]),
                "accuracy_mm": sk.accuracy_score(gold["dev_mismatched.tsv"], predicted["dev_mismatched.tsv"])}
    g, p = gold["dev.tsv"], predicted["dev.tsv"]
    if task == "cola":
        return {"mcc": sk.matthews_corrcoef(g, p)}
    if task == "stsb":
        return {"pearson": stats.pearsonr(g, p)[0], "spearman": stats.spearmanr(g, p)[0]}
    return {"accuracy": sk.accuracy_score(g, p)}


def _test_index(path: Path) -> list[str]:
    return [line.split("\t")[0] for line in path.read_text(encoding="utf-8").splitlines()[1:]]


@pytest.mark.slow
def test_the_whole_chain(tmp_path, tiny_bert, capsys):
    from bertforge.data.options import DataOptions
    from bertforge.glue import layout
    from bertforge.inference import Predictor

    glue, out = build_glue(tmp_path / "glue"), tmp_path / "out"
    code, stdout, err = _glue(capsys, glue, tiny_bert, out, "--tasks", "mnli,rte", "cola,stsb", "--seeds", "1,2",
                              "--from-mnli", "--set", "all.epochs=1", "--set", "mnli.lr=1e-4")
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert list(results["tasks"]) == ["mnli", "rte", "cola", "stsb"]
    task_scores = {}
    for task, r in results["tasks"].items():
        lr = f"{r['chosen']['lr']:g}"
        assert r["chosen"]["lr"] == (1e-4 if task == "mnli" else 4e-5) and r["chosen"]["epochs"] == 1
        seeds = r["per_seed"][lr]
        assert sorted(seeds) == ["1", "2"]
        for seed, values in seeds.items():
            cell = out / "cells" / task / f"lr-{lr}" / f"seed-{seed}"
            predicted = json.loads((cell / "dev_predictions.json").read_text())
            gold = {name: _gold(glue, task, name) for name in predicted}
            expected = _expected(task, gold, predicted)
            assert {k: v for k, v in values.items() if k != "score"} == pytest.approx(expected)
            assert values["score"] == pytest.approx(statistics.fmean(expected.values()))
        medians = {m: statistics.median(s[m] for s in seeds.values()) for m in r["metrics"]}
        assert r["median"] == pytest.approx(medians)
        task_scores[task] = statistics.fmean(medians.values())
        assert r["score"] == pytest.approx(task_scores[task])
        assert r["best_seed"] == int(max(sorted(seeds), key=lambda s: seeds[s]["score"]))
    assert results["glue_score"] == pytest.approx(sum(task_scores.values()) / 4)
    assert f"**{100 * results['glue_score']:.1f}**" in (out / "glue.md").read_text()
    assert f"**{100 * results['glue_score']:.1f}**" in stdout
    assert (out / "glue.png").read_bytes().startswith(b"\x89PNG")

    # --from-mnli: RTE and STS-B start from the dev-best MNLI model, CoLA from --model
    mnli_best = Path(results["tasks"]["mnli"]["best_model"]).resolve()
    for task, start in (("rte", mnli_best), ("stsb", mnli_best), ("cola", tiny_bert.resolve())):
        for cell in (out / "cells" / task).glob("lr-*/seed-*"):
            assert json.loads((cell / "glue_result.json").read_text())["settings"]["model"] == str(start)

    # the cells' dev predictions are the kept model's
    rte = Predictor.load(results["tasks"]["rte"]["best_model"])
    dev = layout.read_task(glue, "rte").dev[0].examples
    rte_cell = Path(results["tasks"]["rte"]["best_model"]).parent
    assert rte.predict(dev, DataOptions())[0] == json.loads((rte_cell / "dev_predictions.json").read_text())["dev.tsv"]

    # the submission: the server's names, its header, the test files' index column, each task's label kind
    sub = out / "submission"
    assert sorted(p.name for p in sub.iterdir()) == sorted(
        ["CoLA.tsv", "STS-B.tsv", "MNLI-m.tsv", "MNLI-mm.tsv", "RTE.tsv", "WNLI.tsv", "AX.tsv"])
    sources = {"CoLA.tsv": "CoLA/test.tsv", "STS-B.tsv": "STS-B/test.tsv", "MNLI-m.tsv": "MNLI/test_matched.tsv",
               "MNLI-mm.tsv": "MNLI/test_mismatched.tsv", "RTE.tsv": "RTE/test.tsv", "WNLI.tsv": "WNLI/test.tsv",
               "AX.tsv": "diagnostic/diagnostic.tsv"}
    for name, source in sources.items():
        lines = (sub / name).read_text(encoding="utf-8").splitlines()
        assert lines[0] == "index\tprediction"
        assert [line.split("\t")[0] for line in lines[1:]] == _test_index(glue / source)
        values = [line.split("\t")[1] for line in lines[1:]]
        kinds = {"CoLA.tsv": {"0", "1"}, "WNLI.tsv": {"0", "1"}, "RTE.tsv": set(NLI2)}
        if name == "STS-B.tsv":
            assert all(float(v) == round(float(v), 3) for v in values)
        else:
            assert set(values) <= kinds.get(name, set(NLI3))
    assert len(_test_index(glue / "diagnostic/diagnostic.tsv")) == 7
    mnli = Predictor.load(results["tasks"]["mnli"]["best_model"])
    ax = layout.read_diagnostic(glue).examples
    assert [line.split("\t")[1] for line in (sub / "AX.tsv").read_text().splitlines()[1:]] == \
           mnli.predict(ax, DataOptions())[0]
    wnli_train = [e.label for e in read_glue(glue / "WNLI" / "train.tsv", "wnli")]
    majority = max(sorted(set(wnli_train)), key=wnli_train.count)
    assert {line.split("\t")[1] for line in (sub / "WNLI.tsv").read_text().splitlines()[1:]} == {majority}
    import zipfile

    with zipfile.ZipFile(out / "submission.zip") as zf:
        assert sorted(zf.namelist()) == sorted(sources)

    # a rerun resumes: no cell runs again, the same results
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/*/*/glue_result.json")}
    assert len(stamps) == 8
    code, _, err = _glue(capsys, glue, tiny_bert, out, "--tasks", "mnli,rte,cola,stsb", "--seeds", "1,2",
                         "--from-mnli", "--set", "all.epochs=1", "mnli.lr=1e-4")
    assert code == 0, err
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((out / "results.json").read_text())["glue_score"] == results["glue_score"]
    # ... and refuses to mix cells run with other settings
    code, _, err = _glue(capsys, glue, tiny_bert, out, "--tasks", "cola", "--seeds", "1,2", "--set", "all.epochs=2")
    assert code == 2 and "seed-1 was run with epochs 1, now 2" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_glue_mnli_and_finetune_give_the_same_model_and_dev_accuracy(tmp_path, tiny_bert, capsys):
    from safetensors.torch import load_file

    glue = build_glue(tmp_path / "glue", n_train=48, n_dev=30)
    settings = ["--seeds", "3,", "--set", "mnli.epochs=2", "mnli.lr=2e-4", "mnli.batch_size=8", "mnli.max_length=32"]
    code, _, err = _glue(capsys, glue, tiny_bert, tmp_path / "glue-run", "--tasks", "mnli", *settings)
    assert code == 0, err
    code, _, err = cli(capsys, "finetune", "--task", "classify", "--format", "glue:mnli", "--model", tiny_bert,
                        "--train", glue / "MNLI" / "train.tsv", "--dev", glue / "MNLI" / "dev_matched.tsv",
                        "--out", tmp_path / "finetune-run", "--seeds", "3", "--epochs", "2", "--lr", "2e-4",
                        "--batch-size", "8", "--max-length", "32", "--no-progress")
    assert code == 0, err
    glue_result = json.loads((tmp_path / "glue-run" / "results.json").read_text())["tasks"]["mnli"]
    finetuned = json.loads((tmp_path / "finetune-run" / "eval_results.json").read_text())
    assert glue_result["per_seed"]["0.0002"]["3"]["accuracy_m"] == finetuned["per_seed"]["3"]["dev"]["accuracy"]
    ours = load_file(Path(glue_result["best_model"]) / "model.safetensors")
    theirs = load_file(tmp_path / "finetune-run" / "model" / "model.safetensors")
    assert ours.keys() == theirs.keys()
    assert all((ours[k] == theirs[k]).all() for k in ours)
    start = load_file(tiny_bert / "model.safetensors")
    query = "bert.encoder.layer.0.attention.self.query.weight"
    assert not (ours[query] == start[query]).all()  # trained, not the starting point


def _one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bertforge glue: error: "), err
    return lines[0]


def _edit(path: Path, lineno: int, row: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[lineno - 1] = row
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_bad_inputs_end_in_one_line_and_write_nothing(tmp_path, tiny_bert, capsys):
    glue, out = build_glue(tmp_path / "glue"), tmp_path / "out"
    shutil.rmtree(glue / "QNLI")
    line = _one_line_error(*_glue(capsys, glue, tiny_bert, out, "--tasks", "rte,qnli")[:3:2])
    assert f"--data {glue / 'QNLI'}: no QNLI/ folder for task qnli" in line and "found: CoLA, MNLI, MRPC" in line

    _edit(glue / "RTE" / "train.tsv", 6, "5\tA cat .\tA dog\tsleeps .\tentailment")
    line = _one_line_error(*_glue(capsys, glue, tiny_bert, out, "--tasks", "rte")[:3:2])
    assert f"{glue / 'RTE' / 'train.tsv'}:6: 5 columns, RTE's train.tsv has 4" in line

    _edit(glue / "MNLI" / "dev_mismatched.tsv", 4, "\t".join(["3"] * 15 + ["maybe"]))
    line = _one_line_error(*_glue(capsys, glue, tiny_bert, out, "--tasks", "mnli")[:3:2])
    assert f"{glue / 'MNLI' / 'dev_mismatched.tsv'}:4: gold_label 'maybe' is not one of MNLI's labels" in line

    shutil.copy(glue / "CoLA" / "test.tsv", glue / "CoLA" / "dev.tsv")
    line = _one_line_error(*_glue(capsys, glue, tiny_bert, out, "--tasks", "cola")[:3:2])
    assert f"{glue / 'CoLA' / 'dev.tsv'}:1: is a test file" in line

    line = _one_line_error(*_glue(capsys, glue, tiny_bert, out, "--tasks", "stsb", "--from-mnli")[:3:2])
    assert "--from-mnli: needs MNLI: add mnli to --tasks" in line
    line = _one_line_error(*_glue(capsys, glue / "nowhere", tiny_bert, out)[:3:2])
    assert "--data" in line and "no such GLUE folder" in line
    assert not out.exists()


@pytest.mark.slow
def test_real_snli_in_mnli_layout_gives_finetunes_dev_accuracy(tmp_path, fetched, minilm_dir, capsys):
    """Real data through the same path: SNLI pairs written as MNLI's files, MiniLM, the same settings."""
    from tests.glue.files import write_snli_as_mnli

    glue = write_snli_as_mnli(fetched("snli"), tmp_path / "glue", n_train=96, n_dev=64)
    code, _, err = _glue(capsys, glue, minilm_dir, tmp_path / "glue-run", "--tasks", "mnli", "--seeds", "1,",
                         "--set", "mnli.epochs=1", "mnli.lr=1e-4", "mnli.max_length=64")
    assert code == 0, err
    code, _, err = cli(capsys, "finetune", "--task", "classify", "--format", "glue:mnli", "--model", minilm_dir,
                        "--train", glue / "MNLI" / "train.tsv", "--dev", glue / "MNLI" / "dev_matched.tsv",
                        "--out", tmp_path / "finetune-run", "--seeds", "1", "--epochs", "1", "--lr", "1e-4",
                        "--batch-size", "16", "--max-length", "64", "--no-progress")
    assert code == 0, err
    ours = json.loads((tmp_path / "glue-run" / "results.json").read_text())["tasks"]["mnli"]["per_seed"]["0.0001"]["1"]
    theirs = json.loads((tmp_path / "finetune-run" / "eval_results.json").read_text())["per_seed"]["1"]["dev"]
    assert ours["accuracy_m"] == theirs["accuracy"]
    from safetensors.torch import load_file

    best = json.loads((tmp_path / "glue-run" / "results.json").read_text())["tasks"]["mnli"]["best_model"]
    a = load_file(Path(best) / "model.safetensors")
    b = load_file(tmp_path / "finetune-run" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_flags_reach_each_cells_finetune_args(tmp_path, tiny_bert, monkeypatch):
    """--recipe, --set, --seeds, --eval-batch-size, --amp and --from-mnli, through the real parser, as the
    FinetuneArgs of each cell (finetune itself stubbed: the first call is recorded, then the run stops)."""
    from bertforge.cli import build_parser
    from bertforge.glue.run import run_glue
    from bertforge.glue.settings import GlueSettings
    from bertforge.options import from_namespace
    import bertforge.train.finetune as library

    calls = []

    def record(args):
        calls.append(args)
        raise KeyboardInterrupt

    monkeypatch.setattr(library, "finetune", record)
    glue = build_glue(tmp_path / "glue")
    args = build_parser().parse_args(["glue", "--data", str(glue), "--model", str(tiny_bert), "--out",
                                      str(tmp_path / "out"), "--tasks", "rte", "--recipe", "paper", "--seeds", "2",
                                      "--set", "rte.max_length=64", "--eval-batch-size", "7", "--amp", "off",
                                      "--no-progress"])
    settings = from_namespace(GlueSettings, args)
    with pytest.raises(KeyboardInterrupt):
        run_glue(settings, log=lambda *a: None)
    (first,) = calls
    assert (first.lr, first.epochs, first.batch_size, first.seeds, first.data.max_length) == (5e-5, 3, 32, [1], 64)
    assert (first.eval_batch_size, first.amp, first.progress, first.ignore_mismatched_sizes) == (7, "off", False, False)
    assert (first.task, first.data.format, Path(first.model)) == ("classify", "table", tiny_bert)
    assert Path(first.train) == tmp_path / "out" / "data" / "rte" / "train.jsonl"
    assert Path(first.out) == tmp_path / "out" / "cells" / "rte" / "lr-5e-05" / "seed-1"
    rows = [json.loads(line) for line in Path(first.train).read_text().splitlines()]
    assert len(rows) == 24 and set(rows[0]) == {"text", "text_pair", "label", "id"}
    assert [s.seeds_for("rte") for s in (settings,)] == [[1, 2]] and settings.recipe_for("rte").lr == (
        5e-5, 4e-5, 3e-5, 2e-5)
