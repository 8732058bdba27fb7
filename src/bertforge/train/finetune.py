"""Fine-tuning: one recipe for every task family, best-on-dev selection, several seeds, mean ± std.

The paper's recipe (§4): all parameters tuned (or, feature-based, the encoder frozen), AdamW with
10% linear warm-up then linear decay (the defaults; LAMB and cosine or constant schedules are there too),
dropout 0.1, a few epochs; the model kept is the epoch with the best dev score. The runtime (devices, DDP
through torchrun, AMP, accumulation, clipping, the non-finite guard), optimizers, schedules, checkpoints and
logs are pre-training's (``train/``).

A run checkpoints after every epoch (and every ``--save-every`` steps) into ``OUT/checkpoints/``; the same
command again resumes from the newest checkpoint to the weights an uninterrupted run reaches. A checkpoint holds
where training stands (the seed, the epoch, the next batch of the epoch's order, which is drawn from seed and
epoch), the model, optimizer, scheduler, RNG and loss-scaler states, the best-on-dev record so far and the
finished seeds' results. It is numbered by the steps done over all seeds, so the newest is the furthest.
"""

from __future__ import annotations

import copy
import json
import math
import os
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence
from tqdm import tqdm

from bertforge.data.batching import bucketed_batches, random_batches
from bertforge.data.columnar import describe, described, is_dataset, require_source
from bertforge.data.readers import check_labels
from bertforge.errors import CheckpointError, UsageError
from bertforge.inference.predictor import check_max_length, model_inputs, predict_examples
from bertforge.io.atomic import atomic_write_text
from bertforge.recipe_files import write_recipe
from bertforge.model.directory import ModelDir
from bertforge.model.task_model import TaskModel, check_features
from bertforge.tasks import Task, get_task
from bertforge.tasks.features import collate
from bertforge.train.checkpoint import (capture_rng_state, check_resumable, latest_checkpoint, load_checkpoint,
                                        read_run_config, restore_rng_state, save_checkpoint, save_model_dir)
from bertforge.train.logs import MetricsLog, Throughput, plot_curves, read_metrics
from bertforge.train.optim import build_optimizer
from bertforge.train.runtime import DIVERGED_HINT, Diverged, Runtime, Stepper
from bertforge.train.schedule import build_schedule, warmup_ratio
from bertforge.train.settings import FinetuneArgs

__all__ = ["FinetuneArgs", "finetune", "load_model", "FinetuneRecipe"]


def load_model(task: Task, source: ModelDir | str | Path, labels: list[str], train_examples: list | None = None, *,
               feature_based: bool = False, features: str = "concat-last-4", bilstm: bool = False,
               ignore_mismatched_sizes: bool = False, dropout: float | None = None):
    """The task's model on the pre-trained model directory ``source``, with the task's settings (labels...).

    A family's own head for the task (its transformers-named class, ``model/registry.py``); ``TaskModel`` for
    the families used only frozen (ELMo and static word vectors, with a BiLSTM: the paper's ELMo baseline),
    ``--freeze-encoder`` and ``--head-bilstm``."""
    source = ModelDir.read(source)
    family, path = source.family, source.path
    settings: dict = {"bertforge_task": task.name, **task.model_settings(labels, train_examples or [])}
    if family.frozen or feature_based or bilstm:
        settings.pop("num_labels", None)
        settings.update(features=features if feature_based else "last", frozen=feature_based or family.frozen,
                        bilstm=bilstm or family.frozen, dropout=0.1 if dropout is None else dropout,
                        encoder_dropout=dropout)
        return TaskModel.for_task(source, settings, task.head_kind)
    if task.head_kind not in family.heads:
        raise UsageError(f"{path} is a {family.name} model, which has no {task.head_kind} head for the {task.name} "
                         f"task", flag="--model", hint=f"its heads: {', '.join(family.heads)}")
    if dropout is not None:
        settings.update({name: dropout for name in family.dropout_fields})
    kwargs = {"ignore_mismatched_sizes": ignore_mismatched_sizes} if "num_labels" in settings else {}
    try:
        return family.heads[task.head_kind].from_pretrained(path, **kwargs, **settings)
    except CheckpointError as e:
        if "classifier.weight" not in e.mismatched:
            raise
        theirs, ours = (shape[0] for shape in e.mismatched["classifier.weight"])
        raise CheckpointError(f"{path}: the checkpoint's classifier head has {theirs} labels but the training "
                              f"data has {ours}", mismatched=e.mismatched,
                              hint="pass --ignore-mismatched-sizes to train a new head") from None


# --group-by-length sorts by length within chunks of this many batches (then shuffles the batches).
GROUP_CHUNK_BATCHES = 50


def finetune(args: FinetuneArgs) -> dict:
    """Fine-tune for each seed, or resume the run in OUT where it stopped; write OUT/model (best seed),
    eval_results.json, metrics.jsonl."""
    runtime = Runtime.start(args.amp)
    try:
        recipe = FinetuneRecipe(args, runtime)
        recipe.setup()
        for seed in args.seeds[recipe.first_seed:]:
            recipe.run_seed(seed)
        return recipe.finish()
    finally:
        runtime.close()


class FinetuneRecipe:
    """setup (check a resume, read and encode the data) -> run_seed (train, keep the best dev epoch, checkpoint)
    per seed not finished -> finish."""

    def __init__(self, args: FinetuneArgs, runtime: Runtime):
        self.args, self.rt, self.out = args, runtime, Path(args.out)
        self.ckpt_dir = self.out / "checkpoints"
        self.task = get_task(args.task)
        self.per_seed: dict[int, dict] = {}
        self.best_overall: tuple[float, int] | None = None
        self.first_seed = 0  # index in args.seeds of the first seed to train (after the finished ones)
        self.resumed: dict | None = None  # the newest checkpoint's state, until run_seed takes it
        self.frozen_cache: list[torch.Tensor] | None = None  # each training input's frozen features (_cache_frozen)
        self.frozen_cache_tried = False  # decided once a run: the first seed's model tells

    def setup(self) -> None:
        args, task, opts = self.args, self.task, self.args.data
        # files, datasets folders or (given through the library) datasets.Dataset objects
        train, dev, test = (None if path is None else require_source(path, flag=flag, what="data file") for flag, path
                            in (("--train", args.train), ("--dev", args.dev), ("--test", args.test)))
        self.run_config = self._run_config()
        latest = latest_checkpoint(self.ckpt_dir)
        if latest is not None:  # before any work: a run whose settings changed is not resumed
            check_resumable(latest, read_run_config(latest), self.run_config)
        self.source = ModelDir.read(args.model)
        config = self.source.config
        check_max_length(opts, config)
        if args.freeze_encoder and self.source.family.features is not None and not self.source.family.frozen:
            check_features(args.features, True, config.num_hidden_layers)
        self.tokenizer = self.source.tokenizer
        self.train_examples = task.read(train, opts)[:args.max_train_examples]
        self.dev_examples = task.read(dev, opts)
        self.test_examples = task.read(test, opts) if test is not None else None
        self.labels = task.label_names(self.train_examples)
        if task.has_labels:
            for path, examples in ((dev, self.dev_examples), (test, self.test_examples)):
                if examples is not None:
                    check_labels(self.labels, task.label_names(examples), path, train_path=train)
        label2id = {n: i for i, n in enumerate(self.labels)} if task.has_labels else None
        self.train_feats = task.encode(self.tokenizer, self.train_examples, label2id, opts)
        self.steps_per_epoch = math.ceil(len(self.train_feats) / (args.batch_size * args.grad_accum * self.rt.world))
        self.log: MetricsLog | None = None  # opened once the first model has loaded: nothing is written before
        if latest is not None:
            self._resume(latest)

    def _run_config(self) -> dict:
        """What a resumed run must share with its checkpoint: the settings that shape the result (paths made
        absolute, a datasets.Dataset by its fingerprint), the data options, the number of processes."""
        fixed = {name: getattr(self.args, name) for name in FinetuneArgs.RESUME_FIXED}
        paths = {name: fixed[name] for name in ("model", "train", "dev", "test")}
        fixed.update({name: describe(v) if is_dataset(v) else os.path.abspath(v) for name, v in paths.items()
                      if is_dataset(v) or v})
        return {**fixed, **asdict(self.args.data), "world_size": self.rt.world}

    def _resume(self, latest: Path) -> None:
        """The finished seeds' results and where training stands, from the newest checkpoint."""
        state = load_checkpoint(latest)
        self.per_seed, self.best_overall = state["seeds_done"], state["best_overall"]
        position = state["position"]
        self.first_seed, self.resumed = position["seed"], state
        if not self.rt.main:
            return
        if self.first_seed == len(self.args.seeds):
            print(f"{latest}: every seed has finished; nothing to train", flush=True)
        else:
            print(f"resuming from {latest} (seed {self.args.seeds[self.first_seed]}, epoch {position['epoch'] + 1}, "
                  f"step {position['step']} of {self.steps_per_epoch * self.args.epochs})", flush=True)

    def _global_batches(self, seed: int, epoch: int) -> list[list[int]]:
        """Random batches (the encoder skips the padding, ``model/unpadded.py``), or with --group-by-length
        batches of similar lengths; the same for the same (seed, epoch)."""
        args = self.args
        size = args.batch_size * args.grad_accum * self.rt.world
        if args.group_by_length:
            return bucketed_batches([f.length for f in self.train_feats], size, shuffle=True, seed=seed,
                                    epoch=epoch, chunk_batches=GROUP_CHUNK_BATCHES)
        return random_batches(len(self.train_feats), size, seed, epoch)

    def _micro_batches(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        """This rank's micro-batches of one global batch (the same split as pre-training's)."""
        b, world, rank = self.args.batch_size, self.rt.world, self.rt.rank
        parts = [indices[(m * world + rank) * b:(m * world + rank + 1) * b] for m in range(self.args.grad_accum)]
        batches = []
        for part in filter(None, parts):
            batch = collate([self.train_feats[i] for i in part], self.tokenizer.pad_token_id)
            if self.frozen_cache is not None:  # (B, T, ...), zero at the padding
                batch["frozen_features"] = pad_sequence([self.frozen_cache[i] for i in part], batch_first=True)
            batches.append(batch)
        return batches

    def _cache_frozen(self, model) -> None:
        """Run a frozen encoder once over the training inputs and keep what it gives (``TaskModel.frozen_features``)
        for every epoch and seed: the paper's feature-based approach (§5.3) computes the expensive representation
        once. Its encoder has no dropout and no gradients, so every epoch would compute the same; skipped when it
        would take more than --feature-cache-gb."""
        args, feats = self.args, self.train_feats
        if self.frozen_cache_tried or not args.feature_cache_gb or not getattr(model, "caches_features", False):
            return
        self.frozen_cache_tried = True
        started, was_training = time.perf_counter(), model.training
        order = sorted(range(len(feats)), key=lambda i: feats[i].length)  # batches of similar lengths: little padding
        cache: list[torch.Tensor | None] = [None] * len(feats)
        model.eval()
        for start in range(0, len(order), args.eval_batch_size):
            part = order[start:start + args.eval_batch_size]
            batch = collate([feats[i] for i in part], self.tokenizer.pad_token_id)
            frozen = model.frozen_features(**model_inputs(batch, self.rt.device))
            if start == 0:  # every token's features take the same room: the whole cache's size, before it is made
                size = frozen[0, 0].numel() * frozen.element_size() * sum(f.length for f in feats)
                if size > args.feature_cache_gb * 2 ** 30:
                    if self.rt.main:
                        print(f"frozen features not kept: {size / 2 ** 30:.1f} GB is over --feature-cache-gb "
                              f"{args.feature_cache_gb:g}; the frozen encoder runs at every step", flush=True)
                    model.train(was_training)
                    return
            for row, i in enumerate(part):
                cache[i] = frozen[row, :feats[i].length].clone()
        model.train(was_training)
        self.frozen_cache = cache
        if self.rt.main:
            print(f"frozen features computed once for {len(feats):,} training inputs ({size / 2 ** 30:.2f} GB, "
                  f"{time.perf_counter() - started:.0f} s)", flush=True)

    def _loss(self, net, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = model_inputs(batch, self.rt.device, with_targets=True)
        if "frozen_features" in batch:
            inputs["frozen_features"] = batch["frozen_features"]
        return {"loss": net(**inputs).loss}

    def _counts(self, batch: dict[str, torch.Tensor]) -> dict[str, int]:
        return {"loss": self.task.loss_items(batch)}

    def run_seed(self, seed: int) -> None:
        """Train one seed for every epoch (from the checkpoint being resumed, if it is this seed's), scoring dev
        and checkpointing after each; keep the best epoch's weights."""
        args, rt, task = self.args, self.rt, self.task
        index = args.seeds.index(seed)
        state, self.resumed = self.resumed, None
        if state is None or state["position"]["seed"] != index:
            state = None
        position = state["position"] if state is not None else {"seed": index, "epoch": 0, "batch": 0, "step": 0}
        torch.manual_seed(seed)
        model = load_model(task, self.source, self.labels, self.train_examples, feature_based=args.freeze_encoder,
                           features=args.features, bilstm=args.head_bilstm,
                           ignore_mismatched_sizes=args.ignore_mismatched_sizes, dropout=args.dropout).to(rt.device)
        self._cache_frozen(model)
        if rt.main and self.log is None:  # the data and the model fit: start writing
            done, cut = set(self.per_seed), position["step"]  # keep the finished seeds' records, this one's to the cut
            self.log = MetricsLog(self.out / "metrics.jsonl", resume_from_step=cut, report_to=args.report_to,
                                  settings=asdict(described(args)), keep=lambda r: r.get("seed") in done or (
                                      r.get("seed") == seed and r.get("step", math.inf) <= cut))
            write_recipe(self.out, "finetune", described(args))
            print(f"{task.name}: {len(self.train_examples):,} training examples ({len(self.train_feats):,} inputs), "
                  f"{len(self.dev_examples):,} dev" + (f", {len(self.test_examples):,} test" if self.test_examples
                                                       else "") + (f"; labels {self.labels}" if task.has_labels
                                                                   else ""), flush=True)
        total = self.steps_per_epoch * args.epochs
        optimizer = build_optimizer(model, args.optimizer, lr=args.lr, weight_decay=args.weight_decay)
        scheduler = build_schedule(optimizer, warmup_ratio(args.warmup, total), total, args.schedule)
        stepper = Stepper(rt, model, optimizer, scheduler, ("loss",), args.clip_norm, args.max_non_finite,
                          compile=args.compile, explode_factor=args.explode_factor, explode_logs=args.explode_logs)
        parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "stepper": stepper}
        best = {"epoch": None, "scores": None, "predictions": None, "weights": None}  # the best dev epoch so far
        if state is not None and "model" in state:  # this seed was cut short: go on where it stopped
            for name, part in parts.items():
                part.load_state_dict(state[name])
            restore_rng_state(state["rng"])
            best = state["best"]
            if best["epoch"] is not None and best["weights"] is None:  # saved as "the checkpoint's model" (_save)
                best["weights"] = copy.deepcopy(model.state_dict())
        step, started, throughput = position["step"], time.perf_counter(), Throughput()
        bar = tqdm(total=total, initial=step, desc=f"fine-tuning (seed {seed})", unit="step",
                   disable=not args.progress or not rt.main, dynamic_ncols=True)
        for epoch in range(position["epoch"], args.epochs):
            model.train()
            batches = self._global_batches(seed, epoch)
            for b in range(position["batch"] if epoch == position["epoch"] else 0, len(batches)):
                stepper.step(self._micro_batches(batches[b]), self._loss, self._counts)
                step += 1
                rate = throughput.update(stepper.tokens * rt.world)
                bar.update(1)
                if step % args.log_every == 0:
                    record = stepper.read()
                    bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{rate:,.0f}")
                    if rt.main:
                        self.log.log(step, seed=seed, epoch=epoch, **record, tokens_per_s=rate,
                                     elapsed_s=time.perf_counter() - started)
                if args.save_every and step % args.save_every == 0 and b + 1 < len(batches):  # the epoch's end saves
                    self._save({"seed": index, "epoch": epoch, "batch": b + 1, "step": step}, parts, best)
            if rt.main:
                scores, predictions = self._score(model, self.dev_examples)
                self.log.log(step, seed=seed, epoch=epoch, **{f"dev_{k}": v for k, v in scores.items()})
                bar.write(f"seed {seed} epoch {epoch + 1}: dev " + ", ".join(
                    f"{k} {v:.4f}" for k, v in scores.items() if isinstance(v, float)))
                metric = task.selection_metric
                if best["epoch"] is None or scores[metric] > best["scores"][metric]:
                    best = {"epoch": epoch, "scores": scores, "predictions": predictions,
                            "weights": copy.deepcopy(model.state_dict())}
            rt.barrier()
            if epoch + 1 < args.epochs:
                self._save({"seed": index, "epoch": epoch + 1, "batch": 0, "step": step}, parts, best)
        bar.close()
        if rt.main:
            model.load_state_dict(best["weights"])
            self._keep(seed, model, best)
        rt.barrier()
        self._save({"seed": index + 1, "epoch": 0, "batch": 0, "step": 0})  # this seed is done

    def _save(self, position: dict, parts: dict | None = None, best: dict | None = None) -> None:
        """Checkpoint where training stands. ``position``: the next batch to train (the seed's index in --seeds,
        the epoch, the batch in the epoch's order) and the steps this seed has done; ``parts`` (model, optimizer,
        scheduler, stepper) and ``best`` are the seed's, None once it is done (then only the newest is kept)."""
        if parts is not None and not parts["stepper"].weights_finite():  # never a checkpoint of diverged weights
            raise Diverged("training diverged: some weights are no longer finite numbers", hint=DIVERGED_HINT)
        if self.rt.main:
            state = {"position": position, "run_config": self.run_config, "seeds_done": self.per_seed,
                     "best_overall": self.best_overall}
            if parts is not None:
                # The epoch just finished is the best: its weights are the checkpoint's model, not saved twice.
                is_model = position["batch"] == 0 and best["epoch"] == position["epoch"] - 1
                state.update({name: part.state_dict() for name, part in parts.items()}, rng=capture_rng_state(),
                             best={**best, "weights": None if is_model else best["weights"]})
            done = position["seed"] * self.steps_per_epoch * self.args.epochs + position["step"]
            save_checkpoint(self.ckpt_dir, done, state, keep_last=self.args.keep_last if parts is not None else 1)
        self.rt.barrier()

    def _score(self, model, examples: list) -> tuple[dict, list]:
        predictions, _ = self._predict(model, examples)
        return self.task.score(examples, predictions, self.labels), predictions

    def _predict(self, model, examples: list) -> tuple[list, list]:
        return predict_examples(model, self.task, self.tokenizer, examples, self.args.data,
                                self.args.eval_batch_size, self.rt.device)

    def _keep(self, seed: int, model, best: dict) -> None:
        """Record a seed's dev (and test) figures and predictions; save its model if it is the best seed so far."""
        dev_scores = best["scores"]
        result = {"dev": dev_scores, "best_epoch": best["epoch"] + 1, "best_epoch_metric": self.task.selection_metric,
                  "dev_predictions": best["predictions"]}  # the best epoch's: the report reuses them
        if self.test_examples is not None:
            predictions, _ = self._predict(model, self.test_examples)
            result["test"] = self.task.score(self.test_examples, predictions, self.labels)
            result["test_predictions"] = predictions
        self.per_seed[seed] = result
        metric = dev_scores[self.task.selection_metric]
        if self.best_overall is None or metric > self.best_overall[0]:
            self.best_overall = (metric, seed)
            save_model_dir(model, self.tokenizer, self.out / "model")

    def finish(self) -> dict:
        """eval_results.json (mean ± std over seeds), the task's report, curves, the run's arguments."""
        if not self.rt.main:
            return {}
        if self.log is not None:  # None when every seed had finished before this process
            self.log.close()
        args, task = self.args, self.task
        summary = self._summarise()
        split, examples = ("test", self.test_examples) if self.test_examples is not None else ("dev", self.dev_examples)
        best_seed = self.best_overall[1]
        predictions = self.per_seed[best_seed][f"{split}_predictions"]  # the best model's, not predicted again
        task.report(self.out, examples, predictions, self.labels)
        for result in self.per_seed.values():
            result.pop("test_predictions", None)
            result.pop("dev_predictions", None)
        summary["best_seed"] = best_seed
        atomic_write_text(self.out / "eval_results.json", json.dumps(summary, indent=2))
        records = [r for r in read_metrics(self.out / "metrics.jsonl")
                   if "loss" in r or any(k.startswith("dev_") for k in r)]
        if records:  # the metrics, not the bookkeeping (seed, epoch, elapsed time) that each record carries
            plot_curves(records, self.out / "curves.png", keys=sorted(
                {k for r in records for k in r} - {"step", "seed", "epoch", "elapsed_s"}))
        atomic_write_text(self.out / "finetune_args.json", json.dumps(asdict(described(args)), indent=2, default=str))
        return summary

    def _summarise(self) -> dict:
        """Every metric as mean and std over seeds (test when given, else dev), plus each seed's figures."""
        split = "test" if self.args.test else "dev"
        summary: dict = {"task": self.task.name, "split": split, "seeds": list(self.per_seed)}
        first = next(iter(self.per_seed.values()))[split]
        for name in [k for k, v in first.items() if isinstance(v, (int, float))]:
            values = [r[split][name] for r in self.per_seed.values()]
            summary[name] = statistics.fmean(values)
            summary[f"{name}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary["per_seed"] = {str(s): r for s, r in self.per_seed.items()}
        return summary
