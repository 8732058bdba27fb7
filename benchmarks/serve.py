"""Serving MiniLM over HTTP: dynamic batching vs in-process `inference.encode` vs one request per forward pass.

Real SNLI test sentences (`fetch("snli")`) and the real all-MiniLM-L6-v2 (`fetch("minilm")`). Each server is a
`bertforge serve` process on a free loopback port with the same threads as the in-process baseline; a client
in this process (raw asyncio streams, one keep-alive connection per concurrent client, each request prepared
beforehand and sent in one write: little CPU taken from the server's cores, as wrk would) sends one sentence per
`POST /embed` at each concurrency, and reports throughput, latency percentiles, errors and the server's RSS when
started, warm (after 200 requests) and after the load (both once the server has been idle 1.5 s), and the CPU
time a request costs the server and the load generator (from /proc and this process's clock) beside the CPU
time a sentence costs in-process `encode`: on a machine whose cores the three share, this says where the
throughput went.

1. in-process: `inference.encode` on the same sentences (sorted by length, padded per batch);
2. the server with dynamic batching (the defaults) at concurrency 1, 8, 32, 64;
3. the same server with batching off (`--max-batch-tokens 0`: one request per forward pass);
4. overload: 10x the queue (`--max-concurrent`) at once must get only 200s and 429s, and /health answers after.

Goals at concurrency 32: throughput >= 70% of in-process encode, and >= 3x batching off.

    .venv/bin/python benchmarks/serve.py [--quick] [--requests 2000] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
# RSS is read once the server has been idle this long (warm and after alike): an idle server hands back what its
# last batches freed (batcher.TRIM_EVERY_S after its last trim), so the reading is what it keeps, not a transient.
SETTLE_S = 1.5


@dataclass
class Result:
    name: str
    concurrency: int
    requests: int
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]
    server_cpu_s: float = float("nan")  # CPU time (user + system, all threads) the server spent on this level
    client_cpu_s: float = float("nan")  # and the load generator (this process)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)


def snli_sentences() -> list[str]:
    from bertforge.data.fetch import fetch

    seen: dict[str, None] = {}
    with open(fetch("snli", quiet=True) / "snli_1.0_test.jsonl", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            for key in ("sentence1", "sentence2"):
                text = record[key].strip()
                if text:
                    seen[text] = None
    return list(seen)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, all its threads (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    def __init__(self, model: Path, threads: int, *flags: str):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
        self.proc = subprocess.Popen([sys.executable, "-m", "bertforge", "serve", "--model", str(model), "--port", "0",
                                      *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        if " at http://" not in line:
            self.proc.kill()
            raise SystemExit(f"the server did not start: {line}{self.proc.stderr.read()}")
        self.url = line.split(" at ", 1)[1].split()[0]
        for _ in range(200):
            try:
                if httpx.get(f"{self.url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)

    @property
    def rss(self) -> float:
        return rss_mb(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


class Connection:
    """One keep-alive HTTP/1.1 connection that sends prepared requests whole (one write: no Nagle delay) and
    reads each answer by its Content-Length: a client that costs the server's cores little, like wrk."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> "Connection":
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        return cls(*await asyncio.open_connection(host, int(port)))

    async def post(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        length = int(next(v for k, v in headers.items() if k.strip().lower() == "content-length"))
        return int(lines[0].split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def embed_request(text: str) -> bytes:
    body = json.dumps({"inputs": text, "normalize": True}).encode()
    return (b"POST /embed HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


async def load(url: str, sentences: list[str], concurrency: int, name: str) -> Result:
    """``len(sentences)`` requests, ``concurrency`` at a time (one connection each), one sentence each."""
    requests = iter([embed_request(text) for text in sentences])
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    connections = [await Connection.open(url) for _ in range(concurrency)]

    async def worker(connection: Connection) -> None:
        for request in requests:
            start = time.perf_counter()
            status, body = await connection.post(request)
            latencies.append(time.perf_counter() - start)
            if status == 200:
                json.loads(body)  # the client reads what it gets
            statuses[status] = statuses.get(status, 0) + 1

    start = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        for c in connections:
            c.close()
    return Result(name, concurrency, len(sentences), time.perf_counter() - start, latencies, statuses)


async def overload(url: str, sentences: list[str], n: int) -> tuple[dict[int, int], int]:
    """``n`` requests at once; the status counts, and /health's status right after."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        replies = await asyncio.gather(*(client.post("/embed", json={"inputs": sentences[i % len(sentences)]})
                                         for i in range(n)), return_exceptions=True)
        health = (await client.get("/health")).status_code
    statuses: dict = {}
    for r in replies:
        key = r.status_code if isinstance(r, httpx.Response) else type(r).__name__
        statuses[key] = statuses.get(key, 0) + 1
    return statuses, health


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per concurrency level")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, in process and in each server")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--off-concurrency", type=int, nargs="+", default=[1, 32],
                        help="concurrency levels measured with batching off")
    parser.add_argument("--queue", type=int, default=64, help="--max-concurrent of the overload server")
    parser.add_argument("--quick", action="store_true", help="200 requests per level: a sanity check")
    args = parser.parse_args()
    n = 200 if args.quick else args.requests

    import torch

    from bertforge.data.fetch import fetch
    from bertforge.inference import encode
    from bertforge.model import BertModel
    from bertforge.tokenization import BertTokenizer

    torch.set_num_threads(args.threads)
    path = fetch("minilm", quiet=True)
    pool = snli_sentences()
    sentences = (pool * (n // len(pool) + 1))[:n]
    lengths = [len(ids) for ids in BertTokenizer.from_pretrained(path)(sentences, padding=False,
                                                                        return_tensors=None)["input_ids"]]
    print(f"{len(pool):,} distinct SNLI test sentences; {n} per level, {statistics.mean(lengths):.1f} pieces on "
          f"average ({min(lengths)}-{max(lengths)}); {args.threads} torch threads; pid {os.getpid()}")

    model, tokenizer = BertModel.from_pretrained(path).eval(), BertTokenizer.from_pretrained(path)
    encode(model, tokenizer, sentences[:64], normalize=True)  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    encode(model, tokenizer, sentences, normalize=True)
    in_process, in_process_cpu = n / (time.perf_counter() - start), time.process_time() - cpu
    del model
    print(f"in-process encode: {in_process:,.1f} sentences/s")

    results: list[Result] = []
    rss: dict[str, tuple[float, float, float]] = {}
    for name, flags, levels in (("batching", (), args.concurrency),
                                ("batching off", ("--max-batch-tokens", "0"), args.off_concurrency)):
        server = Server(path, args.threads, *flags)
        try:
            started = server.rss
            asyncio.run(load(server.url, sentences[:200], 8, "warm-up"))
            time.sleep(SETTLE_S)
            before = server.rss  # warm: the allocator and the OpenMP threads have what steady work needs
            for c in levels:
                server_cpu, client_cpu = cpu_seconds(server.proc.pid), time.process_time()
                r = asyncio.run(load(server.url, sentences, c, name))
                r.server_cpu_s = cpu_seconds(server.proc.pid) - server_cpu
                r.client_cpu_s = time.process_time() - client_cpu
                results.append(r)
                print(f"  {name:<13} c={c:<3} {r.throughput:8.1f} req/s  p50 {r.percentile(.5):7.1f} ms  "
                      f"p99 {r.percentile(.99):7.1f} ms  errors {r.errors}", flush=True)
            time.sleep(SETTLE_S)
            rss[name] = (started, before, server.rss)
        finally:
            server.stop()

    server = Server(path, args.threads, "--max-concurrent", str(args.queue))
    try:
        statuses, health = asyncio.run(overload(server.url, sentences, 10 * args.queue))
    finally:
        server.stop()

    # CPU ms a request: what the server and the load generator each take of the machine's cores (in-process
    # encode takes its CPU time a sentence), and how busy the cores were (100% = all of them, all the time)
    print(f"\n{'mode':<14}{'conc':>5}{'req':>7}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"{'server CPU ms/req':>19}{'client CPU ms/req':>19}{'cores busy':>12}")
    print(f"{'in-process':<14}{'-':>5}{n:>7}{in_process:>9.1f}{'':>35}{1000 * in_process_cpu / n:>19.2f}")
    cores = len(os.sched_getaffinity(0))
    for r in results:
        busy = (r.server_cpu_s + r.client_cpu_s) / (r.seconds * cores)
        print(f"{r.name:<14}{r.concurrency:>5}{r.requests:>7}{r.throughput:>9.1f}{r.percentile(.5):>9.1f}"
              f"{r.percentile(.95):>9.1f}{r.percentile(.99):>9.1f}{r.errors:>8}"
              f"{1000 * r.server_cpu_s / r.requests:>19.2f}{1000 * r.client_cpu_s / r.requests:>19.2f}"
              f"{100 * busy:>11.0f}%")
    for name, (started, before, after) in rss.items():
        print(f"server RSS ({name}): {started:,.0f} MB started, {before:,.0f} MB warm, {after:,.0f} MB after "
              f"the load: {100 * (after / before - 1):+.1f}% (goal <= +10%)")
    ok = set(statuses) <= {200, 429}
    print(f"overload: {10 * args.queue} requests at once on --max-concurrent {args.queue}: {statuses}; "
          f"/health {health} -> {'ok' if ok and health == 200 else 'FAILED'}")
    at = {(r.name, r.concurrency): r.throughput for r in results}
    if ("batching", 32) in at:
        ratio = at["batching", 32] / in_process
        print(f"\nat concurrency 32: served / in-process = {ratio:.2f} (goal >= 0.70)", end="")
        if ("batching off", 32) in at:
            print(f", batching / batching off = {at['batching', 32] / at['batching off', 32]:.2f}x (goal >= 3x)")
        else:
            print()


if __name__ == "__main__":
    main()
