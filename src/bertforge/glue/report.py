"""A GLUE run's results: results.json (every seed of every learning rate, the medians, the chosen settings,
the GLUE score), glue.md (the table a paper or a model card prints) and glue.png (the per-seed spread)."""

from __future__ import annotations

import json
from pathlib import Path

from bertforge.glue import score
from bertforge.glue.layout import TASKS, WNLI_REASON, TaskData
from bertforge.glue.recipes import describe
from bertforge.glue.settings import GlueSettings
from bertforge.io.atomic import atomic_path, atomic_write_text

LABELS = {"mcc": "MCC", "accuracy": "acc", "f1": "F1", "pearson": "Pearson", "spearman": "Spearman",
          "accuracy_m": "acc-m", "accuracy_mm": "acc-mm"}


def collect(settings: GlueSettings, root: Path, data: dict[str, TaskData]) -> dict:
    """Each task's per-seed metrics at every learning rate, the rate dev chose, the medians there, the task
    score (mean of the medians) and the GLUE score (mean of the task scores)."""
    from bertforge.glue.run import Cell, finished, select

    tasks = {}
    for key in settings.tasks:
        runs = finished(root, settings, key)
        lr, seed, grid = select(runs)
        chosen = runs[lr]
        medians = score.medians([r["dev"] for r in chosen.values()])
        task_scores = [r["score"] for r in chosen.values()]
        d = data[key]
        tasks[key] = {
            "name": TASKS[key].name, "metrics": list(score.METRICS[key]),
            "per_seed": {f"{rate:g}": {str(s): r["dev"] | {"score": r["score"]} for s, r in seeds.items()}
                         for rate, seeds in runs.items()},
            "grid_median_score": grid,
            "chosen": describe(settings.recipe_for(key)) | {"lr": lr, "seeds": sorted(chosen),
                                                            "model": chosen[seed]["settings"]["model"]},
            "median": medians, "score": score.task_score(medians),
            "min_score": min(task_scores), "max_score": max(task_scores),
            "best_seed": seed, "best_model": str(Cell(key, lr, seed).path(root) / "model"),
            "examples": {d.train.path.name: len(d.train.examples), **{s.path.name: len(s.examples) for s in d.dev}},
            "skipped_rows": {s.path.name: s.skipped for s in (d.train, *d.dev) if s.skipped},
        }
    return {"settings": {"data": settings.data, "model": settings.model, "recipe": settings.recipe,
                         "tasks": settings.tasks, "from_mnli": settings.from_mnli, "set": settings.overrides},
            "tasks": tasks, "glue_score": score.glue_score({k: t["score"] for k, t in tasks.items()}),
            "glue_tasks": list(tasks),
            "not_run": {} if "wnli" in settings.tasks else {"wnli": WNLI_REASON}}


def write_report(root: Path, results: dict) -> None:
    atomic_write_text(root / "results.json", json.dumps(results, indent=2))
    atomic_write_text(root / "glue.md", markdown(results))
    plot(results, root / "glue.png")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def markdown(results: dict) -> str:
    """The leaderboard-style row (medians over seeds, x100) and a per-task table with spread and settings."""
    tasks = results["tasks"]
    s = results["settings"]
    head = [t["name"] + (" (" + "/".join(LABELS[m] for m in t["metrics"]) + ")") for t in tasks.values()]
    row = ["/".join(_pct(t["median"][m]) for m in t["metrics"]) for t in tasks.values()]
    lines = [f"# GLUE dev: {s['model']} (recipe {s['recipe']}{', RTE/MRPC/STS-B from MNLI' if s['from_mnli'] else ''})",
             "", "| " + " | ".join(head + ["GLUE score"]) + " |", "|" + "---|" * (len(head) + 1),
             "| " + " | ".join(row + [f"**{_pct(results['glue_score'])}**"]) + " |", "",
             "Medians over seeds, x100. A task's score is the mean of its metrics' medians; the GLUE score is "
             f"the mean of the {len(tasks)} task scores ({', '.join(t['name'] for t in tasks.values())}).", "",
             "| task | task score | seeds (min-max) | best seed | lr (grid: median dev score) | epochs | batch | "
             "length | skipped rows |", "|---|---|---|---|---|---|---|---|---|"]
    for t in tasks.values():
        c = t["chosen"]
        grid = ", ".join(f"{lr}: {_pct(v)}" for lr, v in t["grid_median_score"].items())
        skipped = ", ".join(f"{name} {n:,}" for name, n in t["skipped_rows"].items()) or "0"
        lines.append(f"| {t['name']} | {_pct(t['score'])} | {len(c['seeds'])} ({_pct(t['min_score'])}-"
                     f"{_pct(t['max_score'])}) | {t['best_seed']} | {c['lr']:g} ({grid}) | {c['epochs']} | "
                     f"{c['batch_size']} | {c['max_length']} | {skipped} |")
    for key, reason in results["not_run"].items():
        lines += ["", f"{TASKS[key].name}: not run. {reason}."]
    sub = results.get("submission")
    if sub:
        lines += ["", f"Submission ({sub['zip']}): {', '.join(sub['files']) or 'none'}"
                  + (f"; missing: {', '.join(sub['missing'])}" if sub["missing"] else "")]
        lines += [f"- {name}: {note}" for name, note in sub["notes"].items()]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    """Each seed's task score (dots) and the median (bar), per task, at the chosen learning rate."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tasks = list(results["tasks"].values())
    fig = Figure(figsize=(1.2 * len(tasks) + 2, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, t in enumerate(tasks):
        seeds = t["per_seed"][f"{t['chosen']['lr']:g}"]
        values = [100 * v["score"] for v in seeds.values()]
        offsets = [(j - (len(values) - 1) / 2) * 0.08 for j in range(len(values))]
        ax.scatter([i + o for o in offsets], values, s=18, color="#4c72b0", zorder=3)
        ax.hlines(100 * t["score"], i - 0.3, i + 0.3, color="#c44e52", linewidth=2)
    ax.set_xticks(range(len(tasks)), [t["name"] for t in tasks])
    ax.set_ylabel("dev task score x100\n(dots: seeds; bar: the task score of the medians)")
    ax.set_title(f"GLUE dev, score {_pct(results['glue_score'])}")
    ax.grid(axis="y", alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
