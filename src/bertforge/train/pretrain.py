"""Pre-training from raw text, on one process or many (DDP), for any objective of ``objectives/``.

Launch with ``bertforge pretrain ...`` on one machine, or ``torchrun --nproc_per_node N -m bertforge
pretrain ...`` for PyTorch DDP (NCCL on GPUs, gloo on CPUs). Rank 0 trains the vocabulary and
prepares the corpus; each rank then reads its own share of every global batch; rank 0 alone logs,
evaluates and saves. Running the same command again resumes from the newest checkpoint, exactly.

Loss scaling: the objective of one optimizer step is, for each of the objective's losses, the mean
over *all* its items in the global batch (masked positions for MLM, sequences for NSP), whatever the
number of ranks and accumulation steps (``train/runtime.py``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm import tqdm

from bertforge.data.columnar import described, require_source
from bertforge.data.corpus import read_documents
from bertforge.data.prepare import PrepareSettings, prepare
from bertforge.data.pretraining_data import InstanceStore, PretrainingBatches, eval_batches
from bertforge.errors import CheckpointError, DataFormatError, UsageError
from bertforge.io.atomic import atomic_dir, atomic_write_text
from bertforge.model.directory import ModelDir
from bertforge.model.registry import get_family, read_config_file
from bertforge.objectives import OBJECTIVES, Objective, families_for, objectives_for
from bertforge.objectives.count_lm import CountLM
from bertforge.recipe_files import write_recipe
from bertforge.tokenization import BertTokenizer
from bertforge.train.checkpoint import (capture_rng_state, check_resumable, checkpoint_step, latest_checkpoint,
                                        load_checkpoint, read_run_config, restore_rng_state, save_checkpoint,
                                        save_model_dir)
from bertforge.train.flops import step_flops
from bertforge.train.logs import MetricsLog, Throughput, plot_curves, read_metrics
from bertforge.train.optim import build_optimizer
from bertforge.train.runtime import DIVERGED_HINT, Diverged, Runtime, Stepper
from bertforge.train.schedule import build_schedule
from bertforge.train.settings import PretrainArgs

__all__ = ["PretrainArgs", "pretrain", "PretrainRecipe"]


class Interrupted(Exception):
    pass


def prepare_settings(args: PretrainArgs) -> PrepareSettings:
    """How a run's corpus is cut into instances: runs with equal settings share the prepared data."""
    pairs = OBJECTIVES[args.objective].pairs
    return PrepareSettings(max_seq_length=args.seq_len, short_seq_prob=args.short_seq_prob,
                           dupe_factor=args.dupe_factor, nsp=pairs is not None, random_next=pairs != "consecutive",
                           eval_fraction=args.eval_fraction, seed=args.seed, format=args.format,
                           text_field=args.text_field, segment_words=args.whole_word_mask or args.mask_spans)


def pretrain(args: PretrainArgs) -> dict:
    """Run (or resume) pre-training; returns the final evaluation and the output paths."""
    runtime = Runtime.start(args.amp)
    try:
        recipe = PretrainRecipe(args, runtime)
        recipe.setup()
        return recipe.run()
    finally:
        runtime.close()


class PretrainRecipe:
    """setup (data, model, optimizer, resume) -> run (steps, logs, evaluations, checkpoints) -> export."""

    def __init__(self, args: PretrainArgs, runtime: Runtime):
        self.args, self.rt, self.out = args, runtime, Path(args.out)
        self.ckpt_dir = self.out / "checkpoints"

    # --- setup --------------------------------------------------------------------------------

    def setup(self) -> None:
        """Check everything that can be checked first (corpus files, tokenizer, model config, resume settings),
        then prepare the data, build the model and optimizer, and resume from the newest checkpoint. An error
        found after the run directory was made removes what this setup made in it (``_undo_on_error``)."""
        args = self.args
        self._check_corpus()
        if args.tokenizer:
            BertTokenizer.from_pretrained(args.tokenizer)  # its files parse and hold every special token
        config = self._model_config()
        self._check_resume(config)
        with self._undo_on_error():
            self._setup(config)

    @contextmanager
    def _undo_on_error(self) -> Iterator[None]:
        """On an error in the block, remove the run directory if it did not exist before, else the entries
        the block added to it (never what was there before); on the main process, which alone writes."""
        out = self.out
        existed = out.is_dir()
        before = {p.name for p in out.iterdir()} if existed else set()
        try:
            yield
        except Exception:
            if self.rt.main and out.is_dir() and not out.is_symlink():
                for p in [out] if not existed else [p for p in out.iterdir() if p.name not in before]:
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    elif p.is_file() and not p.is_symlink():  # what setup writes: never a link or a device
                        p.unlink()
            raise

    def _setup(self, config) -> None:
        args, rt = self.args, self.rt
        self.tokenizer, data_dir = self._prepare_inputs()
        torch.manual_seed(args.seed)
        self.objective = self._objective()
        self.model = self._build_model(config).to(rt.device)
        self.objective.configure(self.model)
        self.batches = PretrainingBatches(InstanceStore(data_dir, "train"), self.objective, args.batch_size,
                                          args.grad_accum, rt.world)
        self.held_out = eval_batches(InstanceStore(data_dir, "eval"), self.objective, args.batch_size,
                                     args.eval_instances)
        if self.held_out and rt.main:
            self.objective.count_lm = CountLM.from_store(InstanceStore(data_dir, "train"), self.tokenizer.vocab_size)
        self.flops_per_step = self._count_flops()
        if args.max_flops is not None:
            args.max_steps = max(1, math.ceil(args.max_flops / self.flops_per_step))
            args.resolve_warmup()
            latest = latest_checkpoint(self.ckpt_dir)
            if latest is not None and checkpoint_step(latest) > args.max_steps:
                raise CheckpointError(f"cannot resume from {latest}: --max-flops {args.max_flops:g} is "
                                      f"{args.max_steps} steps, below the {checkpoint_step(latest)} already done",
                                      hint="pass a larger --max-flops, or another --out for a new run")
        self.optimizer = build_optimizer(self.model, args.optimizer, lr=args.lr, weight_decay=args.weight_decay)
        self.scheduler = build_schedule(self.optimizer, min(args.warmup_steps, args.max_steps), args.max_steps,
                                        args.schedule)
        self.stepper = Stepper(rt, self.model, self.optimizer, self.scheduler, self.objective.loss_names,
                               args.clip_norm, args.max_non_finite, compile=args.compile,
                               explode_factor=args.explode_factor, explode_logs=args.explode_logs)
        self.run_config = self._run_config(self.model.config)
        self.start = self._resume()

    def _count_flops(self, steps: int = 2) -> int:
        """A step's training FLOPs: the mean over the first ``steps`` steps of rank 0's micro-batches, times the
        ranks (every rank computes it alike, so all agree on a --max-flops budget's steps)."""
        micro = range(self.args.grad_accum)
        total = sum(step_flops(self.objective, self.model, [self.batches.batch(s, m, 0) for m in micro], self.rt.device)
                    for s in range(steps))
        return max(1, round(total / steps)) * self.rt.world

    def _check_corpus(self) -> None:
        for path in self.args.corpus:  # files, datasets folders, datasets.Dataset objects
            source = require_source(path, flag="--corpus", what="corpus file")
            if isinstance(source, Path) and source.is_file() and source.stat().st_size == 0:
                raise DataFormatError("is empty", path=path, hint="pass a file with text")
        # checks each file is text of a known format, or columnar data with the text column
        read_documents(self.args.corpus, format=self.args.format, text_field=self.args.text_field)

    def _prepare_inputs(self) -> tuple[BertTokenizer, Path]:
        args, out = self.args, self.out
        tokenizer_dir = Path(args.tokenizer) if args.tokenizer else out / "tokenizer"

        def build() -> None:
            out.mkdir(parents=True, exist_ok=True)
            if not args.tokenizer and not (tokenizer_dir / "vocab.txt").exists():
                from bertforge.vocab import train_vocab_from_corpus

                print(f"training a {args.vocab_size}-piece WordPiece vocabulary on the corpus ...", flush=True)
                with atomic_dir(tokenizer_dir) as tmp:
                    train_vocab_from_corpus(args.corpus, args.vocab_size, tmp, lowercase=args.lowercase,
                                            format=args.format, text_field=args.text_field)
            meta = prepare(args.corpus, tokenizer_dir, out / "data", prepare_settings(args), workers=args.workers,
                           progress=args.progress)
            c, n = meta["corpus"], meta["instances"]
            print(f"corpus: {c['documents']:,} documents, {c['sentences']:,} sentences, "
                  f"{c['empty_documents_skipped']} empty skipped, {c['undecodable_bytes_replaced']} undecodable "
                  f"bytes replaced -> {n['train']:,} training / {n['eval']:,} held-out instances", flush=True)
            if n["eval"] == 0:
                print("warning: no held-out instances (too few documents for --eval-fraction "
                      f"{args.eval_fraction}): the run will not be evaluated", flush=True)

        self.rt.on_main(build)
        return BertTokenizer.from_pretrained(tokenizer_dir), out / "data"

    def _objective(self) -> Objective:
        return OBJECTIVES[self.args.objective].from_args(self.tokenizer, self.args)

    def _model_config(self):
        """The model's configuration (in the family --arch, --init-from or --model-config names, which the objective must
        train), checked against the flags before any data is prepared."""
        args, trained = self.args, families_for(self.args.objective)
        if args.init_from or args.model_config:
            flag = "--init-from" if args.init_from else "--model-config"
            if args.init_from:
                source = self.init_source = ModelDir.read(args.init_from)
                path, family, config = source.path / "config.json", source.family, source.config
            else:
                path, (family, config) = args.model_config, read_config_file(args.model_config)
            if family not in trained:
                works = objectives_for(family)
                raise UsageError(f"{path} describes a {family.name} model, and --objective {args.objective} "
                                 f"trains {' or '.join(f.name for f in trained)}", flag=flag,
                                 hint=f"objectives for a {family.name} model: "
                                      f"{', '.join(works) or 'none (bertforge does not pre-train it)'}")
            if args.arch not in (None, family.name):
                raise UsageError(f"{path} describes a {family.name} model, not {args.arch}", flag="--arch",
                                 hint=f"leave out --arch, or pass --arch {family.name}")
        else:
            family = get_family(args.arch) if args.arch else trained[0]
            config = family.preset(args.preset)
        self.family = family
        if args.init_from:
            return self._init_config(config)
        if args.dropout is not None:
            for name in family.dropout_fields:
                setattr(config, name, args.dropout)
        OBJECTIVES[args.objective].adapt_config(config)
        for name, value in family.pretrain_config.items():
            setattr(config, name, value)
        positions = family.max_positions(config)  # XLNet and ELMo have no position table
        if positions is not None and positions < args.seq_len:
            raise UsageError(f"{args.seq_len} exceeds the model's max_position_embeddings ({positions})",
                             flag="--seq-len")
        config.validate()
        return config

    def _init_config(self, config):
        """The ``--init-from`` model's config as the objective needs it: what the objective sets (``is_decoder``:
        true for ltr, false for the masked LMs) changes, in one printed line, and the model loads with it."""
        args = self.args
        before = config.to_dict()
        if hasattr(config, "is_decoder"):
            config.is_decoder = False  # a BERT config's default; the left-to-right objective sets it again
        OBJECTIVES[args.objective].adapt_config(config)
        for name, value in self.family.pretrain_config.items():
            setattr(config, name, value)
        after = config.to_dict()
        self.init_overrides = {k: v for k, v in after.items() if before.get(k) != v}
        if self.init_overrides and self.rt.main:
            print(f"--init-from {args.init_from}: for --objective {args.objective}, " + ", ".join(
                f"{k} {json.dumps(before.get(k))} -> {json.dumps(v)}" for k, v in self.init_overrides.items()),
                flush=True)
        positions = self.family.max_positions(config)
        if positions is not None and positions < args.seq_len:
            raise UsageError(f"{args.seq_len} exceeds the --init-from model's max_position_embeddings ({positions})",
                             flag="--seq-len")
        return config

    def _build_model(self, config) -> torch.nn.Module:
        args, tokenizer = self.args, self.tokenizer
        if args.init_from:
            model = self.objective.load_model(self.init_source, **self.init_overrides)
            if model.config.vocab_size != tokenizer.vocab_size:
                raise UsageError(f"the tokenizer has {tokenizer.vocab_size} tokens but the checkpoint has "
                                 f"vocab_size {model.config.vocab_size}", flag="--init-from",
                                 hint=f"use the checkpoint's own tokenizer (--tokenizer {args.init_from})")
            return model
        if args.model_config and config.vocab_size not in (0, tokenizer.vocab_size):
            raise UsageError(f"the tokenizer has {tokenizer.vocab_size} tokens but {args.model_config} says "
                             f"vocab_size {config.vocab_size}", flag="--model-config")
        config.vocab_size = tokenizer.vocab_size
        if hasattr(config, "pad_token_id"):
            config.pad_token_id = tokenizer.pad_token_id
        config.validate()
        return self.objective.build_model(config)

    def _run_config(self, config) -> dict:
        fixed = {name: getattr(self.args, name) for name in PretrainArgs.RESUME_FIXED}
        model_config = {k: v for k, v in config.to_dict().items() if k != "architectures"}
        return {**fixed, "world_size": self.rt.world, **{f"model.{k}": v for k, v in model_config.items()}}

    def _check_resume(self, config) -> None:
        """Refuse, before any work, to resume a run whose settings changed (naming each flag)."""
        latest = latest_checkpoint(self.ckpt_dir)
        if latest is None:
            return
        done = checkpoint_step(latest)
        if done > self.args.max_steps and self.args.max_flops is None:  # a FLOP budget's steps are known later
            raise CheckpointError(f"cannot resume from {latest}: --max-steps {self.args.max_steps} is below the "
                                  f"{done} steps already done", hint=f"pass --max-steps {done} or more, or another "
                                  "--out for a new run")
        saved = read_run_config(latest)
        if "warmup_steps" in self.args.derived and "warmup_steps" in saved:
            # The recipe's warm-up is a share of --max-steps: a longer resumed run keeps the first run's warm-up.
            self.args.warmup_steps = saved["warmup_steps"]
            self.args.derived.remove("warmup_steps")
        # The vocabulary is known once the tokenizer is loaded; _resume checks it. A setting added after the
        # checkpoint was saved is not compared.
        added_since = set(PretrainArgs.RESUME_FIXED) - set(saved)
        check_resumable(latest, saved, self._run_config(config),
                        ignore={"model.vocab_size", "model.pad_token_id", *added_since})

    def _resume(self) -> int:
        self.tokens_seen = 0  # real (unpadded) tokens trained on, over every rank
        latest = latest_checkpoint(self.ckpt_dir)
        if latest is None:
            return 0
        state = load_checkpoint(latest)
        check_resumable(latest, state["run_config"], self.run_config,
                        ignore=set(PretrainArgs.RESUME_FIXED) - set(state["run_config"]))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.stepper.load_state_dict(state.get("stepper") or {**state["guard"], "scaler": state.get("scaler")})
        restore_rng_state(state["rng"])
        self.tokens_seen = state["data"].get("tokens_seen", 0)
        if self.rt.main:
            print(f"resuming from {latest} (step {state['step']})", flush=True)
        return state["step"]

    # --- run ----------------------------------------------------------------------------------

    def run(self) -> dict:
        args, rt = self.args, self.rt
        # Keep the records up to the checkpoint (none on a fresh start), so the log reads as one run.
        self.log = MetricsLog(self.out / "metrics.jsonl", resume_from_step=self.start or -1, report_to=args.report_to,
                              settings=dataclasses.asdict(described(args))) if rt.main else None
        if rt.main:
            print(args.recipe_summary(), flush=True)
            atomic_write_text(self.out / "run_config.json",
                              json.dumps(dataclasses.asdict(described(args)), indent=2, default=str))
            write_recipe(self.out, "pretrain", described(args))
        bar = tqdm(total=args.max_steps, initial=self.start, desc="pre-training", unit="step",
                   disable=not rt.main or not args.progress, dynamic_ncols=True)
        step = self.start
        try:
            # Ctrl-C from here on, the baseline evaluation included, stops after the next step with a checkpoint.
            with rt.interruptible() as stop_requested:
                if rt.main and self.start == 0 and self.held_out:
                    self.log.log(0, **self.evaluate())  # the random-initialisation baseline
                self.model.train()
                step = self._loop(bar, stop_requested)
        except Interrupted:
            if rt.main:
                print(f"stopped at step {self.stopped_at}; run the same command again to resume", flush=True)
            return {"status": "interrupted", "step": self.stopped_at}
        except Diverged as e:  # no checkpoint of non-finite weights was saved (``save``), nor a final model
            latest = latest_checkpoint(self.ckpt_dir)
            kept = (f"the newest checkpoint, {latest} (step {checkpoint_step(latest)}), is kept"
                    if latest is not None else "no checkpoint was saved before it")
            raise Diverged(f"{e.message} (noticed at step {self.diverging_step}); {kept}", step=self.diverging_step,
                           hint=e.hint) from None
        finally:
            bar.close()
            if self.log is not None:
                self.log.close()
        return self.finish(step)

    def _loop(self, bar: tqdm, stop_requested) -> int:
        args, rt = self.args, self.rt
        throughput, started, step = Throughput(), time.perf_counter(), self.start
        while step < args.max_steps:
            micro_batches = [self.batches.batch(step, m, rt.rank) for m in range(args.grad_accum)]
            self.stepper.step(micro_batches, self.objective.losses, self.objective.counts)
            step += 1
            tokens = self.stepper.tokens * rt.world  # every rank's batches have the same shape budget
            rate = throughput.update(tokens)
            self.tokens_seen += tokens
            bar.update(1)
            last = step == args.max_steps
            self.diverging_step = step
            if step % args.log_every == 0 or last:
                record = self.stepper.read()
                bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{rate:,.0f}")
                if rt.main:
                    self.log.log(step, **record, tokens_per_s=rate, tokens_seen=self.tokens_seen,
                                 flops=step * self.flops_per_step, elapsed_s=time.perf_counter() - started)
            if rt.main and self.held_out and (step % args.eval_every == 0 or last):
                self.log.log(step, **self.evaluate())
            stop = stop_requested()
            if step % args.save_every == 0 or last or stop:
                self.save(step)
            if stop:
                self.stopped_at = step
                raise Interrupted
        return step

    def evaluate(self) -> dict:
        """The objective's held-out figures (loss, perplexity, accuracies)."""
        return self.objective.evaluate(self.model, self.held_out, self.rt.device)

    def save(self, step: int) -> None:
        if not self.stepper.weights_finite():  # never a checkpoint of diverged weights over a good one
            raise Diverged("training diverged: some weights are no longer finite numbers", hint=DIVERGED_HINT)
        if self.rt.main:
            save_checkpoint(self.ckpt_dir, step, {
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "stepper": self.stepper.state_dict(),
                "rng": capture_rng_state(), "run_config": self.run_config,
                "data": {"step": step, "epoch": self.batches.position(step)[0], "tokens_seen": self.tokens_seen},
            }, keep_last=self.args.keep_last)
        self.rt.barrier()

    def finish(self, step: int) -> dict:
        """Export the model in the transformers layout and plot the curves (main process)."""
        result: dict = {"status": "done", "step": step, "out": str(self.out), "flops_per_step": self.flops_per_step,
                        "flops": step * self.flops_per_step}
        if self.rt.main:
            model_dir = save_model_dir(self.model, self.tokenizer, self.out / "model")
            records = read_metrics(self.out / "metrics.jsonl")
            names = self.objective.loss_names
            plot_curves(records, self.out / "curves.png",
                        keys={"loss": ["loss", *(f"{n}_loss" for n in names), f"eval_{names[0]}_loss"],
                              "accuracy": [k for k in sorted({k for r in records for k in r})
                                           if k.startswith("eval_") and k.endswith("_accuracy")]})
            evals = [r for r in records if f"eval_{names[0]}_loss" in r]
            result.update(model=str(model_dir), curves=str(self.out / "curves.png"),
                          metrics=str(self.out / "metrics.jsonl"), objective=self.objective.name,
                          first_eval=evals[0] if evals else None, final_eval=evals[-1] if evals else None)
        self.rt.barrier()
        return result
