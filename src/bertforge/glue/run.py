"""Run (or resume) a GLUE evaluation: every task x learning rate x seed is a cell, one call of the fine-tuning
library (``train.finetune.finetune``) on the task's files; a finished cell (its ``glue_result.json``) is
skipped. Then the dev-best seed of each task predicts its test sets (MNLI's also predicts AX), and the
report and the submission are written.

    OUT/run_config.json                          the settings of the last run
    OUT/data/<task>/{train,dev...}.jsonl         the official files, read and checked (QQP's broken rows out)
    OUT/cells/<task>/lr-<lr>/seed-<n>/           finetune's run (model/, eval_results.json, metrics.jsonl...),
                                                 glue_result.json, dev_predictions.json, test_predictions.json
    OUT/results.json, glue.md, glue.png          every seed, the medians, the chosen settings, the GLUE score
    OUT/submission/*.tsv, OUT/submission.zip     for gluebenchmark.com

One process runs the cells one after another (each on the GPU when there is one); torchrun is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from bertforge.errors import BertforgeError, UsageError
from bertforge.glue import layout, score
from bertforge.glue.layout import AX_SUBMISSION, TASKS, WNLI_REASON, Split, TaskData
from bertforge.glue.recipes import TaskRecipe, describe
from bertforge.glue.settings import GlueSettings
from bertforge.io.atomic import atomic_path, atomic_write_text
from bertforge.recipe_files import write_recipe

FROM_MNLI = ("rte", "mrpc", "stsb")  # the small tasks MosaicBERT and RoBERTa start from the MNLI model
RESULT, DEV_PREDICTIONS, TEST_PREDICTIONS = "glue_result.json", "dev_predictions.json", "test_predictions.json"


@dataclass(frozen=True)
class Cell:
    task: str
    lr: float
    seed: int

    def path(self, root: Path) -> Path:
        return root / "cells" / self.task / f"lr-{self.lr:g}" / f"seed-{self.seed}"


def run_glue(settings: GlueSettings, log=print) -> dict:
    """Every cell of ``settings`` (finished ones skipped), then results.json, glue.md, glue.png and the
    submission; returns the results."""
    from bertforge.glue.report import collect, write_report

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("runs as one process (each cell's finetune would join a new process group): start "
                         "bertforge glue without torchrun")
    root = Path(settings.out)
    data = {task: layout.read_task(settings.data, task) for task in settings.tasks}  # every file checked first
    for task in data.values():
        for split in (task.train, *task.dev):
            if split.skipped:
                warnings.warn(f"{split.path}: skipped {split.skipped:,} row(s) with missing fields (lines "
                              f"{', '.join(map(str, split.skipped_lines[:5]))}{', ...' if split.skipped > 5 else ''})"
                              ", as GLUE's processors do")
    ax = layout.read_diagnostic(settings.data) if "mnli" in settings.tasks else None
    if "wnli" not in settings.tasks:
        log(f"wnli: not run. {WNLI_REASON}")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "run_config.json", json.dumps(asdict(settings) | {"tasks": settings.tasks}, indent=2))
    write_recipe(root, "glue", settings)
    files = {task: _write_data(root, d) for task, d in data.items()}
    cells = [Cell(task, lr, seed) for task in settings.tasks for lr in settings.recipe_for(task).lr
             for seed in settings.seeds_for(task)]
    for cell in cells:  # a cell finished with other settings is refused before anything runs
        if (cell.path(root) / RESULT).is_file() and not _from_mnli(settings, cell.task):
            _check_settings(cell, root, _cell_settings(settings, cell, data[cell.task], settings.model))
    units = {cell: _units(settings.recipe_for(cell.task), data[cell.task]) for cell in cells}
    done = sum(units[c] for c in cells if (c.path(root) / RESULT).is_file())
    bar = tqdm(total=sum(units.values()), initial=done, unit="ex", desc="GLUE", disable=not settings.progress,
               dynamic_ncols=True, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} training examples x epochs "
               "[{elapsed}<{remaining}{postfix}]")
    try:
        for cell in cells:
            start = settings.model
            if _from_mnli(settings, cell.task):  # known once MNLI's cells are finished
                start = str(best_cell(root, "mnli", settings).path(root) / "model")
            if (cell.path(root) / RESULT).is_file():
                _check_settings(cell, root, _cell_settings(settings, cell, data[cell.task], start))
                continue
            bar.set_postfix_str(f"{cell.task} lr {cell.lr:g} seed {cell.seed}")
            result = run_cell(settings, cell, data[cell.task], files[cell.task], start, root)
            bar.update(units[cell])
            bar.write(f"{TASKS[cell.task].name} lr {cell.lr:g} seed {cell.seed}: " + ", ".join(
                f"{k} {100 * v:.2f}" for k, v in result["dev"].items()) + f" ({result['seconds']:.0f} s)")
    finally:
        bar.close()
    for task in settings.tasks:
        predict_tests(settings, root, data[task], ax if task == "mnli" else None)
    results = collect(settings, root, data)
    results["submission"] = _submission(settings, root, data, ax)
    write_report(root, results)
    return results


def _from_mnli(settings: GlueSettings, task: str) -> bool:
    return settings.from_mnli and task in FROM_MNLI


def _units(recipe: TaskRecipe, data: TaskData) -> int:
    """A cell's work for the progress bar's ETA: training examples x epochs."""
    n = len(data.train.examples)
    return min(n, recipe.max_train_examples or n) * recipe.epochs


def _write_data(root: Path, data: TaskData) -> dict[str, Path]:
    """The checked examples as JSON lines, which finetune reads (``--format table``): a file name -> its copy."""
    copies = {}
    for split in (data.train, *data.dev):
        path = root / "data" / data.task.key / f"{split.path.stem}.jsonl"
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            for e in split.examples:
                record = {"text": e.text, "label": e.label, "id": e.id}
                if e.text_pair is not None:
                    record["text_pair"] = e.text_pair
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        copies[split.path.name] = path
    return copies


def _cell_settings(settings: GlueSettings, cell: Cell, data: TaskData, start: str) -> dict:
    """What a cell was run with; a finished cell whose settings differ is not silently reused."""
    recipe = describe(settings.recipe_for(cell.task))
    recipe.pop("lr"), recipe.pop("seeds")
    return {"model": str(Path(start).resolve()), **recipe, "lr": cell.lr, "seed": cell.seed,
            "train_examples": len(data.train.examples), "dev_examples": [len(s.examples) for s in data.dev]}


def _check_settings(cell: Cell, root: Path, wanted: dict) -> dict:
    result = json.loads((cell.path(root) / RESULT).read_text())
    differ = [k for k in wanted if result["settings"].get(k) != wanted[k]]
    if differ:
        k = differ[0]
        raise UsageError(f"{cell.path(root)} was run with {k} {result['settings'].get(k)!r}, now {wanted[k]!r}",
                         flag="--out", hint="use a new --out, or the settings it was run with")
    return result


def run_cell(settings: GlueSettings, cell: Cell, data: TaskData, files: dict[str, Path], start: str,
             root: Path) -> dict:
    """Fine-tune one seed at one learning rate with the library's finetune; score dev the GLUE way."""
    from bertforge.data.options import DataOptions
    from bertforge.train.finetune import finetune
    from bertforge.train.settings import FinetuneArgs

    out, task = cell.path(root), data.task
    shutil.rmtree(out, ignore_errors=True)  # a cut cell starts again
    recipe = settings.recipe_for(cell.task)
    args = FinetuneArgs(task=task.family, model=str(start), train=str(files[data.train.path.name]),
                        dev=str(files[data.dev[0].path.name]), out=str(out), epochs=recipe.epochs, lr=cell.lr,
                        batch_size=recipe.batch_size, warmup=recipe.warmup, weight_decay=recipe.weight_decay,
                        seeds=[cell.seed], max_train_examples=recipe.max_train_examples,
                        eval_batch_size=settings.eval_batch_size, amp=settings.amp, progress=False,
                        report_to=settings.report_to,
                        ignore_mismatched_sizes=_from_mnli(settings, cell.task),
                        data=DataOptions(format="table", max_length=recipe.max_length))
    started = time.perf_counter()
    summary = finetune(args)
    predictor = _predictor(out / "model")
    predictions = {split.path.name: predictor.predict(split.examples, args.data, settings.eval_batch_size)[0]
                   for split in data.dev}
    result = {"task": cell.task, "lr": cell.lr, "seed": cell.seed,
              "settings": _cell_settings(settings, cell, data, start),
              "dev": dev_metrics(data, predictions), "finetune_dev": summary["per_seed"][str(cell.seed)]["dev"],
              "seconds": time.perf_counter() - started}
    result["score"] = score.task_score(result["dev"])
    atomic_write_text(out / DEV_PREDICTIONS, json.dumps(predictions))
    atomic_write_text(out / RESULT, json.dumps(result, indent=2))  # last: the cell is finished
    return result


def dev_metrics(data: TaskData, predictions: dict[str, list]) -> dict[str, float]:
    """GLUE's metrics of a task's dev predictions (by dev file name)."""
    (first, *rest) = [([e.label for e in s.examples], predictions[s.path.name]) for s in data.dev]
    mm = rest[0] if rest else (None, None)
    return score.glue_metrics(data.task.key, *first, *mm)


def _predictor(path: Path):
    import torch

    from bertforge.inference import Predictor

    return Predictor.load(path, device="cuda" if torch.cuda.is_available() else "cpu")


def finished(root: Path, settings: GlueSettings, task: str) -> dict[float, dict[int, dict]]:
    """The finished cells of ``task`` that the settings plan: learning rate -> seed -> glue_result."""
    runs: dict[float, dict[int, dict]] = {}
    for lr in settings.recipe_for(task).lr:
        for seed in settings.seeds_for(task):
            path = Cell(task, lr, seed).path(root) / RESULT
            if path.is_file():
                runs.setdefault(lr, {})[seed] = json.loads(path.read_text())
    return runs


def select(runs: dict[float, dict[int, dict]]) -> tuple[float, int, dict[str, float]]:
    """(chosen learning rate, dev-best seed, each rate's median dev score): the rate with the best median task
    score over its seeds (the first on a tie), and its seed with the best task score (the lowest on a tie)."""
    grid = {lr: statistics.median(r["score"] for r in seeds.values()) for lr, seeds in runs.items()}
    lr = max(grid, key=lambda x: grid[x])
    seed = max(sorted(runs[lr]), key=lambda s: runs[lr][s]["score"])
    return lr, seed, {f"{k:g}": v for k, v in grid.items()}


def best_cell(root: Path, task: str, settings: GlueSettings) -> Cell:
    runs = finished(root, settings, task)
    if task == "mnli" and not runs:  # --from-mnli on an --out whose MNLI cells ran with other settings
        runs = {}
        for path in sorted(root.glob("cells/mnli/*/seed-*/" + RESULT)):
            r = json.loads(path.read_text())
            runs.setdefault(r["lr"], {})[r["seed"]] = r
    if not runs:
        raise BertforgeError(f"no finished {task} cell in {root / 'cells' / task}")
    lr, seed, _ = select(runs)
    return Cell(task, lr, seed)


def predict_tests(settings: GlueSettings, root: Path, data: TaskData, ax: Split | None) -> None:
    """The dev-best cell's predictions on the task's test files (and AX for MNLI), kept in the cell."""
    cell = best_cell(root, data.task.key, settings)
    path = cell.path(root) / TEST_PREDICTIONS
    wanted = {name: split for name, split in zip(data.task.submission, data.test) if split is not None}
    if ax is not None:
        wanted[AX_SUBMISSION] = ax
    cached = json.loads(path.read_text()) if path.is_file() else {}
    missing = {name: split for name, split in wanted.items()
               if len(cached.get(name, {}).get("ids", ())) != len(split.examples)}
    if not missing:
        return
    from bertforge.data.options import DataOptions

    predictor = _predictor(cell.path(root) / "model")
    opts = DataOptions(format="table", max_length=settings.recipe_for(data.task.key).max_length)
    for name, split in missing.items():
        predictions = predictor.predict(split.examples, opts, settings.eval_batch_size)[0]
        cached[name] = {"ids": [e.id for e in split.examples], "predictions": predictions}
    atomic_write_text(path, json.dumps(cached))


def _submission(settings: GlueSettings, root: Path, data: dict[str, TaskData], ax: Split | None) -> dict:
    """The submission files from each task's dev-best cell, WNLI's majority class when WNLI was not run."""
    from bertforge.glue.submission import FILES, write_submission

    files: dict[str, tuple[list, list]] = {}
    for task in settings.tasks:
        path = best_cell(root, task, settings).path(root) / TEST_PREDICTIONS
        for name, entry in (json.loads(path.read_text()) if path.is_file() else {}).items():
            files[name] = (entry["ids"], entry["predictions"])
    notes = {}
    if "wnli" not in settings.tasks:
        wnli = _wnli_majority(settings)
        if isinstance(wnli, str):
            notes["WNLI.tsv"] = wnli
        else:
            files["WNLI.tsv"] = wnli
            notes["WNLI.tsv"] = f"the majority class of WNLI's training set ({wnli[1][0] if wnli[1] else '-'})"
    written = write_submission(root, files) if files else []
    missing = [name for name in FILES if name not in files]
    if missing:
        warnings.warn(f"the submission lacks {', '.join(missing)} (tasks not run or test files absent): the GLUE "
                      "server wants all eleven files")
    return {"files": [p.name for p in written], "missing": missing, "notes": notes,
            "zip": str(root / "submission.zip") if written else None}


def _wnli_majority(settings: GlueSettings) -> tuple[list, list] | str:
    """WNLI's test ids with its training set's majority label, or why there is none."""
    try:
        wnli = layout.read_task(settings.data, "wnli")
    except BertforgeError as e:
        return f"none: {e}"
    test = wnli.test[0]
    if test is None:
        return "none: WNLI/test.tsv is absent"
    counts = Counter(e.label for e in wnli.train.examples)
    majority = max(sorted(counts), key=counts.__getitem__)  # a tie goes to "0"
    return [e.id for e in test.examples], [majority] * len(test.examples)
