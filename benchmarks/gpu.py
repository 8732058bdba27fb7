"""Training and inference speed on a GPU, against the GPU's own bf16 matmul peak measured in the same run.

One command, five parts (each prints its own table; `--json PATH` also writes every figure):

1. Pre-training step of `base` (12 layers, H=768) at 128 and 512 tokens: bertforge's Stepper (the real
   training path: host copies, bf16 autocast, clipping, fused AdamW with the on-device non-finite guard)
   vs `transformers.BertForPreTraining` (sdpa attention, the same weights, bf16 autocast, clipping, fused
   AdamW), each with and without torch.compile. Tokens/s and MFU: model FLOPs per token (6 x the
   non-embedding parameters + 12 L H T for attention, PaLM's count; the same for both libraries) x tokens/s
   over the measured peak.
2. Fine-tuning step (sequence classification, `base`) on random batches of 32 with SNLI's lengths: bertforge
   unpadded (each attention variant of model/unpadded.py) and padded vs transformers.
3. `encode` throughput (MiniLM weights, SNLI sentences, mean pooling): bertforge vs transformers padded per batch.
4. Host synchronisations in bertforge's training step: torch.cuda.set_sync_debug_mode counts them (CUDA only).
5. DDP overhead: the pre-training step at 128 tokens in a `torchrun --nproc_per_node 1` process, with the model
   wrapped in DistributedDataParallel and without.

    .venv/bin/python benchmarks/gpu.py                            # on a CUDA machine
    .venv/bin/python benchmarks/gpu.py --device cpu --tiny        # a minute on CPU (the test runs this)
    .venv/bin/python benchmarks/gpu.py --skip ddp encode --no-compile
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
IGNORE_INDEX = -100
PARTS = ("pretrain", "finetune", "encode", "sync", "ddp")


# --- the machine ----------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 20) -> float:
    """FLOP/s of an n x n x n matmul in ``dtype`` on ``device`` (the peak MFU is measured against)."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n ** 3 * repeats / (time.perf_counter() - start)


def autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def flops_per_token(config, length: int) -> float:
    """Training FLOPs per token: 6 x non-embedding parameters + 12 L H T (attention scores and mixing)."""
    H, L, I = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    per_layer = 4 * H * H + 2 * H * I + 4 * H + I + H + 4 * H  # projections, FFN, biases, 2 LayerNorms
    return 6 * L * per_layer + 12 * L * H * length


def time_steps(step, batches, warmup: int, device: torch.device) -> float:
    """Seconds per step over ``batches`` after ``warmup`` steps (compilation happens there)."""
    for b in batches[:warmup]:
        step(b)
    sync(device)
    start = time.perf_counter()
    for b in batches[warmup:]:
        step(b)
    sync(device)
    return (time.perf_counter() - start) / max(1, len(batches) - warmup)


# --- models and batches ---------------------------------------------------------------------------------------

def configs(args):
    from bertforge.config import BertConfig

    if args.tiny:
        return BertConfig.preset("tiny", vocab_size=1000)
    return BertConfig.preset("base")


def twins(config, device, head: str, **extra):
    """bertforge and transformers models of ``head`` with the same weights, on ``device``; ``extra``: config
    fields of both (e.g. id2label)."""
    import copy

    import transformers

    from bertforge import model as ours_models
    from bertforge.io.weights import load_into

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    theirs = getattr(transformers, head)(transformers.BertConfig(**config.to_dict(), attn_implementation="sdpa",
                                                                 **extra))
    ours_config = copy.deepcopy(config)
    ours_config.extra.update(extra)
    ours = getattr(ours_models, head)(ours_config)
    load_into(ours, theirs.state_dict(), source="transformers")
    return ours.to(device).train(), theirs.to(device).train()


def pretraining_batches(config, batch: int, length: int, n: int):
    from pretrain import make_batch  # benchmarks/pretrain.py: Google's batch layout, 15% labels

    g = torch.Generator().manual_seed(0)
    return [make_batch(config, batch, length, g, max_predictions=max(20, round(0.15 * length)))
            for _ in range(n)]


def snli_lengths(args) -> list[int]:
    """Token counts of SNLI pairs (the real ones when available; a fixed stand-in with --tiny)."""
    if not args.tiny:
        try:
            from finetune import snli_batches

            batches, _ = snli_batches(16)
            return [int(n) for b in batches for n in b["attention_mask"].sum(1)]
        except Exception as e:  # noqa: BLE001 - no data: say so and use the stand-in
            print(f"  (SNLI unavailable: {e}; using a stand-in length distribution)")
    g = torch.Generator().manual_seed(0)
    return (torch.randint(12, 45, (512,), generator=g) + torch.randint(0, 20, (512,), generator=g)).tolist()


def classification_batches(config, lengths: list[int], batch: int, n: int):
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        rows = [lengths[(i * batch + j) % len(lengths)] for j in range(batch)]
        T = max(rows)
        mask = (torch.arange(T)[None] < torch.tensor(rows)[:, None]).long()
        ids = torch.randint(5, config.vocab_size, (batch, T), generator=g) * mask
        types = (torch.arange(T)[None] >= torch.tensor(rows)[:, None] // 2).long() * mask
        out.append({"input_ids": ids, "token_type_ids": types, "attention_mask": mask,
                    "labels": torch.randint(0, 3, (batch,), generator=g)})
    return out


# --- 1. pre-training step -------------------------------------------------------------------------------------

def stepper_for(model, device, compile: bool, loss_names):
    from bertforge.train.optim import build_optimizer
    from bertforge.train.runtime import Runtime, Stepper
    from bertforge.train.schedule import build_schedule

    optimizer = build_optimizer(model, "adamw", lr=1e-4)
    runtime = Runtime(device=device, amp="bf16" if device.type == "cuda" else "off")
    return Stepper(runtime, model, optimizer, build_schedule(optimizer, 10, 10_000, "linear"), loss_names,
                   compile=compile)


def plain_step(model, device, compile: bool):
    """A transformers training step: bf16 autocast, clipping, fused AdamW."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, eps=1e-6,
                                  fused=device.type in ("cuda", "cpu"))
    net = torch.compile(model, dynamic=True) if compile else model  # as bertforge's Stepper compiles

    def step(batch):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast(device):
            loss = net(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def pretraining_loss(net, batch):
    out = net(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], labels=batch["labels"],
              next_sentence_label=batch["next_sentence_label"])
    return {"mlm": out.mlm_loss, "nsp": out.nsp_loss}


def pretraining_counts(batch):
    return {"mlm": int((batch["labels"] != IGNORE_INDEX).sum()), "nsp": len(batch["labels"])}


def part_pretrain(args, device, peak, results) -> None:
    config = configs(args)
    print(f"\n1. pre-training step, {'tiny' if args.tiny else 'base'}, MLM + NSP, "
          f"{'bf16 autocast' if device.type == 'cuda' else 'fp32'}, fused AdamW, clipping")
    for length, batch in zip(args.lengths, args.batches):
        batches = pretraining_batches(config, batch, length, args.warmup + 2 + args.steps)
        tokens = batch * length
        for compile in args.compile_modes:
            ours, theirs = twins(config, device, "BertForPreTraining")
            stepper = stepper_for(ours, device, compile, ("mlm", "nsp"))
            warmup = args.warmup + 2 * compile  # compiling takes the first steps (and a second shape)
            ours_s = time_steps(lambda b: stepper.step([b], pretraining_loss, pretraining_counts), batches,
                                warmup, device)
            stepper = ours = None  # free the memory before the reference runs
            theirs_s = time_steps(plain_step(theirs, device, compile), batches, warmup, device)
            del theirs
            row = {}
            for who, s in (("bertforge", ours_s), ("transformers", theirs_s)):
                rate = tokens / s
                mfu = rate * flops_per_token(config, length) / peak
                row[who] = {"s_per_step": s, "tokens_per_s": rate, "mfu": mfu}
                print(f"  T={length:<4} batch {batch:<4} {'compiled' if compile else 'eager':<8} {who:<13} "
                      f"{1000 * s:8.1f} ms/step {rate:>12,.0f} tokens/s  MFU {100 * mfu:5.1f}%")
            print(f"  {'':<34}bertforge / transformers: {theirs_s / ours_s:.2f}x")
            results[f"pretrain_T{length}_{'compiled' if compile else 'eager'}"] = row
            if device.type == "cuda":
                torch.cuda.empty_cache()


# --- 2. fine-tuning step --------------------------------------------------------------------------------------

def part_finetune(args, device, peak, results) -> None:
    from bertforge.model import unpadded

    config = configs(args)
    lengths = snli_lengths(args)
    batches = classification_batches(config, lengths, 32, args.warmup + args.steps)
    real = sum(int(b["attention_mask"].sum()) for b in batches[args.warmup:])
    padded = sum(b["attention_mask"].numel() for b in batches[args.warmup:])
    print(f"\n2. fine-tuning step (sequence classification, 3 labels), random batches of 32 with SNLI lengths "
          f"(mean {statistics.fmean(lengths):.1f} tokens; padding {100 * (1 - real / padded):.0f}% of a padded batch)")
    extra = {"id2label": {"0": "a", "1": "b", "2": "c"}}

    def loss(net, batch):
        return {"loss": net(**batch).loss}

    variants = [("bertforge unpadded, " + v, v, 0.0) for v in ("repad", "loop", "bucket", "jagged")]
    variants += [("bertforge padded", None, float("inf"))]
    times = {}
    saved = dict(unpadded.ATTENTION)
    for name, variant, threshold in variants:
        if variant is not None:
            unpadded.ATTENTION[device.type] = variant
        ours, _ = twins(config, device, "BertForSequenceClassification", **extra)
        ours.bert.unpad_threshold = threshold
        stepper = stepper_for(ours, device, False, ("loss",))
        try:
            times[name] = time_steps(lambda b: stepper.step([b], loss, lambda b: {"loss": len(b["labels"])}),
                                     batches, args.warmup, device)
        except Exception as e:  # noqa: BLE001 - a variant this device lacks: report it, measure the rest
            print(f"  {name:<34} failed: {type(e).__name__}: {str(e)[:120]}")
        unpadded.ATTENTION.update(saved)
    _, theirs = twins(config, device, "BertForSequenceClassification", **extra)
    times["transformers"] = time_steps(plain_step(theirs, device, False), batches, args.warmup, device)
    for name, s in times.items():
        print(f"  {name:<34} {1000 * s:8.1f} ms/step {real / len(batches[args.warmup:]) / s:>12,.0f} real tokens/s  "
              f"transformers / this: {times['transformers'] / s:.2f}x")
    results["finetune"] = {k: {"s_per_step": v} for k, v in times.items()}


# --- 3. encode ------------------------------------------------------------------------------------------------

def part_encode(args, device, peak, results) -> None:
    import transformers

    from bertforge.inference import encode
    from bertforge.model import BertModel

    if args.tiny:
        from bertforge.vocab import train_vocab

        words = "a man woman dog plays runs in the park near water is are two people sitting outside".split()
        g = torch.Generator().manual_seed(0)
        texts = [" ".join(words[i] for i in torch.randint(0, len(words), (int(n),), generator=g))
                 for n in torch.randint(4, 30, (128,), generator=g)]
        tokenizer = train_vocab(texts, 60, min_frequency=1)
        config = configs(args)
        config.vocab_size = tokenizer.vocab_size
        model = BertModel(config)
    else:
        from bertforge.data.fetch import fetch
        from bertforge.tokenization import BertTokenizer
        from encode import snli_sentences

        path = fetch("minilm", quiet=True)
        tokenizer, model, texts = BertTokenizer.from_pretrained(path), BertModel.from_pretrained(path), \
            snli_sentences(4096)
    model = model.to(device).eval()
    theirs = transformers.BertModel(transformers.BertConfig(**model.config.to_dict(), attn_implementation="sdpa"))
    missing, unexpected = theirs.load_state_dict(model.state_dict(), strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    theirs = theirs.to(device).eval()
    enc = tokenizer(texts, max_length=128, padding=False, return_tensors=None)
    real = sum(len(r) for r in enc["input_ids"])

    def run_ours():
        with autocast(device):
            encode(model, tokenizer, texts, pooling="mean", max_length=128, max_batch_size=256, max_tokens=65536)
        sync(device)

    def run_theirs(batch_size: int = 256):
        with torch.no_grad(), autocast(device):
            for i in range(0, len(texts), batch_size):
                rows = enc["input_ids"][i:i + batch_size]
                T = max(len(r) for r in rows)
                ids = torch.tensor([r + [0] * (T - len(r)) for r in rows], device=device)
                mask = (ids != 0).long()
                hidden = theirs(input_ids=ids, attention_mask=mask).last_hidden_state
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                ((hidden * weights).sum(1) / weights.sum(1)).float().cpu()
        sync(device)

    times = {}
    for name, fn in (("bertforge encode", run_ours), ("transformers, padded per batch", run_theirs)):
        fn()
        samples = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        times[name] = min(samples)
    print(f"\n3. encode: {len(texts)} sentences ({real:,} tokens), mean pooling, batches of 256"
          f"{', bf16 autocast' if device.type == 'cuda' else ''}")
    for name, s in times.items():
        print(f"  {name:<34} {len(texts) / s:>10,.0f} sentences/s {real / s:>12,.0f} tokens/s  "
              f"bertforge is {s / times['bertforge encode']:.2f}x")
    results["encode"] = {k: {"s": v, "sentences_per_s": len(texts) / v} for k, v in times.items()}


# --- 4. host synchronisations ---------------------------------------------------------------------------------

def part_sync(args, device, peak, results) -> None:
    print("\n4. host synchronisations in bertforge's training steps (torch.cuda.set_sync_debug_mode)")
    if device.type != "cuda":
        print("  CUDA only (on CPU: tests/train/test_sync_free.py counts host reads)")
        return
    from bertforge.train.runtime import host_synchronisations

    config = configs(args)
    extra = {"id2label": {"0": "a", "1": "b", "2": "c"}}
    cases = [("pre-training (MLM + NSP, full rows)", "BertForPreTraining", {}, ("mlm", "nsp"),
              pretraining_batches(config, 8, 128, 4), pretraining_loss, pretraining_counts),
             ("fine-tuning (SNLI lengths, padded)", "BertForSequenceClassification", extra, ("loss",),
              classification_batches(config, snli_lengths(args), 32, 4), lambda net, b: {"loss": net(**b).loss},
              lambda b: {"loss": len(b["labels"])})]
    results["sync"] = {}
    for name, head, head_extra, names, batches, loss_fn, counts_fn in cases:
        ours, _ = twins(config, device, head, **head_extra)
        stepper = stepper_for(ours, device, False, names)
        stepper.step([batches[0]], loss_fn, counts_fn)  # first step: lazy optimizer state, warm-up
        sync(device)
        with host_synchronisations() as found:
            for b in batches[1:]:
                stepper.step([b], loss_fn, counts_fn)
        print(f"  {name:<38} {len(found)} synchronising calls in {len(batches) - 1} steps" +
              "".join(f"\n    {m}" for m in sorted(set(found))[:10]))
        results["sync"][name] = {"steps": len(batches) - 1, "synchronisations": len(found),
                                 "messages": sorted(set(found))}


# --- 5. DDP overhead ------------------------------------------------------------------------------------------

def ddp_worker(args) -> None:
    """In a torchrun process: the pre-training step with and without DistributedDataParallel."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    device = torch.device(args.device if args.device != "cuda" else f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    config = configs(args)
    length, batch = args.lengths[0], args.batches[0]
    batches = pretraining_batches(config, batch, length, args.warmup + args.steps)
    times = {}
    for wrapped in (False, True):
        ours, _ = twins(config, device, "BertForPreTraining")
        stepper = stepper_for(ours, device, False, ("mlm", "nsp"))
        if wrapped:
            stepper.net = DistributedDataParallel(ours, device_ids=[device.index] if device.type == "cuda" else None)
        times["ddp" if wrapped else "plain"] = time_steps(
            lambda b: stepper.step([b], pretraining_loss, pretraining_counts), batches, args.warmup, device)
    dist.destroy_process_group()
    print("DDP " + json.dumps(times), flush=True)


def part_ddp(args, device, peak, results) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--standalone", str(HERE),
               "--ddp-worker", "--device", args.device, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--lengths", str(args.lengths[0]), "--batches", str(args.batches[0])] + (["--tiny"] if args.tiny else [])
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("DDP ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"the torchrun process failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    times = json.loads(lines[-1][4:])
    print(f"\n5. DDP overhead: torchrun --nproc_per_node 1, pre-training step T={args.lengths[0]} batch {args.batches[0]}")
    print(f"  plain {1000 * times['plain']:.1f} ms/step   DDP {1000 * times['ddp']:.1f} ms/step   overhead "
          f"{100 * (times['ddp'] / times['plain'] - 1):+.1f}%   (torchrun process wall {wall:.1f} s)")
    results["ddp"] = times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--tiny", action="store_true", help="the tiny preset, small batches: a quick CPU check")
    parser.add_argument("--lengths", type=int, nargs="+", default=None, help="pre-training lengths (128 512)")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="batch per length (256 32)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 20; 2 with --tiny)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 5; 1 with --tiny)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    parser.add_argument("--compiled-only", action="store_true", help="torch.compile only (the eager figures "
                        "from an earlier --no-compile run)")
    parser.add_argument("--skip", nargs="*", default=[], choices=PARTS)
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.lengths = args.lengths or ([32] if args.tiny else [128, 512])
    args.batches = args.batches or ([4] * len(args.lengths) if args.tiny else [256, 32][:len(args.lengths)])
    args.steps = args.steps or (2 if args.tiny else 20)
    args.warmup = args.warmup or (1 if args.tiny else 5)
    args.compile_modes = [False] if args.no_compile else [True] if args.compiled_only else [False, True]
    if len(args.batches) != len(args.lengths):
        parser.error("give one --batches value per --lengths value")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here; use --device cpu (with --tiny for a quick check)")
    warnings.filterwarnings("ignore")
    if args.ddp_worker:
        return ddp_worker(args)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        peak = matmul_peak(device, torch.bfloat16, 8192)
        name = torch.cuda.get_device_name(device)
        print(f"{name}: bf16 matmul peak (8192^3, measured) {peak / 1e12:.0f} TFLOP/s; torch {torch.__version__}")
    else:
        peak = matmul_peak(device, torch.float32, 512 if args.tiny else 1024, repeats=5)
        print(f"CPU, {torch.get_num_threads()} threads: fp32 matmul peak (measured) {peak / 1e9:.0f} GFLOP/s; "
              f"torch {torch.__version__}")
    results = {"device": str(device), "peak_flops": peak}
    for part in PARTS:
        if part not in args.skip:
            globals()[f"part_{part}"](args, device, peak, results)
            if args.json:  # after each part: a run stopped at its time limit keeps what it measured
                Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
