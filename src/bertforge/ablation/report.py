"""A study's results: collected from its runs into results.json, a markdown table next to the paper's
numbers with one line per claim, and a bar plot with error bars."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bertforge.ablation.plan import ARCH_NAMES, PAPER_ARCH, PAPER_MIXES, MIXES, SIZES, Study, variants_of
from bertforge.io.atomic import atomic_path, atomic_write_text

METRIC = {"classify": "accuracy", "regress": "spearman", "choice": "accuracy", "tag": "f1", "qa": "f1"}
# A dev score that is 0 for a model that learned nothing (a constant label, all "O", no answer span): a run whose
# best dev value of it stays at or below LEARNED_FLOOR collapsed, whatever its accuracy (a majority-class
# classifier scores the majority's share). Multiple choice has no such score and is not checked.
LEARNED = {"classify": "mcc", "regress": "spearman", "tag": "f1", "qa": "f1"}
LEARNED_FLOOR = 0.05

# The paper's dev-set figures for the matching rows (Table 5: MNLI / QNLI / MRPC / SST-2 / SQuAD F1; Table 8:
# MNLI fine-tuned / NER fine-tuned / NER feature-based; Table 6: MLM perplexity / MNLI / MRPC / SST-2).
PAPER = {
    "bert": "84.4 / 88.4 / 86.7 / 92.7 / 88.5",
    "no-nsp": "83.9 / 84.9 / 86.5 / 92.6 / 87.9",
    "ltr": "82.1 / 84.3 / 77.5 / 92.1 / 77.8",
    "ltr+bilstm": "82.1 / 84.1 / 75.7 / 91.6 / 84.9",
    "electra": "ELECTRA paper, Table 1, GLUE dev at one GPU-day: ELECTRA-Small 79.9, BERT-Small 75.1",
    "bert-frozen": "NER dev F1 96.1 (fine-tuned BERT-Base 96.4)",
    **{f"mask-{m.replace(',', '-')}": v for m, v in zip(MIXES, ("84.2 / 95.4", "84.3 / 94.9", "84.1 / 95.2",
                                                                  "84.4 / 95.2", "83.7 / 94.8", "83.6 / 94.9"))},
    **{f"mask-{m.replace(',', '-')}-features": f"NER {v}" for m, v in zip(MIXES, ("94.9", "94.0", "94.6", "94.7",
                                                                                 "94.6", "94.6"))},
    "size-tiny": "3/768/12: ppl 5.84, 77.9 / 79.8 / 88.4",
    "size-mini": "6/768/12: ppl 4.68",
    "size-small": "12/768/12: ppl 3.99, 84.4 / 86.7 / 92.9",
}
# (claim, the variant expected higher, the one expected lower): checked per task on the mean of the seeds.
CLAIMS = (
    ("Bidirectional MLM beats a left-to-right LM (BERT > LTR)", "bert", "ltr"),
    ("A BiLSTM on top does not rescue the left-to-right model (BERT > LTR + BiLSTM)", "bert", "ltr+bilstm"),
    ("A BiLSTM on top helps the left-to-right model (LTR + BiLSTM > LTR)", "ltr+bilstm", "ltr"),
    ("NSP helps (BERT > No NSP; RoBERTa found it unnecessary)", "bert", "no-nsp"),
    ("Sentence-order prediction is at least as good as NSP (ALBERT: SOP > NSP)", "sop", "bert"),
    ("Span masking beats token masking (SpanBERT: spans > BERT without NSP)", "spans", "no-nsp"),
    ("Permutation LM beats MLM (XLNet > BERT)", "xlnet", "bert"),
    ("Replaced-token detection beats MLM (ELECTRA > BERT; ELECTRA paper, Table 1)", "electra", "bert"),
    ("Fine-tuning beats frozen features (BERT > BERT frozen + BiLSTM)", "bert", "bert-frozen"),
    ("BERT beats ELMo", "bert", "elmo"),
    ("Contextual vectors beat static ones (ELMo > word2vec)", "elmo", "word2vec"),
    ("Pre-training beats random initialisation (BERT > random)", "bert", "random"),
    ("Bigger is better on the task (mini > tiny)", "size-mini", "size-tiny"),
    ("Bigger is better on the task (small > mini)", "size-small", "size-mini"),
    ("Feature-based NER suffers from [MASK] alone (80/10/10 > 100/0/0, feature-based; Table 8)",
     "mask-80-10-10-features", "mask-100-0-0-features"),
    ("Random tokens alone are worse than 80/10/10 (fine-tuned; Table 8)", "mask-80-10-10", "mask-0-100-0"),
    ("Random tokens alone are worse than 80/10/10 (feature-based; Table 8)", "mask-80-10-10-features",
     "mask-0-100-0-features"),
)
ROBUST = "Fine-tuning is robust to the masking mix (no fine-tuned mix differs from 80/10/10; Table 8)"


def collect(study: Study, rows: list | None = None) -> dict:
    """Every row's (default: the study's chosen variants) pre-training figures and its per-task scores (mean,
    std, per seed) at the learning rate of the grid that dev chose."""
    from bertforge.ablation.run import model_root

    known = variants_of(study.preset)
    out: dict = {"settings": _settings(study), "variants": {}}
    for v in study.chosen if rows is None else rows:
        entry: dict = {"label": v.label, "group": v.group, "kind": known[v.model_source].kind, "pretrain": _pretraining(model_root(study, known[v.model_source])),
                       "tasks": {}}
        for task in study.specs:
            if task.family in v.task_families:
                entry["tasks"][task.name] = _task_scores(study, v, task)
        out["variants"][v.name] = entry
    out["claims"] = judge(out, study)
    return out


def _task_scores(study: Study, variant, task) -> dict:
    """The paper's protocol: the grid's learning rate with the best mean dev score over the seeds, and that
    rate's scores on the reported split (test when given); every rate's dev mean is kept in ``grid``."""
    from bertforge.ablation.run import finetune_dir, learning_rates

    metric, runs = METRIC[task.family], {}
    for lr in learning_rates(study, variant):
        seeds = {}
        for seed in study.seeds:
            run = finetune_dir(study, variant, task, seed, lr)
            if (run / "eval_results.json").is_file():
                summary = json.loads((run / "eval_results.json").read_text())
                result = summary["per_seed"][str(seed)]
                curve = _dev_curve(run, metric)
                seeds[str(seed)] = {"dev": result["dev"][metric], "reported": summary[metric],
                                    "best_epoch": 1 + curve.index(max(curve)) if curve else None, "curve": curve,
                                    "collapsed": _collapsed(run, task.family),
                                    "seconds": json.loads((run / "timing.json").read_text())["seconds"]
                                    if (run / "timing.json").is_file() else 0.0}
        if seeds:
            runs[lr] = seeds
    grid = {f"{lr:g}": statistics.fmean(s["dev"] for s in seeds.values()) for lr, seeds in runs.items()}
    chosen = max(runs, key=lambda lr: grid[f"{lr:g}"]) if runs else None
    picked = runs.get(chosen, {})
    values = [s["reported"] for s in picked.values()]
    return {"metric": metric, "split": "test" if task.test else "dev", "lr": chosen, "grid_dev": grid,
            "per_seed": {seed: s["reported"] for seed, s in picked.items()},
            "best_epochs": {seed: s["best_epoch"] for seed, s in picked.items()},
            "dev_curves": {seed: s["curve"] for seed, s in picked.items()},
            "collapsed": [seed for seed, s in picked.items() if s["collapsed"]],
            "mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "minutes": sum(s["seconds"] for seeds in runs.values() for s in seeds.values()) / 60}


def _dev_curve(run: Path, metric: str) -> list[float]:
    """The run's dev ``metric`` after each epoch, in order (its best epoch, 1-based, is the first maximum's
    index + 1): the curve that shows whether a row learned, and when."""
    from bertforge.train.logs import read_metrics

    if not (run / "metrics.jsonl").is_file():
        return []
    scored = [r for r in read_metrics(run / "metrics.jsonl") if f"dev_{metric}" in r]
    by_epoch = {int(r.get("epoch", i)): r[f"dev_{metric}"] for i, r in enumerate(scored)}  # a resumed epoch: its last
    return [by_epoch[e] for e in sorted(by_epoch)]


def _collapsed(run: Path, family: str) -> bool:
    """Whether the run never left a constant answer on dev: its best ``LEARNED`` score is at most the floor."""
    curve = _dev_curve(run, LEARNED[family]) if family in LEARNED else []
    return bool(curve) and max(curve) <= LEARNED_FLOOR


def _settings(study: Study) -> dict:
    return {k: v for k, v in vars(study).items() if k not in ("specs", "chosen")} | {
        "tasks": [vars(t) for t in study.specs]}


def _pretraining(root: Path) -> dict:
    """The objective, held-out figures at the end, tokens seen, speed and minutes of a pre-training run."""
    from bertforge.train.logs import read_metrics

    info: dict = {"run": str(root)}
    if (root / "run_config.json").is_file():
        config = json.loads((root / "run_config.json").read_text())
        info["objective"] = config.get("objective")
        if config.get("max_flops"):  # trained to a FLOPs budget (--budget flops), not to the study's steps
            info["max_flops"] = config["max_flops"]
    if not (root / "metrics.jsonl").is_file():
        return info
    records = read_metrics(root / "metrics.jsonl")
    train = [r for r in records if "tokens_seen" in r]
    evals = [r for r in records if any(k.startswith("eval_") for k in r)]
    if train:
        if "flops" in train[-1]:
            info["flops"] = train[-1]["flops"]
        info.update(tokens_seen=train[-1]["tokens_seen"], steps=train[-1]["step"],
                    tokens_per_s=statistics.median(r["tokens_per_s"] for r in train if r.get("tokens_per_s")))
    if evals:
        info.update({k: v for k, v in evals[-1].items() if k.startswith("eval_")})
    if (root / "timing.json").is_file():
        info["minutes"] = json.loads((root / "timing.json").read_text())["seconds"] / 60
    return info


def judge(results: dict, study: Study) -> list[dict]:
    """Each claim per task: held when the expected-higher mean beats the other by more than the larger of
    the two standard deviations, contradicted when it is lower by that much, not resolved otherwise."""
    variants, verdicts = results["variants"], []
    for claim, high, low in CLAIMS:
        for task in study.specs:
            a = variants.get(high, {}).get("tasks", {}).get(task.name)
            b = variants.get(low, {}).get("tasks", {}).get(task.name)
            if not a or not b or a["mean"] is None or b["mean"] is None:
                continue
            margin = max(a["std"], b["std"])
            diff = a["mean"] - b["mean"]
            if min(len(a["per_seed"]), len(b["per_seed"])) < 2:
                verdict = "not resolved (one seed: no spread to compare with)"
            else:
                verdict = "holds" if diff > margin else "does not hold (reversed)" if -diff > margin else \
                    "not resolved (within one std)"
            verdicts.append({"claim": claim, "task": task.name, "higher": high, "lower": low,
                             "difference": diff, "margin": margin, "verdict": verdict})
    verdicts += _masking_robustness(variants, study)
    verdicts += _size_perplexity(variants)
    return verdicts


def _size_perplexity(variants: dict) -> list[dict]:
    """Bigger -> lower held-out MLM perplexity, over the sizes that have been pre-trained (two or more)."""
    sizes = {s: variants.get(f"size-{s}", {}).get("pretrain", {}).get("eval_perplexity") for s in SIZES}
    sizes = {s: p for s, p in sizes.items() if p is not None}
    if len(sizes) < 2:
        return []
    ppl = list(sizes.values())
    held = all(a > b for a, b in zip(ppl, ppl[1:]))
    return [{"claim": f"Bigger models reach lower held-out MLM perplexity (perplexity {' > '.join(sizes)})",
             "task": "pre-training", "perplexities": ppl, "verdict": "holds" if held else "does not hold"}]


def _masking_robustness(variants: dict, study: Study) -> list[dict]:
    """Per task: how many fine-tuned masking mixes differ from 80/10/10 by more than the larger std."""
    verdicts = []
    for task in study.specs:
        base = variants.get("mask-80-10-10", {}).get("tasks", {}).get(task.name)
        others = {m: variants.get(f"mask-{m.replace(',', '-')}", {}).get("tasks", {}).get(task.name)
                  for m in MIXES[1:]}
        if not base or base["mean"] is None or any(not r or r["mean"] is None for r in others.values()):
            continue
        apart = [m for m, r in others.items() if abs(r["mean"] - base["mean"]) > max(r["std"], base["std"])]
        spread = max(r["mean"] for r in (base, *others.values())) - min(r["mean"] for r in (base, *others.values()))
        verdicts.append({"claim": ROBUST, "task": task.name, "spread": spread, "apart": apart,
                         "verdict": "holds" if not apart else f"does not hold ({len(apart)} of {len(others)} apart)"})
    return verdicts


def write_report(study: Study, results: dict) -> None:
    atomic_write_text(study.root / "results.json", json.dumps(results, indent=2))
    atomic_write_text(study.root / "ablation.md", markdown(study, results))
    plot(study, results, study.root / "ablation.png")


def markdown(study: Study, results: dict) -> str:
    tasks = [t.name for t in study.specs]
    head = ["variant", *[f"{t} ({METRIC[s.family]}, {'test' if s.test else 'dev'})" for t, s in zip(tasks, study.specs)],
            "held-out LM", "tokens seen", "pre-train FLOPs", "tokens/s", "pre-train min", "paper (dev)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, v in results["variants"].items():
        cells = [v["label"]]
        for t in tasks:
            r = v["tasks"].get(t)
            cells.append("" if not r or r["mean"] is None else _cell(r, len(study.seeds)))
        p = v["pretrain"]
        lm = next((f"{k[5:]} {p[k]:.3f}" for k in p if k.startswith("eval_") and k.endswith("_loss")), "")
        if "eval_perplexity" in p:
            lm += f", ppl {p['eval_perplexity']:.1f}"
        if "eval_perplexity_vs_unigram" in p:
            lm += f" = {p['eval_perplexity_vs_unigram']:.2f} × unigram {p['eval_unigram_perplexity']:.1f}"
        if "eval_bigram_perplexity" in p:
            lm += f" (bigram {p['eval_bigram_perplexity']:.1f})"
        cells += [lm, f"{p['tokens_seen']:,}" if "tokens_seen" in p else "", _flops(v), f"{p['tokens_per_s']:,.0f}"
                  if "tokens_per_s" in p else "", f"{p['minutes']:.1f}" if "minutes" in p else "", PAPER.get(name, "")]
        lines.append("| " + " | ".join(cells) + " |")
    s = results["settings"]
    arch = s.get("arch", PAPER_ARCH)
    text = [f"# Ablation study ({s['preset']}, {s['steps']} steps of {s['batch_size']} x {s['seq_len']} tokens, "
            f"seeds {', '.join(map(str, s['seeds']))})", "",
            *([f"Architecture of the rows of BERT's objectives, ELECTRA and random init: **{ARCH_NAMES[arch]}**; the "
               "learned-positions row is BERT as the paper built it, on the same budget.", ""] if arch != PAPER_ARCH
              else []), *lines, "",
            "Each score is at the learning rate of the grid with the best mean dev score over the seeds (in brackets: "
            f"that rate and each seed's best epoch on dev, of at most {s['epochs']}; grids: fine-tuned "
            f"{', '.join(f'{x:g}' for x in s['finetune_lr'])}, frozen {', '.join(f'{x:g}' for x in s['feature_lr'])}).",
            "",
            "Held-out LM losses of different objectives are not comparable (different targets: the masked tokens, "
            "the next token, the last sixth of a permutation, both directions); each is set against the unigram "
            "perplexity of its own held-out targets (the bigram's too, for left-to-right), counted on the training "
            "text. Paper masking rows are MASK/SAME/RND "
            f"({', '.join(PAPER_MIXES)}); the variant names use --mask-mix MASK,RANDOM,KEEP.", "", "## Claims", ""]
    text += [_collapse_line(results, study), ""]
    if results.get("left_out"):
        text += ["Rows this study ran before with other fine-tuning settings, left out of the table: "
                 + "; ".join(results["left_out"]), ""]
    for c in results["claims"]:
        if "difference" in c:
            detail = f"difference {c['difference']:+.3f}, larger std {c['margin']:.3f}"
        elif "spread" in c:
            detail = f"means span {c['spread']:.3f}" + (f"; apart: {', '.join(c['apart'])}" if c["apart"] else "")
        else:
            detail = "perplexities " + ", ".join(f"{x:.1f}" for x in c["perplexities"])
        text.append(f"- {c['claim']} — {c['task']}: **{c['verdict']}** ({detail})")
    return "\n".join(text) + "\n"


def _collapse_line(results: dict, study: Study) -> str:
    """Which reported runs did not learn (a row's score then says nothing about its pre-training), or that all did."""
    checked = sorted({f"{LEARNED[t.family]}" for t in study.specs if t.family in LEARNED})
    if not checked:
        return "Collapse is not checked: no task has a score that is 0 for a constant answer."
    found = [f"{v['label']} on {task} (seed {', '.join(r['collapsed'])})" for v in results["variants"].values()
             for task, r in v["tasks"].items() if r.get("collapsed")]
    rule = f"best dev {' / '.join(checked)} at most {LEARNED_FLOOR} at every epoch: a constant answer"
    return (f"**Collapsed runs** ({rule}): {'; '.join(found)}." if found else
            f"No reported run collapsed ({rule}); each run's dev curve is in results.json.")


def _flops(v: dict) -> str:
    """A row's pre-training FLOPs; what no counter sees is said, not left blank (word2vec trains in gensim)."""
    kind = v.get("kind")
    if kind == "random":
        return "0 (no pre-training)"
    if kind == "word2vec":
        return "not counted (gensim's word2vec)"
    p = v["pretrain"]
    budgeted = {"max_flops", "steps"} <= p.keys()  # stopped at --budget flops, not at the study's steps
    budget = f" (to a budget of {p['max_flops']:.3g}: {p['steps']:,} steps)" if budgeted else ""
    return f"{p['flops']:.3g}{budget}" if "flops" in p else ""


def _cell(r: dict, seeds: int) -> str:
    """mean ± std (lr, best epochs), and n= when some seeds have not run yet."""
    epochs = "/".join(str(e) for e in r.get("best_epochs", {}).values() if e is not None)
    chosen = f"lr {r['lr']:g}" + (f", ep {epochs}" if epochs else "") if r.get("lr") is not None else ""
    missing = f", n={len(r['per_seed'])}" if len(r["per_seed"]) != seeds else ""
    collapsed = f", **collapsed: seed {', '.join(r['collapsed'])}**" if r.get("collapsed") else ""
    return f"{r['mean']:.3f} ± {r['std']:.3f} ({chosen}{missing}{collapsed})"


def plot(study: Study, results: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scored = {t.name: [(v["label"], v["tasks"][t.name]) for v in results["variants"].values()
                       if t.name in v["tasks"] and v["tasks"][t.name]["mean"] is not None] for t in study.specs}
    tasks = [t for t in study.specs if scored[t.name]] or study.specs[:1]  # no empty panels (masking: NER only)
    fig = Figure(figsize=(10, 3.2 * len(tasks)), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, task in zip(fig.subplots(len(tasks), 1, squeeze=False)[:, 0], tasks):
        rows = scored[task.name]
        ax.barh(range(len(rows)), [r["mean"] for _, r in rows], xerr=[r["std"] for _, r in rows], capsize=3,
                color="#4c72b0")
        ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"{task.name}: {METRIC[task.family]} ({'test' if task.test else 'dev'}), mean ± std over seeds")
        ax.grid(axis="x", alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
