"""Pre-training speed: bertforge vs transformers training steps, and corpus preparation throughput and memory.

1. Training step (forward + backward + AdamW step), mini preset (4 layers, H=256, 4 heads, vocab 30,522),
   batch 32 x 128, fp32, dropout on, same weights and same batches for both: realistic pre-training batches
   (19 labelled positions per sequence, i.e. min(20, round(0.15 * 128)) as BERT does; next-sentence labels).
   bertforge's BertForPreTraining projects only the labelled positions onto the vocabulary, transformers'
   BertForPreTraining all of them, and bertforge's last layer computes its output only at [CLS] and the
   labelled positions. The eval-mode losses are asserted equal first. Prints tokens/s, the ratio (goal >= 2.5x)
   and the FLOP ratio.
2. Corpus preparation (`bertforge.data.prepare.prepare`): a synthetic Google-format corpus of --corpus-mb MB
   (sentences of the Lee news corpus and a Wikipedia sample, repeated and shuffled, written under --tmp),
   prepared in a subprocess with 2 workers. Prints MB/s of raw text (goal >= 5 MB/s), MB per CPU-second (what
   a loaded machine changes least), peak RSS (VmHWM) of the main process and of each worker, their sum and the
   peak of the process tree's summed RSS (goal <= 1.5 GB); then 1 vs 2 workers on a 20 MB corpus.

On a machine where other processes compete for the cores, 2-thread timings swing widely (OpenMP threads wait
for each other when one is descheduled): check the load average printed at the top.

    .venv/bin/python benchmarks/pretrain.py [--threads 2] [--steps 5] [--corpus-mb 200] [--repeats 3]
    .venv/bin/python benchmarks/pretrain.py --corpus-mb 20   # a quick run
    .venv/bin/python benchmarks/pretrain.py --skip-train     # (or --skip-prepare) one part only
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from bertforge.config import BertConfig

from encode import matmul_gflops  # benchmarks/ is the script's directory, so on sys.path

IGNORE_INDEX = -100


# --- 1. training step ----------------------------------------------------------------------------

def make_batch(config: BertConfig, batch: int, length: int, g: torch.Generator, mlm_prob: float = 0.15,
               max_predictions: int = 20) -> dict[str, torch.Tensor]:
    """A pre-training batch as Google's pipeline makes it: [CLS] A [SEP] B [SEP], segment B in the second
    half, min(20, round(0.15 * T)) labelled positions per sequence (never [CLS]/[SEP]), NSP labels 0/1."""
    cls, sep = 2, 3
    ids = torch.randint(5, config.vocab_size, (batch, length), generator=g)
    half = length // 2
    ids[:, 0], ids[:, half - 1], ids[:, -1] = cls, sep, sep
    types = torch.zeros_like(ids)
    types[:, half:] = 1
    labels = torch.full_like(ids, IGNORE_INDEX)
    candidates = torch.tensor([i for i in range(length) if i not in (0, half - 1, length - 1)])
    n = min(max_predictions, max(1, round(length * mlm_prob)))
    for row in range(batch):
        pos = candidates[torch.randperm(len(candidates), generator=g)[:n]]
        labels[row, pos] = ids[row, pos]
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": torch.ones_like(ids),
            "labels": labels, "next_sentence_label": torch.randint(0, 2, (batch,), generator=g)}


def step_flops(config: BertConfig, batch: int, length: int, projected: int, last_layer_rows: int | None = None
               ) -> float:
    """FLOPs of one training step (3 x forward: forward, grad wrt input, grad wrt weight) of the encoder on
    batch x length tokens plus the MLM head (transform + vocabulary projection) on `projected` positions.
    `last_layer_rows`: positions at which the last layer computes its output (keys and values still cover
    every token); all of them when None."""
    H, L, I, V = config.hidden_size, config.num_hidden_layers, config.intermediate_size, config.vocab_size
    tokens = batch * length
    rows = tokens if last_layer_rows is None else last_layer_rows

    def layer(queries: int) -> int:  # K, V over all tokens; Q, attention, output projection and FFN per query
        return 2 * tokens * 2 * H * H + 2 * queries * (2 * H * H + 2 * H * I) + 4 * queries * length * H

    encoder = (L - 1) * layer(tokens) + layer(rows)
    head = 2 * projected * (H * H + H * V)
    return 3 * (encoder + head)


def bench_train(args: argparse.Namespace) -> None:
    import transformers

    from bertforge.io.weights import load_into
    from bertforge.model import BertForPreTraining
    from bertforge.train.optim import build_optimizer

    transformers.logging.set_verbosity_error()
    config = BertConfig.preset("mini")
    B, T = args.batch, 128
    torch.manual_seed(0)
    theirs = transformers.BertForPreTraining(transformers.BertConfig(**config.to_dict()))
    ours = BertForPreTraining(config)
    load_into(ours, theirs.state_dict(), source="transformers")
    g = torch.Generator().manual_seed(0)
    batches = [make_batch(config, B, T, g) for _ in range(args.warmup + args.steps)]
    labelled = sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in batches) / len(batches)
    max_labels = max(int((b["labels"] != IGNORE_INDEX).sum(1).max()) for b in batches)

    ours.eval()
    theirs.eval()
    with torch.no_grad():
        b = batches[0]
        ours_loss = ours(b["input_ids"], b["token_type_ids"], b["attention_mask"], labels=b["labels"],
                         next_sentence_label=b["next_sentence_label"]).loss.item()
        theirs_loss = theirs(**b).loss.item()
    assert abs(ours_loss - theirs_loss) < 1e-4, \
        f"models disagree (loss {ours_loss} vs {theirs_loss}); the benchmark would be meaningless"

    ours.train()
    theirs.train()
    ours_opt = build_optimizer(ours, "adamw", lr=1e-4)
    theirs_opt = build_optimizer(theirs, "adamw", lr=1e-4)

    def ours_step(b: dict) -> float:
        ours_opt.zero_grad(set_to_none=True)
        loss = ours(b["input_ids"], b["token_type_ids"], b["attention_mask"], labels=b["labels"],
                    next_sentence_label=b["next_sentence_label"]).loss
        loss.backward()
        ours_opt.step()
        return loss.item()

    def theirs_step(b: dict) -> float:
        theirs_opt.zero_grad(set_to_none=True)
        loss = theirs(**b).loss
        loss.backward()
        theirs_opt.step()
        return loss.item()

    def timed(fn, b: dict) -> float:
        start = time.perf_counter()
        fn(b)
        return time.perf_counter() - start

    for b in batches[:args.warmup]:
        ours_step(b)
        theirs_step(b)
    ours_s, theirs_s = [], []
    for i, b in enumerate(batches[args.warmup:]):  # interleaved rounds, alternating who goes first
        if i % 2 == 0:
            ours_s.append(timed(ours_step, b))
            theirs_s.append(timed(theirs_step, b))
        else:
            theirs_s.append(timed(theirs_step, b))
            ours_s.append(timed(ours_step, b))

    peak = matmul_gflops()
    tokens = B * T
    # bertforge's last layer runs at [CLS] and the labelled positions only (padded to the most in a row)
    ours_flops = step_flops(config, B, T, round(labelled), last_layer_rows=B * (1 + max_labels))
    theirs_flops = step_flops(config, B, T, tokens)
    print(f"\n1. training step (forward + backward + AdamW), mini preset, batch {B} x {T}, fp32, dropout on, "
          f"{labelled:.0f} labelled positions per batch; eval-mode loss {ours_loss:.6f} vs {theirs_loss:.6f}")
    print(f"   fp32 matmul (1024^3): {peak:.1f} GFLOP/s; median of {args.steps} interleaved steps after "
          f"{args.warmup} warm-up steps each")
    med_ours, med_theirs = statistics.median(ours_s), statistics.median(theirs_s)
    for who, s, all_s, flops in (("bertforge", med_ours, ours_s, ours_flops),
                                 ("transformers", med_theirs, theirs_s, theirs_flops)):
        print(f"  {who:<13} {tokens / s:>9,.0f} tokens/s  {s * 1000:7.0f} ms/step  "
              f"{flops / 1e9:5.0f} GFLOP/step  {flops / s / 1e9:6.1f} GFLOP/s ({100 * flops / s / 1e9 / peak:4.1f}% "
              f"of matmul peak)  steps: {' '.join(f'{x:.2f}' for x in all_s)} s")
    print(f"  ratio bertforge / transformers: {med_theirs / med_ours:.2f}x   (goal >= 2.5x; "
          f"FLOP ratio {theirs_flops / ours_flops:.2f}x)")


# --- 2. corpus preparation -----------------------------------------------------------------------

def build_tokenizer(work: Path) -> Path:
    from bertforge.data.fetch import fetch
    from bertforge.vocab import train_vocab_from_corpus

    tokdir = work / "tokenizer-lee-8000"
    if not (tokdir / "vocab.txt").exists():
        train_vocab_from_corpus([fetch("gensim-data", quiet=True) / "lee_background.cor"], 8000, tokdir)
    return tokdir


def build_corpus(work: Path, mb: int, seed: int = 0) -> Path:
    """A Google-format corpus of `mb` MB (10^6 bytes): documents whose sentence counts follow the real
    documents' and whose sentences are drawn at random from Lee + the Wikipedia sample. Reused if present."""
    from bertforge.data.corpus import read_documents
    from bertforge.data.fetch import fetch

    path = work / f"corpus-{mb}mb-seed{seed}.txt"
    if path.exists():
        return path
    data = fetch("gensim-data", quiet=True)
    docs = (list(read_documents(data / "lee_background.cor"))
            + list(read_documents(data / "enwiki-sample.xml.bz2")))
    sentences = [s for d in docs for s in d]
    sizes = [len(d) for d in docs]
    rng = random.Random(seed)
    target, written = mb * 10 ** 6, 0
    tmp = path.with_suffix(".partial")
    with open(tmp, "w", encoding="utf-8") as f:
        while written < target:
            doc = "\n".join(rng.choices(sentences, k=rng.choice(sizes))) + "\n\n"
            f.write(doc)
            written += len(doc.encode())
    tmp.rename(path)
    return path


_CHILD = r"""
import json, resource, sys, time
from bertforge.data.prepare import PrepareSettings, prepare
corpus, tokdir, out, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
start = time.perf_counter()
meta = prepare([corpus], tokdir, out, PrepareSettings(), workers=workers, progress=False)
seconds = time.perf_counter() - start
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
# VmHWM, not ru_maxrss: on Linux ru_maxrss survives fork + exec, so it would count the parent's RSS.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "instances": meta["instances"], "main_kb": hwm,
                  "main_cpu": me.ru_utime + me.ru_stime, "workers_cpu": kids.ru_utime + kids.ru_stime}))
"""


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _status_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak RSS, kept until exit) of a process, in kB; {} if it has gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return {line.split(":")[0]: int(line.split()[1]) for line in f if line.startswith(("VmRSS:", "VmHWM:"))}
    except (OSError, ValueError, IndexError):
        return {}


def _is_pool_worker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"spawn_main" in f.read()
    except OSError:
        return False


def run_prepare(corpus: Path, tokdir: Path, work: Path, workers: int) -> dict:
    """prepare() in a fresh interpreter. Returns the time of the prepare() call; CPU seconds of the main process
    (RUSAGE_SELF, start-up and imports included) and of its workers (RUSAGE_CHILDREN); peak RSS (VmHWM) of the
    main process and of each pool worker, the workers' polled every 20 ms until they exit; and the peak of the
    summed RSS of the whole process tree (main, workers, multiprocessing's helper), polled alike."""
    out = work / f"prepared-w{workers}"
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(corpus), str(tokdir), str(out), str(workers)],
                            stdout=subprocess.PIPE, env=env, text=True)
    peak_total, worker_hwm, is_worker = 0, {}, {}
    while proc.poll() is None:
        total = 0
        for pid in _descendants(proc.pid):
            status = _status_kb(pid)
            total += status.get("VmRSS", 0)
            if pid != proc.pid and status:
                if not is_worker.get(pid):  # asked again until it says yes: a fresh fork has not exec'd yet
                    is_worker[pid] = _is_pool_worker(pid)
                if is_worker[pid]:
                    worker_hwm[pid] = max(worker_hwm.get(pid, 0), status.get("VmHWM", 0))
        peak_total = max(peak_total, total)
        time.sleep(0.02)
    wall = time.perf_counter() - start
    stdout = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"prepare subprocess failed with exit status {proc.returncode}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result.update(wall=wall, peak_total_kb=peak_total, mb=corpus.stat().st_size / 1e6,
                  workers_kb=sorted(worker_hwm.values(), reverse=True))
    shutil.rmtree(out, ignore_errors=True)
    return result


def bench_prepare(args: argparse.Namespace) -> None:
    work = Path(args.tmp)
    work.mkdir(parents=True, exist_ok=True)
    tokdir = build_tokenizer(work)
    print(f"\n2. corpus preparation: prepare(workers=N) in a subprocess, default settings (max_seq_length 128, "
          f"dupe_factor 1, NSP, 4 MB shards), vocab of 8,000 trained on Lee; corpus: Lee + enwiki sentences, "
          f"Google format, under {work}")
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"  note: load average {load:.1f} on {os.cpu_count()} CPUs: MB/s depends on what else runs, "
              f"MB per CPU-second much less")

    def mb_line(label: str, r: dict) -> str:
        cpu = r["main_cpu"] + r["workers_cpu"]
        return (f"  {label:<22} {r['mb']:4.0f} MB  {r['seconds']:6.1f} s  {r['mb'] / r['seconds']:5.2f} MB/s   "
                f"CPU {r['main_cpu']:.0f} s main + {r['workers_cpu']:.0f} s workers = {r['mb'] / cpu:.2f} MB per "
                f"CPU-second   {r['instances']['train']:,} + {r['instances']['eval']:,} instances")

    corpus = build_corpus(work, args.corpus_mb)
    r = run_prepare(corpus, tokdir, work, 2)
    main_mb, total_mb = r["main_kb"] / 1024, r["peak_total_kb"] / 1024
    workers_mb = [kb / 1024 for kb in r["workers_kb"]]
    print(mb_line(f"{args.corpus_mb} MB, 2 workers", r) + "   (goal >= 5 MB/s)")
    print(f"  peak RSS (VmHWM): main {main_mb:,.0f} MB, workers {' + '.join(f'{m:,.0f}' for m in workers_mb)} MB "
          f"(largest {max(workers_mb, default=0):,.0f} MB); sum of the peaks {main_mb + sum(workers_mb):,.0f} MB; "
          f"peak of the tree's summed RSS {total_mb:,.0f} MB   (goal <= 1.5 GB)")

    small = build_corpus(work, 20)
    one, two = [], []
    for i in range(args.repeats):  # interleaved, alternating who goes first
        for workers in ((1, 2) if i % 2 == 0 else (2, 1)):
            (one if workers == 1 else two).append(run_prepare(small, tokdir, work, workers))
    med = {w: min(runs, key=lambda r: abs(r["seconds"] - statistics.median(x["seconds"] for x in runs)))
           for w, runs in ((1, one), (2, two))}
    print(f"  scaling, 20 MB, median of {args.repeats}:")
    for w in (1, 2):
        print(mb_line(f"  {w} worker{'s' if w > 1 else ''}", med[w]) +
              "  runs: " + " ".join(f"{x['seconds']:.1f}" for x in (one if w == 1 else two)) + " s")
    print(f"  speed-up 2 workers / 1 worker: {med[1]['seconds'] / med[2]['seconds']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--corpus-mb", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="prepare runs per worker count at 20 MB")
    parser.add_argument("--tmp", default="/tmp/bertforge-bench-pretrain", help="corpora and outputs go here")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-prepare", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import transformers

    print(f"threads={args.threads}  cpus={os.cpu_count()}  load average {os.getloadavg()[0]:.1f}  "
          f"torch {torch.__version__}  transformers {transformers.__version__}")
    if not args.skip_train:
        bench_train(args)
    if not args.skip_prepare:
        bench_prepare(args)


if __name__ == "__main__":
    main()
