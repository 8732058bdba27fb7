"""Run a study: one vocabulary, the corpus prepared once per instance format, each variant pre-trained, then
fine-tuned on every task with every seed. Every step is resumable: a finished run is skipped, a cut
pre-training resumes from its checkpoint, a cut fine-tuning run starts again."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import torch

from bertforge.ablation.plan import FEATURES, Study, TaskSpec, Variant, select_variants, variants_of
from bertforge.config import PRESETS
from bertforge.errors import CheckpointError
from bertforge.io.atomic import atomic_dir, atomic_write_text
from bertforge.recipe_files import write_recipe

LAYOUT = """OUT/tokenizer                    the vocabulary every variant shares
OUT/data/<format>                 the corpus prepared once per instance format (pairs, consecutive pairs, packed)
OUT/pretrain/<variant>/           each pre-training run (checkpoints, metrics.jsonl, model/)
OUT/finetune/<variant>/<task>/lr-<lr>/seed-<n>/   each fine-tuning run (one per learning rate of the grid)
OUT/results.json, ablation.md, ablation.png"""


def run_study(study: Study, log=print) -> dict:
    """Run (or resume) every step of ``study``; returns the collected results (see ``report.collect``)."""
    from bertforge.ablation.report import collect, write_report

    study.root.mkdir(parents=True, exist_ok=True)
    write_recipe(study.root, "ablate", study)
    tokenizer = _tokenizer(study, log)
    known = variants_of(study.preset)
    sources = [known[name] for name in dict.fromkeys(v.model_source for v in study.chosen)]
    if study.budget == "flops":  # the BERT row sets every row's budget, so it trains first
        sources = [known["bert"]] + [v for v in sources if v.name != "bert"]
    for variant in sources:
        _pretrain(study, variant, tokenizer, log)
    for variant in study.chosen:
        for task in study.specs:
            if task.family not in variant.task_families:
                continue
            for lr in learning_rates(study, variant):
                for seed in study.seeds:
                    _finetune(study, variant, task, seed, lr, log)
    earlier, left_out = _rows_run_before(study)
    for line in left_out:
        log(f"not in the table: {line}")
    results = collect(study, study.chosen + earlier)  # the rows asked for in their order, then the earlier ones
    results["left_out"] = left_out
    write_report(study, results)
    log(f"results: {study.root / 'results.json'}  table: {study.root / 'ablation.md'}  plot: {study.root / 'ablation.png'}")
    return results


def _tokenizer(study: Study, log) -> Path:
    path = study.root / "tokenizer"
    if not (path / "vocab.txt").is_file():
        from bertforge.vocab import train_vocab_from_corpus

        log(f"training a {study.vocab_size}-piece vocabulary on the corpus ...")
        with atomic_dir(path) as tmp:
            train_vocab_from_corpus(study.corpus, study.vocab_size, tmp)
    return path


def pretrain_args(study: Study, variant: Variant, tokenizer: Path):
    from bertforge.train.settings import OBJECTIVE_FAMILIES, PretrainArgs

    warmup = min(study.warmup_steps, study.steps)
    settings = dict(corpus=list(study.corpus), tokenizer=str(tokenizer), out=str(model_root(study, variant)),
                    objective=variant.objective, preset=study.preset, seq_len=study.seq_len,
                    batch_size=study.batch_size, max_steps=study.steps, lr=study.lr, warmup_steps=warmup,
                    seed=study.seed,
                    save_every=max(1, study.steps // 10), eval_every=max(1, study.steps // 10),
                    log_every=max(1, min(20, study.steps // 10)), progress=study.progress, workers=2,
                    report_to=study.report_to)
    if study.budget == "flops" and variant.name != "bert":
        # Its steps are known once its FLOPs per step are counted: it warms up for BERT's share of them, where
        # BERT's warm-up in steps could take a costlier row's whole run (an ELMo step costs ~5.7x a BERT step).
        settings.update(max_flops=bert_flops(study), warmup_steps=None, warmup_share=warmup / study.steps)
    if study.arch in OBJECTIVE_FAMILIES[variant.objective]:  # the study's architecture for BERT's objectives
        settings["arch"] = study.arch
    settings.update(variant.pretrain)  # a variant's own architecture (learned positions) wins
    return PretrainArgs(**settings)


def bert_flops(study: Study) -> float:
    """The training FLOPs of the study's BERT row (pre-trained first under --budget flops)."""
    from bertforge.train.logs import read_metrics

    metrics = model_root(study, variants_of(study.preset)["bert"]) / "metrics.jsonl"
    counted = [r["flops"] for r in read_metrics(metrics) if "flops" in r] if metrics.is_file() else []
    if not counted:
        raise CheckpointError(f"{metrics}: the BERT row has no counted FLOPs to set the others' budget",
                              hint="remove OUT/pretrain/bert to pre-train it again (this version counts its FLOPs)")
    return float(counted[-1])


def model_root(study: Study, variant: Variant) -> Path:
    return study.root / "pretrain" / variant.name


def family_of_row(study: Study, variant: Variant) -> str | None:
    """The model family a row's pre-trained model has (None: static vectors, no family of ours to check)."""
    from bertforge.train.settings import OBJECTIVE_FAMILIES

    if variant.kind == "word2vec":
        return None
    if variant.kind == "random":
        return study.arch
    families = OBJECTIVE_FAMILIES[variant.objective]
    return variant.pretrain.get("arch") or (study.arch if study.arch in families else families[0])


def _pretrain(study: Study, variant: Variant, tokenizer: Path, log) -> None:
    root = model_root(study, variant)
    config = root / "model" / "config.json"
    if config.is_file():  # done: by the architecture this study asks for, or refused (never silently reused)
        family, expected = json.loads(config.read_text()).get("model_type"), family_of_row(study, variant)
        if expected is not None and family != expected:
            raise CheckpointError(f"{root}: the {variant.name} row was pre-trained as {family}, and this study asks "
                                  f"for {expected} (--arch {study.arch})", hint="use another --out, or the --arch "
                                  "the study was run with")
        if (root / "run_config.json").is_file():
            _check_same_pretraining(root, pretrain_args(study, variant, tokenizer), variant)
        return
    if variant.kind == "random":
        return _random_model(study, tokenizer, root)
    if variant.kind == "word2vec":
        return _word2vec_model(study, tokenizer, root, log)
    from bertforge.data.prepare import prepare
    from bertforge.train.pretrain import prepare_settings, pretrain

    args = pretrain_args(study, variant, tokenizer)
    settings = prepare_settings(args)
    shared = study.root / "data" / ("packed" if not settings.nsp else "pairs" if settings.random_next else "consecutive")
    prepare(args.corpus, tokenizer, shared, settings, workers=args.workers, progress=study.progress)
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "data").exists():
        os.symlink(os.path.relpath(shared, root), root / "data")  # every variant of a format reads the same data
    log(f"pre-training {variant.name}: --objective {args.objective} {_flags(variant.pretrain)}".rstrip())
    started = time.perf_counter()
    try:
        result = pretrain(args)
    finally:  # a cut session's time counts too: the resumed run adds the rest
        _add_timing(root, time.perf_counter() - started)
    if result.get("status") != "done":
        raise KeyboardInterrupt


# What a study decides about each pre-training run; a finished row made with other values is not this study's.
STUDY_PRETRAIN_SETTINGS = ("corpus", "preset", "objective", "seq_len", "batch_size", "max_steps", "max_flops", "lr",
                           "warmup_steps", "warmup_share", "seed")


def _check_same_pretraining(root: Path, args, variant: Variant) -> None:
    """A finished pre-training row is reused only when the study would train it the same way (corpus, size,
    budget, rates, and the settings that make the variant what it is, such as the span row's masking): a rerun
    on the same --out with another corpus or --steps would otherwise report the old model under the new settings."""
    saved = json.loads((root / "run_config.json").read_text())
    # Under a FLOP budget the run's steps and warm-up are known only once its FLOPs are counted: the budget and the
    # warm-up share are what the study decides.
    decided_later = ("max_steps", "warmup_steps") if args.max_flops is not None else ()
    names = tuple(n for n in dict.fromkeys(STUDY_PRETRAIN_SETTINGS + tuple(variant.pretrain)) if n not in decided_later)
    had = {name: saved.get(name) for name in names}
    wanted = {name: getattr(args, name) for name in names}
    had["corpus"], wanted["corpus"] = _resolved(had["corpus"]), _resolved(wanted["corpus"])
    if differ := _differences(had, wanted):
        raise CheckpointError(f"{root}: pre-trained with {differ}", hint="use another --out, or remove "
                              "that directory to pre-train the row again with this study's settings")


def _resolved(paths: list[str] | None) -> list[str]:
    """Corpus paths as absolute paths, so a study run from another directory still matches its rows."""
    return [str(Path(p).resolve()) for p in paths or []]


def _differences(had: dict, wanted: dict) -> str:
    """The settings a finished run was made with that this study would make otherwise, named for the error."""
    return ", ".join(f"{name} {had[name]!r} (this study: {wanted[name]!r})"
                     for name in wanted if had[name] != wanted[name])


def _add_timing(root: Path, seconds: float) -> None:
    """Wall-clock of this pre-training session, added to the run's total (a resumed run adds its part)."""
    path = root / "timing.json"
    total = json.loads(path.read_text())["seconds"] if path.is_file() else 0.0
    atomic_write_text(path, json.dumps({"seconds": total + seconds}))


def _random_model(study: Study, tokenizer: Path, root: Path) -> None:
    """The floor: the study's architecture (``--arch``) at its size with no pre-training (the family's
    initialisation, the study's seed)."""
    from bertforge.model.registry import PRETRAINING, get_family
    from bertforge.tokenization import BertTokenizer
    from bertforge.train.checkpoint import save_model_dir

    tok = BertTokenizer.from_pretrained(tokenizer)
    torch.manual_seed(study.seed)
    family = get_family(study.arch)
    config = family.preset(study.preset, vocab_size=tok.vocab_size, pad_token_id=tok.pad_token_id)
    save_model_dir(family.heads[PRETRAINING](config), tok, root / "model")


def _word2vec_model(study: Study, tokenizer: Path, root: Path, log) -> None:
    """Skip-gram vectors (gensim) of the width of the study's model, on the same pieces of the same corpus."""
    from bertforge.config import PRESETS
    from bertforge.data.pretraining_data import InstanceStore
    from bertforge.model.static import StaticConfig, train_word2vec
    from bertforge.tokenization import BertTokenizer
    from bertforge.train.checkpoint import save_model_dir

    data = study.root / "data" / "packed"
    if not (data / "meta.json").is_file():
        from bertforge.data.prepare import prepare
        from bertforge.train.pretrain import prepare_settings

        args = pretrain_args(study, Variant("packed", "", objective="mlm"), tokenizer)
        prepare(args.corpus, tokenizer, data, prepare_settings(args), workers=2, progress=study.progress)
    store = InstanceStore(data, "train")
    rows = store.rows(range(len(store)))
    sequences = [row[1:n - 1].tolist() for row, n in zip(rows["tokens"], rows["lengths"])]
    tok = BertTokenizer.from_pretrained(tokenizer)
    log(f"training word2vec on {sum(map(len, sequences)):,} pieces ...")
    model = train_word2vec(sequences, StaticConfig(tok.vocab_size, PRESETS[study.preset][1], seed=study.seed))
    save_model_dir(model, tok, root / "model")


def learning_rates(study: Study, variant: Variant) -> list[float]:
    """The fine-tuning learning-rate grid of a variant: the feature grid when only a task model learns."""
    return study.feature_lr if variant.frozen else study.finetune_lr


def finetune_dir(study: Study, variant: Variant, task: TaskSpec, seed: int, lr: float) -> Path:
    """Where a variant's fine-tuning run on a task lands; variants that fine-tune the same model the same way
    (``mask-80-10-10`` and ``bert``, ``size-mini`` and ``bert`` in a mini study) share one run."""
    return study.root / "finetune" / _finetune_owner(study, variant) / task.name / f"lr-{lr:g}" / f"seed-{seed}"


def _finetune_owner(study: Study, variant: Variant) -> str:
    known = variants_of(study.preset)

    def key(v: Variant) -> tuple:
        source = v.model_source
        while known[source].model is not None:  # follow reuse chains to the run that trained the model
            source = known[source].model
        return source, v.frozen, tuple(sorted(v.finetune.items()))

    return next(v.name for v in known.values() if key(v) == key(variant))


# What a study decides about each fine-tuning run; a finished run made with other values is not this study's.
STUDY_FINETUNE_SETTINGS = ("epochs", "lr", "batch_size", "max_train_examples", "freeze_encoder", "head_bilstm",
                           "features")


def _rows_run_before(study: Study) -> tuple[list[Variant], list[str]]:
    """The rows not asked for this time whose fine-tuning runs an earlier piece of the study left in ``OUT``, made
    with this study's settings: a study run in pieces (``--variants``) reports every row it has, not only the
    last piece's. Rows fine-tuned otherwise are left out of the table, each with the reason (second list)."""
    rows, left_out = [], []
    for variant in select_variants(["all"], study.preset, study.arch):
        if variant in study.chosen or _finetune_owner(study, variant) != variant.name:
            continue
        cells = [(task, seed, lr) for task in study.specs if task.family in variant.task_families
                 for lr in learning_rates(study, variant) for seed in study.seeds]
        finished = [c for c in cells if (finetune_dir(study, variant, c[0], c[1], c[2]) / "eval_results.json").is_file()]
        if not finished:
            continue
        try:
            for task, seed, lr in finished:
                _check_same_finetuning(*_finetune_args(study, variant, task, seed, lr)[:2])
        except CheckpointError as e:
            left_out.append(f"{variant.name}: {e.message}")
            continue
        rows.append(variant)
    return rows, left_out


def _finetune_args(study: Study, variant: Variant, task: TaskSpec, seed: int, lr: float):
    """The run directory and FinetuneArgs of one cell, and whether concat-last-4 fell back to a scalar mix."""
    from bertforge.data.options import DataOptions
    from bertforge.train.settings import FinetuneArgs

    out = finetune_dir(study, variant, task, seed, lr)
    known = variants_of(study.preset)
    overrides = dict(known[variant.name].finetune)  # the features this preset has (variants_of)
    mixed = "features" in overrides and overrides["features"] != FEATURES["features"]
    args = FinetuneArgs(task=task.family, model=str(model_root(study, known[variant.model_source]) / "model"),
                        train=task.train, dev=task.dev, test=task.test, out=str(out), epochs=study.epochs,
                        lr=lr,
                        batch_size=study.finetune_batch_size, seeds=[seed],
                        max_train_examples=study.max_train_examples, progress=study.progress,
                        report_to=study.report_to, data=DataOptions(max_length=study.max_length), **overrides)
    return out, args, mixed


def _finetune(study: Study, variant: Variant, task: TaskSpec, seed: int, lr: float, log) -> None:
    from bertforge.train.finetune import finetune

    out, args, mixed = _finetune_args(study, variant, task, seed, lr)
    if (out / "eval_results.json").is_file():
        return _check_same_finetuning(out, args)
    shutil.rmtree(out, ignore_errors=True)  # a cut run starts again
    log(f"fine-tuning {variant.name} on {task.name}, lr {lr:g}, seed {seed}")
    if mixed:
        layers = PRESETS[study.preset][0]
        log(f"  ({study.preset} has {layers} layers: {args.features} instead of {FEATURES['features']})")
    started = time.perf_counter()
    finetune(args)
    atomic_write_text(out / "timing.json", json.dumps({"seconds": time.perf_counter() - started}))


def _check_same_finetuning(out: Path, args) -> None:
    """A finished run is reused only when the study would make it the same way (``STUDY_FINETUNE_SETTINGS`` and the
    sequence length); one made with other settings (a study rerun with another --epochs on the same --out) would
    mix two protocols in one table, so it is an error instead."""
    saved_file = out / "finetune_args.json"
    if not saved_file.is_file():
        raise CheckpointError(f"{out}: a finished fine-tuning run without finetune_args.json: its settings are unknown",
                              hint="remove that directory to fine-tune it again")
    saved = json.loads(saved_file.read_text())
    had = {name: saved.get(name) for name in STUDY_FINETUNE_SETTINGS}
    had["max_length"] = saved.get("data", {}).get("max_length")
    wanted = {name: getattr(args, name) for name in STUDY_FINETUNE_SETTINGS}
    wanted["max_length"] = args.data.max_length
    if differ := _differences(had, wanted):
        raise CheckpointError(f"{out}: fine-tuned with {differ}", hint="use another --out, or remove that "
                              "directory to fine-tune it again with this study's settings")


def _flags(values: dict) -> str:
    return " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in values.items())
