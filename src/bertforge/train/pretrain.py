"""Pre-training: masked LM + next-sentence prediction from raw text, on one process or many (DDP).

Launch with ``bertforge pretrain ...`` on one machine, or ``torchrun --nproc_per_node N -m bertforge
pretrain ...`` for PyTorch DDP (NCCL on GPUs, gloo on CPUs). Rank 0 trains the vocabulary and
prepares the corpus; each rank then reads its own share of every global batch; rank 0 alone logs,
evaluates and saves. Running the same command again resumes from the newest checkpoint, exactly.

Loss scaling: the objective of one optimizer step is the mean MLM loss over *all* labelled
positions of the global batch plus the mean NSP loss over all its sequences, whatever the number
of ranks and accumulation steps. Each micro-batch's loss is weighted by its share of the global
counts, so 2 ranks x batch b make the same update as 1 rank x batch 2b.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from bertforge.config import BertConfig
from bertforge.data.prepare import PrepareSettings, prepare, special_ids
from bertforge.data.pretraining_data import (InstanceStore, Masker, MaskingSettings, PretrainingBatches,
                                             continuation_mask, eval_batches)
from bertforge.model import BertForPreTraining
from bertforge.tokenization import BertTokenizer
from bertforge.train.checkpoint import (capture_rng_state, latest_checkpoint, load_checkpoint,
                                        restore_rng_state, save_checkpoint, save_model_dir)
from bertforge.train.logs import MetricsLog, NonFiniteGuard, Throughput, plot_curves
from bertforge.train.optim import build_optimizer
from bertforge.train.schedule import build_schedule


@dataclass
class PretrainArgs:
    corpus: list[str]
    out: str
    tokenizer: str | None = None  # a directory with vocab.txt; None: train one on the corpus
    vocab_size: int = 8000  # when training the vocabulary
    lowercase: bool = True
    preset: str | None = "mini"
    config: str | None = None  # a config.json (overrides preset)
    init_from: str | None = None  # a checkpoint directory to continue pre-training from
    seq_len: int = 128
    batch_size: int = 32  # per process and micro-batch
    grad_accum: int = 1
    max_steps: int = 1000
    lr: float = 1e-4
    warmup_steps: int = 100
    schedule: str = "linear"
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    save_every: int = 200
    keep_last: int = 2
    eval_every: int = 100
    eval_instances: int = 512
    log_every: int = 10
    seed: int = 12345
    nsp: bool = True
    whole_word_mask: bool = False
    static_masks: bool = False
    dupe_factor: int = 1
    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    short_seq_prob: float = 0.1
    eval_fraction: float = 0.05
    format: str = "auto"
    workers: int = 2  # data preparation processes
    dropout: float | None = None  # override both dropout probabilities
    amp: str = "auto"  # auto (bf16/fp16 on CUDA, off on CPU) | bf16 | fp16 | off
    max_non_finite: int = 10
    progress: bool = True
    extra: dict = field(default_factory=dict)

    # Fields that must not change when a run is resumed (the rest, e.g. max_steps, may).
    RESUME_FIXED = ("seq_len", "batch_size", "grad_accum", "lr", "warmup_steps", "schedule", "optimizer",
                    "weight_decay", "seed", "nsp", "whole_word_mask", "static_masks", "dupe_factor",
                    "masked_lm_prob", "max_predictions_per_seq", "short_seq_prob")


class Interrupted(Exception):
    pass


def _world() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def pretrain(args: PretrainArgs) -> dict:
    """Run (or resume) pre-training; returns the final evaluation and the output paths."""
    rank, world, local_rank = _world()
    distributed = world > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    out = Path(args.out)
    try:
        return _pretrain(args, out, rank, world, device)
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks (on the GPU under NCCL, which reduces only CUDA tensors); no-op alone."""
    if not dist.is_initialized():
        return t
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else t.device
    reduced = t.to(device)
    dist.all_reduce(reduced)
    return reduced.to(t.device)


def _on_rank0(rank: int, fn):
    """Run ``fn`` on rank 0; other ranks wait; an error on rank 0 reaches every rank."""
    error = None
    if rank == 0:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - re-raised below, on every rank
            error = e
    if dist.is_initialized():
        flag = _all_reduce(torch.tensor([error is not None], dtype=torch.int32))
        if flag.item() and error is None:
            raise RuntimeError("rank 0 failed while preparing; see its error")
    if error is not None:
        raise error


def _prepare_inputs(args: PretrainArgs, out: Path, rank: int) -> tuple[BertTokenizer, Path]:
    corpus = [Path(p) for p in args.corpus]
    for p in corpus:
        if not p.is_file():
            raise FileNotFoundError(f"corpus file {p} not found")
        if p.stat().st_size == 0:
            raise ValueError(f"corpus file {p} is empty")
    tokenizer_dir = Path(args.tokenizer) if args.tokenizer else out / "tokenizer"

    def build() -> None:
        out.mkdir(parents=True, exist_ok=True)
        if not args.tokenizer and not (tokenizer_dir / "vocab.txt").exists():
            from bertforge.vocab import train_vocab_from_corpus

            print(f"training a {args.vocab_size}-piece WordPiece vocabulary on the corpus ...", flush=True)
            tmp = out / ".tokenizer-tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            train_vocab_from_corpus(corpus, args.vocab_size, tmp, lowercase=args.lowercase, format=args.format)
            tmp.rename(tokenizer_dir)
        settings = PrepareSettings(max_seq_length=args.seq_len, short_seq_prob=args.short_seq_prob,
                                   dupe_factor=args.dupe_factor, nsp=args.nsp, eval_fraction=args.eval_fraction,
                                   seed=args.seed, format=args.format)
        meta = prepare(corpus, tokenizer_dir, out / "data", settings, workers=args.workers,
                       progress=args.progress)
        c = meta["corpus"]
        print(f"corpus: {c['documents']:,} documents, {c['sentences']:,} sentences, "
              f"{c['empty_documents_skipped']} empty skipped, {c['undecodable_bytes_replaced']} undecodable "
              f"bytes replaced -> {meta['instances']['train']:,} training / {meta['instances']['eval']:,} "
              f"held-out instances", flush=True)

    _on_rank0(rank, build)
    return BertTokenizer.from_pretrained(tokenizer_dir), out / "data"


def _build_model(args: PretrainArgs, tokenizer: BertTokenizer) -> BertForPreTraining:
    if args.init_from:
        model = BertForPreTraining.from_pretrained(args.init_from)
        if model.config.vocab_size != tokenizer.vocab_size:
            raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the checkpoint "
                             f"{args.init_from} has vocab_size {model.config.vocab_size}; use the "
                             f"checkpoint's own tokenizer (--tokenizer {args.init_from})")
        return model
    config = (BertConfig.from_json_file(args.config) if args.config
              else BertConfig.preset(args.preset or "mini"))
    if args.config and config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but {args.config} says "
                         f"vocab_size {config.vocab_size}")
    config.vocab_size = tokenizer.vocab_size
    config.pad_token_id = tokenizer.pad_token_id
    if args.dropout is not None:
        config.hidden_dropout_prob = config.attention_probs_dropout_prob = args.dropout
    if config.max_position_embeddings < args.seq_len:
        raise ValueError(f"--seq-len {args.seq_len} exceeds the model's max_position_embeddings "
                         f"({config.max_position_embeddings})")
    config.validate()
    return BertForPreTraining(config)


def _run_config(args: PretrainArgs, model: BertForPreTraining, world: int) -> dict:
    fixed = {name: getattr(args, name) for name in PretrainArgs.RESUME_FIXED}
    model_config = {k: v for k, v in model.config.to_dict().items() if k != "architectures"}
    return {**fixed, "world_size": world, **{f"model.{k}": v for k, v in model_config.items()}}


def _check_resume(saved: dict, current: dict, path: Path) -> None:
    changed = [f"{key!r} was {saved.get(key)!r} in that run and is {current.get(key)!r} now"
               for key in sorted(set(saved) | set(current)) if saved.get(key) != current.get(key)]
    if changed:
        raise ValueError(f"cannot resume from {path}: {'; '.join(changed)}. Use the original values, "
                         f"or another --out for a new run")


def _autocast(args: PretrainArgs, device: torch.device):
    if device.type != "cuda" or args.amp == "off":
        return nullcontext(), None
    dtype = torch.float16 if args.amp == "fp16" or (args.amp == "auto" and not torch.cuda.is_bf16_supported()) \
        else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast("cuda", dtype=dtype), scaler


@torch.no_grad()
def evaluate(model: BertForPreTraining, batches: list[dict[str, torch.Tensor]], device: torch.device) -> dict:
    """Held-out MLM loss, perplexity and accuracy, and NSP accuracy."""
    was_training = model.training
    model.eval()
    loss_sum = correct = total = nsp_correct = nsp_total = 0.0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], labels=batch["labels"])
        targets = batch["labels"][batch["labels"] != -100]
        loss_sum += out.mlm_loss.item() * targets.numel()
        correct += (out.prediction_logits.argmax(-1) == targets).sum().item()
        total += targets.numel()
        nsp_correct += (out.seq_relationship_logits.argmax(-1) == batch["next_sentence_label"]).sum().item()
        nsp_total += len(batch["next_sentence_label"])
    model.train(was_training)
    loss = loss_sum / max(total, 1)
    return {"eval_mlm_loss": loss, "eval_perplexity": math.exp(min(loss, 50)),
            "eval_mlm_accuracy": correct / max(total, 1), "eval_nsp_accuracy": nsp_correct / max(nsp_total, 1)}


def _pretrain(args: PretrainArgs, out: Path, rank: int, world: int, device: torch.device) -> dict:
    tokenizer, data_dir = _prepare_inputs(args, out, rank)
    torch.manual_seed(args.seed)
    model = _build_model(args, tokenizer).to(device)
    if not args.nsp:  # no loss reaches the pooler and NSP head: leave them out of training (and of DDP)
        model.bert.pooler.requires_grad_(False)
        model.cls.seq_relationship.requires_grad_(False)
    masker = Masker(special_ids(tokenizer),
                    MaskingSettings(args.masked_lm_prob, args.max_predictions_per_seq, args.whole_word_mask,
                                    args.static_masks),
                    args.seed, continuation_mask(tokenizer.vocab) if args.whole_word_mask else None)
    train = PretrainingBatches(InstanceStore(data_dir, "train"), masker, args.batch_size, args.grad_accum, world)
    held_out = eval_batches(InstanceStore(data_dir, "eval"), masker, args.batch_size, args.eval_instances)

    optimizer = build_optimizer(model, args.optimizer, lr=args.lr, weight_decay=args.weight_decay)
    scheduler = build_schedule(optimizer, min(args.warmup_steps, args.max_steps), args.max_steps, args.schedule)
    autocast, scaler = _autocast(args, device)
    guard = NonFiniteGuard(args.max_non_finite)
    run_config = _run_config(args, model, world)

    ckpt_dir = out / "checkpoints"
    start = 0
    latest = latest_checkpoint(ckpt_dir)
    if latest is not None:
        state = load_checkpoint(latest)
        _check_resume(state["run_config"], run_config, latest)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        guard.load_state_dict(state["guard"])
        restore_rng_state(state["rng"])
        start = state["step"]
        if rank == 0:
            print(f"resuming from {latest} (step {start})", flush=True)

    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else None
    net = ddp or model
    # Keep the records up to the checkpoint (none on a fresh start), so the log reads as one run.
    log = MetricsLog(out / "metrics.jsonl", resume_from_step=start if start else -1) if rank == 0 else None
    if rank == 0:
        (out / "run_config.json").write_text(json.dumps(dataclasses.asdict(args), indent=2, default=str))
        if start == 0 and held_out:
            log.log(0, **evaluate(model, held_out, device))  # the random-initialisation baseline

    interrupted = {"flag": False}
    previous_handler = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        interrupted["flag"] = True
        if rank == 0:
            print("\ninterrupt: finishing this step, saving a checkpoint, then stopping", flush=True)

    signal.signal(signal.SIGINT, on_sigint)

    def save(step: int) -> None:
        if rank == 0:
            save_checkpoint(ckpt_dir, step, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                "guard": guard.state_dict(), "rng": capture_rng_state(), "run_config": run_config,
                "data": {"step": step, "epoch": train.position(step)[0]},
            }, keep_last=args.keep_last)
        _barrier()

    model.train()
    throughput = Throughput()
    started = time.perf_counter()
    bar = tqdm(total=args.max_steps, initial=start, desc="pre-training", unit="step",
               disable=rank != 0 or not args.progress, dynamic_ncols=True)
    step = start
    try:
        while step < args.max_steps:
            micro_batches = [train.batch(step, m, rank) for m in range(args.grad_accum)]
            counts = torch.tensor([sum(int((b["labels"] != -100).sum()) for b in micro_batches),
                                   sum(len(b["input_ids"]) for b in micro_batches)], dtype=torch.float64)
            counts = _all_reduce(counts)
            n_labels, n_sequences = counts.tolist()
            sums = torch.zeros(3, dtype=torch.float64)  # mlm loss sum, nsp loss sum, real tokens
            for m, batch in enumerate(micro_batches):
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                sync = ddp.no_sync() if ddp is not None and m < args.grad_accum - 1 else nullcontext()
                with sync:
                    with autocast:
                        o = net(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                                labels=batch["labels"],
                                next_sentence_label=batch["next_sentence_label"] if args.nsp else None)
                    n_local = int((batch["labels"] != -100).sum())
                    loss = o.mlm_loss * (n_local / max(n_labels, 1))
                    if args.nsp:
                        loss = loss + o.nsp_loss * (len(batch["input_ids"]) / n_sequences)
                    loss = loss * world  # DDP averages gradients over ranks
                    (scaler.scale(loss) if scaler else loss).backward()
                sums += torch.tensor([o.mlm_loss.item() * n_local,
                                      o.nsp_loss.item() * len(batch["input_ids"]) if args.nsp else 0.0,
                                      batch["attention_mask"].sum().item()], dtype=torch.float64)
            sums = _all_reduce(sums)
            mlm_loss = sums[0].item() / max(n_labels, 1)
            nsp_loss = sums[1].item() / n_sequences
            step_loss = mlm_loss + nsp_loss
            if scaler:
                scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_norm).item()
            if guard.check(torch.tensor(step_loss) if math.isfinite(grad_norm) else torch.tensor(float("nan")),
                           step):
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
            elif scaler:
                scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            rate = throughput.update(int(sums[2].item()))
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{rate:,.0f}")
            if rank == 0 and (step % args.log_every == 0 or step == args.max_steps):
                log.log(step, loss=step_loss, mlm_loss=mlm_loss, nsp_loss=nsp_loss if args.nsp else None,
                        lr=scheduler.get_last_lr()[0], grad_norm=grad_norm, tokens_per_s=rate,
                        elapsed_s=time.perf_counter() - started, skipped_steps=guard.skipped)
            if rank == 0 and held_out and (step % args.eval_every == 0 or step == args.max_steps):
                log.log(step, **evaluate(model, held_out, device))
            stop = _all_reduce(torch.tensor([interrupted["flag"]], dtype=torch.int32))
            if step % args.save_every == 0 or step == args.max_steps or stop.item():
                save(step)
            if stop.item():
                raise Interrupted
    except Interrupted:
        bar.close()
        if rank == 0:
            print(f"stopped at step {step}; run the same command again to resume", flush=True)
        return {"status": "interrupted", "step": step}
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        bar.close()
        if log is not None:
            log.close()

    result: dict = {"status": "done", "step": step, "out": str(out)}
    if rank == 0:
        model_dir = save_model_dir(model, tokenizer, out / "model")
        from bertforge.train.logs import read_metrics

        records = read_metrics(out / "metrics.jsonl")
        plot_curves(records, out / "curves.png",
                    keys={"loss": ["loss", "mlm_loss", "nsp_loss", "eval_mlm_loss"],
                          "accuracy": ["eval_mlm_accuracy", "eval_nsp_accuracy"]})
        evals = [r for r in records if "eval_mlm_loss" in r]
        result.update(model=str(model_dir), curves=str(out / "curves.png"), metrics=str(out / "metrics.jsonl"),
                      first_eval=evals[0] if evals else None, final_eval=evals[-1] if evals else None)
    _barrier()
    return result
