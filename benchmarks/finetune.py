"""Fine-tuning speed and accuracy: `bertforge finetune` (its defaults) vs a plain `transformers` loop, on SNLI.

MiniLM (all-MiniLM-L6-v2, `fetch("minilm")`), SNLI (`fetch("snli")`): the first 4,000 and the first 20,000
training pairs (gold label "-" dropped), 1 epoch, batch 32, lr 3e-5, dev = the first 500 pairs of the test
file; --threads CPU threads. Each run is its own process, timed from start to exit (the whole run: reading,
tokenising, training, the dev evaluation, and for bertforge what `finetune` writes), one per seed.

- bertforge: `bertforge.train.finetune.finetune` with the CLI's defaults (random batches; the encoder skips the
  padding, model/unpadded.py).
- transformers: BertForSequenceClassification and its fast tokenizer; random order (a seeded permutation),
  dynamic padding per batch; AdamW (PyTorch's fused kernel, eps 1e-6, weight decay 0.01 except biases and
  LayerNorm, as bertforge), linear warm-up over 10% of the steps then linear decay, clipping at 1.0, the same
  seeds (torch.manual_seed before the head is made).

Prints each run's wall clock and dev accuracy per seed, the mean, and the ratios. Also:

    --step                 fine-tuning step time (forward, backward, AdamW) on the same random SNLI batches:
                           bertforge unpadded, bertforge padded, transformers
    --grouping             dev accuracy of batch orders (4,000 pairs): random, --group-by-length (chunks of 50
                           batches) and chunks of 4 batches, per seed (accuracy only; speed is the first part)
    --threshold            unpadded / padded speed-up against the padding share of a batch (training and
                           inference), for UNPAD_THRESHOLD in model/bert.py
    --attention            the CPU attention variants of the unpadded path (model/unpadded.py ATTENTION)
    --compile              torch.compile: the fine-tuning step (forward, backward, AdamW) and no-grad inference,
                           compiled (dynamic shapes; a compiled graph runs padded) vs eager (unpadded)
    --bilstm               the +BiLSTM head's two paths (model/task_model.py BiLSTM): fused LSTM calls on the
                           padded batch against nn.LSTM over packed sequences, same weights, forward + backward
                           and no-grad forward, on the SNLI batches' lengths and on lengths uniform in 8-128

    .venv/bin/python benchmarks/finetune.py [--sizes 4000 20000] [--seeds 1 2 3] [--threads 2]
    .venv/bin/python benchmarks/finetune.py --quick      # 400 pairs, 100 dev, seed 1: a smoke run
    .venv/bin/python benchmarks/finetune.py --step --threshold --attention --no-runs
    .venv/bin/python benchmarks/finetune.py --bilstm --no-runs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


# --- data ---------------------------------------------------------------------------------------------------

def snli_rows(path: Path, n: int) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec["gold_label"] != "-":
                rows.append({"sentence1": rec["sentence1"], "sentence2": rec["sentence2"],
                             "gold_label": rec["gold_label"]})
            if len(rows) == n:
                break
    return rows


def write_split(directory: Path, train_size: int, dev_size: int) -> tuple[Path, Path]:
    """SNLI JSONL files: the first ``train_size`` training pairs, the first ``dev_size`` test pairs."""
    from bertforge.data.fetch import fetch

    snli = fetch("snli", quiet=True)
    files = []
    for name, source, n in (("train", "snli_1.0_train_subset.jsonl", train_size),
                            ("dev", "snli_1.0_test.jsonl", dev_size)):
        path = directory / f"{name}-{n}.jsonl"
        if not path.exists():
            path.write_text("".join(json.dumps(r) + "\n" for r in snli_rows(snli / source, n)))
        files.append(path)
    return files[0], files[1]


# --- the two runs (each in its own process) ------------------------------------------------------------------

def run_bertforge(train: Path, dev: Path, seed: int, out: Path, group_by_length: bool = False,
                  chunk: int | None = None) -> dict:
    from bertforge.data.fetch import fetch
    from bertforge.tasks import DataOptions
    from bertforge.train import finetune as recipe

    if chunk is not None:
        recipe.GROUP_CHUNK_BATCHES = chunk
    args = recipe.FinetuneArgs(task="classify", model=str(fetch("minilm", quiet=True)), train=str(train),
                               dev=str(dev), out=str(out), data=DataOptions(format="snli"), epochs=1,
                               batch_size=32, lr=3e-5, seeds=[seed], progress=False,
                               group_by_length=group_by_length or chunk is not None)
    summary = recipe.finetune(args)
    return {"accuracy": summary["accuracy"]}


def run_transformers(train: Path, dev: Path, seed: int, batch_size: int = 32, lr: float = 3e-5,
                     eval_batch_size: int = 128) -> dict:
    import torch
    import transformers

    from bertforge.data.fetch import fetch

    transformers.logging.set_verbosity_error()
    path = str(fetch("minilm", quiet=True))
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    train_rows, dev_rows = ([json.loads(line) for line in open(p, encoding="utf-8")] for p in (train, dev))
    labels = sorted({r["gold_label"] for r in train_rows})
    label2id = {name: i for i, name in enumerate(labels)}

    def encode(rows):
        enc = tokenizer([r["sentence1"] for r in rows], [r["sentence2"] for r in rows], truncation=True,
                        max_length=128)
        return [{"input_ids": i, "token_type_ids": t, "attention_mask": m, "labels": label2id[r["gold_label"]]}
                for i, t, m, r in zip(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"], rows)]

    def collate(features):
        return tokenizer.pad(features, return_tensors="pt")

    train_features, dev_features = encode(train_rows), encode(dev_rows)
    torch.manual_seed(seed)
    model = transformers.BertForSequenceClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=lr, eps=1e-6, fused=True)
    steps = math.ceil(len(train_features) / batch_size)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, math.ceil(0.1 * steps), steps)
    order = torch.randperm(len(train_features), generator=torch.Generator().manual_seed(seed)).tolist()
    model.train()
    for start in range(0, len(order), batch_size):
        batch = collate([train_features[i] for i in order[start:start + batch_size]])
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    right = 0
    with torch.no_grad():
        for start in range(0, len(dev_features), eval_batch_size):
            batch = collate(dev_features[start:start + eval_batch_size])
            gold = batch.pop("labels")
            right += int((model(**batch).logits.argmax(-1) == gold).sum())
    return {"accuracy": right / len(dev_features)}


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    train, dev = Path(args.train), Path(args.dev)
    if args.worker == "transformers":
        result = run_transformers(train, dev, args.seed)
    else:
        with tempfile.TemporaryDirectory() as out:
            result = run_bertforge(train, dev, args.seed, Path(out), chunk=args.chunk)
    print("RESULT " + json.dumps(result), flush=True)


def timed_run(who: str, train: Path, dev: Path, seed: int, threads: int, chunk: int | None = None) -> dict:
    """One run in a fresh process: its wall clock (start to exit) and dev accuracy."""
    command = [sys.executable, str(HERE), "--worker", who, "--train", str(train), "--dev", str(dev),
               "--seed", str(seed), "--threads", str(threads)] + (["--chunk", str(chunk)] if chunk else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{who} run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return {"wall_s": wall, **json.loads(lines[-1][len("RESULT "):])}


def compare_runs(args, directory: Path) -> None:
    for size in args.sizes:
        train, dev = write_split(directory, size, args.dev_size)
        results: dict[str, list[dict]] = {"bertforge": [], "transformers": []}
        print(f"\nSNLI, first {size:,} training pairs, 1 epoch, batch 32, lr 3e-5, dev {args.dev_size} pairs, "
              f"{args.threads} threads", flush=True)
        for seed in args.seeds:
            for who in results:  # interleaved, so drift in machine load hits both alike
                r = timed_run(who, train, dev, seed, args.threads)
                results[who].append(r)
                print(f"  seed {seed} {who:<13} wall {r['wall_s']:7.1f} s   dev accuracy {r['accuracy']:.4f}",
                      flush=True)
        walls = {who: sum(r["wall_s"] for r in rs) for who, rs in results.items()}
        accs = {who: statistics.fmean(r["accuracy"] for r in rs) for who, rs in results.items()}
        for who in results:
            print(f"  {who:<13} total {walls[who]:7.1f} s   mean dev accuracy {accs[who]:.4f}   per seed "
                  f"{[round(r['accuracy'], 4) for r in results[who]]}")
        print(f"  wall clock transformers / bertforge: {walls['transformers'] / walls['bertforge']:.2f}x   "
              f"accuracy bertforge - transformers: {100 * (accs['bertforge'] - accs['transformers']):+.1f} points",
              flush=True)


def compare_grouping(args, directory: Path) -> None:
    """Dev accuracy of batch orders on the same data and seeds (speed is not the point: see the runs)."""
    size = args.sizes[0]
    train, dev = write_split(directory, size, args.dev_size)
    print(f"\nbatch order and dev accuracy: SNLI {size:,} pairs, 1 epoch, dev {args.dev_size} pairs", flush=True)
    for name, chunk in (("random (default)", None), ("--group-by-length (chunks of 50 batches)", 50),
                        ("length-sorted within chunks of 4 batches", 4)):
        accs = [timed_run("bertforge", train, dev, seed, args.threads, chunk=chunk)["accuracy"] for seed in args.seeds]
        print(f"  {name:<44} mean {statistics.fmean(accs):.4f}   per seed {[round(a, 4) for a in accs]}",
              flush=True)


# --- step, threshold and attention measurements (in this process) -------------------------------------------

def snli_batches(n_batches: int, batch_size: int = 32, seed: int = 0):
    """Random batches of tokenised SNLI training pairs (as bertforge collates them)."""
    import numpy as np

    from bertforge.data.fetch import fetch
    from bertforge.tasks.features import collate
    from bertforge.tasks import DataOptions, get_task
    from bertforge.tokenization import BertTokenizer

    task = get_task("classify")
    examples = task.read(fetch("snli", quiet=True) / "snli_1.0_train_subset.jsonl", DataOptions(format="snli"))
    examples = examples[:n_batches * batch_size * 4]
    tokenizer = BertTokenizer.from_pretrained(fetch("minilm", quiet=True))
    labels = task.label_names(examples)
    feats = task.encode(tokenizer, examples, {n: i for i, n in enumerate(labels)}, DataOptions(format="snli"))
    order = np.random.default_rng(seed).permutation(len(feats))[:n_batches * batch_size]
    return [collate([feats[i] for i in order[b:b + batch_size]], tokenizer.pad_token_id)
            for b in range(0, len(order), batch_size)], len(labels)


def minilm_classifier(num_labels: int):
    from bertforge.data.fetch import fetch
    from bertforge.model import BertForSequenceClassification

    return BertForSequenceClassification.from_pretrained(
        fetch("minilm", quiet=True), id2label={str(i): str(i) for i in range(num_labels)})


def time_steps(step, batches, repeats: int) -> float:
    """Seconds per step: the best of ``repeats`` passes over the batches (after one warm-up step)."""
    step(batches[0])
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            step(batch)
        best = min(best, (time.perf_counter() - start) / len(batches))
    return best


def step_benchmark(args) -> None:
    import torch
    import transformers

    from bertforge.data.fetch import fetch
    from bertforge.train.optim import build_optimizer

    transformers.logging.set_verbosity_error()
    batches, num_labels = snli_batches(args.step_batches)
    padding = 1 - sum(int(b["attention_mask"].sum()) for b in batches) / sum(b["attention_mask"].numel()
                                                                              for b in batches)
    torch.manual_seed(0)
    ours = minilm_classifier(num_labels).train()
    theirs = transformers.BertForSequenceClassification.from_pretrained(
        str(fetch("minilm", quiet=True)), num_labels=num_labels).train()
    ours_opt = build_optimizer(ours, "adamw", lr=3e-5)
    theirs_opt = torch.optim.AdamW(theirs.parameters(), lr=3e-5, eps=1e-6, fused=True)
    inputs = ("input_ids", "token_type_ids", "attention_mask", "labels")

    def step_ours(batch, threshold=None):
        if threshold is not None:
            ours.bert.unpad_threshold = threshold
        ours(**{k: batch[k] for k in inputs}).loss.backward()
        torch.nn.utils.clip_grad_norm_(ours.parameters(), 1.0)
        ours_opt.step()
        ours_opt.zero_grad(set_to_none=True)

    def step_theirs(batch):
        theirs(**{k: batch[k] for k in inputs}).loss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
        theirs_opt.step()
        theirs_opt.zero_grad(set_to_none=True)

    from bertforge.model.bert import UNPAD_THRESHOLD

    times = {"bertforge (unpadded)": [], "bertforge (padded)": [], "transformers": []}
    for _ in range(args.repeats):  # interleaved
        times["bertforge (unpadded)"].append(time_steps(lambda b: step_ours(b, UNPAD_THRESHOLD), batches, 1))
        times["bertforge (padded)"].append(time_steps(lambda b: step_ours(b, 2.0), batches, 1))
        times["transformers"].append(time_steps(step_theirs, batches, 1))
    best = {k: min(v) for k, v in times.items()}
    print(f"\nfine-tuning step, MiniLM, {len(batches)} random SNLI batches of 32 (padding {100 * padding:.0f}% of "
          f"the padded tokens), forward + backward + clip + AdamW, {torch.get_num_threads()} threads")
    for who, s in best.items():
        print(f"  {who:<22} {1000 * s:7.1f} ms/step   transformers / this: {best['transformers'] / s:.2f}x")
    ours.bert.unpad_threshold = UNPAD_THRESHOLD


def threshold_benchmark(args) -> None:
    """Unpadded / padded speed against the padding share: rows of length uniform in [(1 - 2s) T, T]."""
    import torch

    torch.manual_seed(0)
    model = minilm_classifier(3)
    g = torch.Generator().manual_seed(0)
    print(f"\nunpadded / padded speed-up by padding share (MiniLM, 16 rows, {torch.get_num_threads()} threads)")
    for T in (64, 128):
        for share in (0.0, 0.02, 0.05, 0.1, 0.2, 0.3):
            lengths = torch.randint(max(1, int(T * (1 - 2 * share))), T + 1, (16,), generator=g)
            lengths[0] = T
            mask = (torch.arange(T)[None] < lengths[:, None]).long()
            ids = torch.randint(1000, 30000, (16, T), generator=g) * mask
            labels = torch.randint(0, 3, (16,), generator=g)
            real = 1 - int(mask.sum()) / mask.numel()
            speed = {}
            for train in (False, True):
                model.train(train)

                def run(threshold):
                    model.bert.unpad_threshold = threshold
                    if train:
                        model(ids, None, mask, labels=labels).loss.backward()
                    else:
                        with torch.no_grad():
                            model(ids, None, mask)
                t = {0.0: [], 2.0: []}
                for _ in range(args.repeats):
                    for threshold in t:
                        start = time.perf_counter()
                        run(threshold)
                        t[threshold].append(time.perf_counter() - start)
                speed["training" if train else "inference"] = min(t[2.0]) / min(t[0.0])
            print(f"  T={T:<4} padding {100 * real:4.1f}%   inference {speed['inference']:.2f}x   "
                  f"training {speed['training']:.2f}x", flush=True)


def attention_benchmark(args) -> None:
    """Unpadded training steps and inference with each CPU attention variant, vs the padded path."""
    import torch

    from bertforge.model import unpadded

    batches, num_labels = snli_batches(args.step_batches)
    torch.manual_seed(0)
    model = minilm_classifier(num_labels)
    inputs = ("input_ids", "token_type_ids", "attention_mask", "labels")
    variants = ("padded", "repad", "loop", "bucket", "jagged")
    saved = dict(unpadded.ATTENTION)
    print(f"\nCPU attention variants of the unpadded path (MiniLM, {len(batches)} random SNLI batches of 32, "
          f"{torch.get_num_threads()} threads): seconds per batch, best of {args.repeats}")
    for train in (False, True):
        model.train(train)
        times = {v: [] for v in variants}
        for _ in range(args.repeats):
            for v in variants:
                model.bert.unpad_threshold = 2.0 if v == "padded" else 0.0
                unpadded.ATTENTION["cpu"] = saved["cpu"] if v == "padded" else v

                def step(batch):
                    if train:
                        model(**{k: batch[k] for k in inputs}).loss.backward()
                    else:
                        with torch.no_grad():
                            model(**{k: batch[k] for k in inputs[:3]})
                times[v].append(time_steps(step, batches, 1))
        print(f"  {'training' if train else 'inference':<10} " + "   ".join(
            f"{v} {1000 * min(t):6.1f} ms" for v, t in times.items()), flush=True)
    unpadded.ATTENTION.update(saved)
    from bertforge.model.bert import UNPAD_THRESHOLD
    model.bert.unpad_threshold = UNPAD_THRESHOLD


def compile_benchmark(args) -> None:
    """Eager (the unpadded path) vs torch.compile (dynamic shapes, padded), training step and inference."""
    import torch

    batches, num_labels = snli_batches(args.step_batches)
    inputs = ("input_ids", "token_type_ids", "attention_mask", "labels")
    print(f"\ntorch.compile on CPU (MiniLM, {len(batches)} random SNLI batches of 32, {torch.get_num_threads()} "
          f"threads): seconds per batch after compiling, best of {args.repeats}")
    for train in (True, False):
        torch.manual_seed(0)
        model = minilm_classifier(num_labels).train(train)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, fused=True)
        compiled = torch.compile(model, dynamic=True)
        outputs = {}

        def step(net, batch, key):
            if train:
                loss = net(**{k: batch[k] for k in inputs}).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            else:
                with torch.no_grad():
                    outputs[key] = net(**{k: batch[k] for k in inputs[:3]}).logits

        start = time.perf_counter()
        for batch in batches[:2]:  # compiles (a first shape, then the dynamic graph)
            step(compiled, batch, "compiled")
        warm = time.perf_counter() - start
        times = {"eager": [], "compiled": []}
        for _ in range(args.repeats):
            for name, net in (("eager", model), ("compiled", compiled)):
                times[name].append(time_steps(lambda b: step(net, b, name), batches, 1))
        eager, comp = min(times["eager"]), min(times["compiled"])
        agree = "" if train else f"   logits differ by {(outputs['eager'] - outputs['compiled']).abs().max():.1e}"
        print(f"  {'training' if train else 'inference':<10} eager {1000 * eager:7.1f} ms   compiled "
              f"{1000 * comp:7.1f} ms   eager / compiled {eager / comp:.2f}x   (compiling took {warm:.0f} s){agree}",
              flush=True)


def bilstm_benchmark(args) -> None:
    """The +BiLSTM head's two paths (model/task_model.py BiLSTM): one fused LSTM call per direction and layer on the
    padded batch against nn.LSTM over packed sequences, at the widths of the studies' encoders (tiny 128, ELMo
    tiny's 256) and of base (768), to place FUSED_MAX_SIZE."""
    import torch

    from bertforge.model.task_model import FUSED_MAX_SIZE, BiLSTM

    masks = {"SNLI pairs": [b["attention_mask"] for b in snli_batches(args.step_batches)[0]]}
    torch.manual_seed(0)  # longer rows, such as the Chinese tagging and sentiment sets' (up to 128 characters)
    lengths = torch.randint(8, 129, (args.step_batches, 32))
    masks["8-128"] = [(torch.arange(int(row.max()))[None] < row[:, None]).long() for row in lengths]
    print(f"\n+BiLSTM head (2 layers, hidden = the input width), batches of 32, {torch.get_num_threads()} threads: "
          f"ms per batch, best of {args.repeats}; up to {FUSED_MAX_SIZE} units a direction the head runs fused")
    for name, batch_masks in masks.items():
        mean = sum(int(m.sum()) for m in batch_masks) / sum(m.shape[0] for m in batch_masks)
        for width in (128, 256, 768):
            bilstm = BiLSTM(width, width)
            pairs = [(torch.randn(*m.shape, width), m.sum(1)) for m in batch_masks]
            error = max((a - b).abs().max().item() for a, b in zip(bilstm.fused(*pairs[0]), bilstm.packed(*pairs[0])))
            row = []
            for train in (True, False):
                for path in (bilstm.fused, bilstm.packed):
                    def step(pair, path=path, train=train):
                        with torch.set_grad_enabled(train):
                            seq, sentence = path(*pair)
                            if train:
                                (seq.sum() + sentence.sum()).backward()
                    row.append(1000 * time_steps(step, pairs, args.repeats))
            print(f"  {name:<10} (mean {mean:5.1f} tokens) width {width:3d}: training fused {row[0]:6.1f}, packed "
                  f"{row[1]:6.1f} ({row[1] / row[0]:.2f}x); inference fused {row[2]:6.1f}, packed {row[3]:6.1f} "
                  f"({row[3] / row[2]:.2f}x); max |difference| {error:.1e}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4000, 20000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--dev-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--step-batches", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="400 pairs, 100 dev, seed 1, 3 step batches")
    parser.add_argument("--no-runs", action="store_true", help="skip the whole-run comparison")
    parser.add_argument("--step", action="store_true")
    parser.add_argument("--grouping", action="store_true")
    parser.add_argument("--threshold", action="store_true")
    parser.add_argument("--attention", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--bilstm", action="store_true")
    parser.add_argument("--data-dir", default=None, help="where the split files go (default: a temporary dir)")
    # a single run, in its own process (used by the comparison)
    parser.add_argument("--worker", choices=("bertforge", "transformers"), help=argparse.SUPPRESS)
    parser.add_argument("--train", help=argparse.SUPPRESS)
    parser.add_argument("--dev", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--chunk", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.quick:
        args.sizes, args.seeds, args.dev_size, args.step_batches, args.repeats = [400], [1], 100, 3, 1
    import torch

    torch.set_num_threads(args.threads)
    print(f"threads={args.threads}  torch {torch.__version__}  load average {os.getloadavg()[0]:.1f} "
          f"(timings from a loaded machine swing widely)")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(args.data_dir or tmp)
        directory.mkdir(parents=True, exist_ok=True)
        if not args.no_runs:
            compare_runs(args, directory)
        if args.grouping:
            compare_grouping(args, directory)
    if args.step:
        step_benchmark(args)
    if args.threshold:
        threshold_benchmark(args)
    if args.attention:
        attention_benchmark(args)
    if args.compile:
        compile_benchmark(args)
    if args.bilstm:
        bilstm_benchmark(args)


if __name__ == "__main__":
    main()
