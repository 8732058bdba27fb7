"""Memory of reading a columnar corpus several times larger than the memory allowed: ``read_documents`` streams a
Parquet file a row group (and an Arrow stream a record batch) at a time, so its peak memory stays flat whatever
the file's size (``data/columnar.py``).

Writes, under --dir, a Parquet file of about --text-gb GB of synthetic text (documents of random sentences over a
5,000-word vocabulary, row groups of 10,000 documents, snappy as pyarrow writes by default) and, with ``--formats
arrow``, the same rows as an Arrow IPC stream (a ``datasets`` folder's data file format); then reads each, in a
fresh process, through ``read_documents``, counting documents and sentences. It prints the file and text sizes,
the time, the peak RSS (``VmHWM``; ``ru_maxrss`` would carry the parent's peak across ``exec``), the peak
anonymous RSS (sampled from /proc/self/status every 2,000 documents: the process's own memory, without the file
pages a memory-mapped Arrow file shares with the page cache, which the kernel can drop) and the RSS before the
first row (interpreter and pyarrow), and fails (exit 1) when the peak anonymous RSS passes --cap-mb. The files
are removed afterwards.

    .venv/bin/python benchmarks/columnar_memory.py [--text-gb 1.5] [--cap-mb 400] [--formats parquet arrow]
        [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DOCS_PER_GROUP = 10_000


def write_corpus(directory: Path, text_bytes: float, formats: list[str]) -> dict[str, Path]:
    """Documents of 5-30 sentences drawn from a pool of 200,000, written row group by row group (never whole)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = ["".join(rng.choice(letters, n)) for n in rng.integers(2, 10, 5000)]
    pool = [" ".join(words[i] for i in rng.integers(0, len(words), n)).capitalize() + "."
            for n in rng.integers(6, 20, 200_000)]
    schema = pa.schema([("text", pa.string())])
    paths = {"parquet": directory / "corpus.parquet", "arrow": directory / "corpus.arrow"}
    parquet = pq.ParquetWriter(paths["parquet"], schema)
    stream = pa.ipc.new_stream(str(paths["arrow"]), schema) if "arrow" in formats else None
    written = 0
    while written < text_bytes:
        docs = [" ".join(pool[i] for i in rng.integers(0, len(pool), n)) for n in rng.integers(5, 31, DOCS_PER_GROUP)]
        table = pa.table({"text": docs}, schema=schema)
        parquet.write_table(table)
        if stream is not None:
            stream.write_table(table)
        written += sum(len(d) for d in docs)
    parquet.close()
    if stream is not None:
        stream.close()
    return {name: paths[name] for name in formats}


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def read(path: str) -> dict:
    """Run in a fresh process: read the corpus, sampling the anonymous RSS."""
    from bertforge.data.corpus import CorpusStats, read_documents

    stats = CorpusStats()
    documents = read_documents(path, stats=stats)  # opens the file: pyarrow is imported
    before_kb, peak_anon_kb, sentences, started = status_kb("VmRSS"), status_kb("RssAnon"), 0, time.perf_counter()
    for n, doc in enumerate(documents, 1):
        sentences += len(doc)
        if n % 2000 == 0:
            peak_anon_kb = max(peak_anon_kb, status_kb("RssAnon"))
    return {"documents": stats.documents, "sentences": sentences, "text_bytes": stats.bytes_read,
            "seconds": time.perf_counter() - started, "rss_before_mb": before_kb / 1024,
            "peak_rss_mb": status_kb("VmHWM") / 1024,
            "peak_anon_rss_mb": max(peak_anon_kb, status_kb("RssAnon")) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text-gb", type=float, default=1.5, help="text to write, in GB (default: 1.5)")
    parser.add_argument("--cap-mb", type=float, default=400, help="memory allowed: fail above it (default: 400)")
    parser.add_argument("--formats", nargs="+", default=["parquet", "arrow"], choices=["parquet", "arrow"])
    parser.add_argument("--dir", default=None, help="where the temporary files go (default: the system's /tmp)")
    parser.add_argument("--read", help=argparse.SUPPRESS)  # the child process's job: read this file
    args = parser.parse_args()
    if args.read:
        print(json.dumps(read(args.read)))
        return
    directory = Path(tempfile.mkdtemp(prefix="columnar-memory-", dir=args.dir))
    failed = False
    try:
        started = time.perf_counter()
        files = write_corpus(directory, args.text_gb * 1e9, args.formats)
        print(f"wrote {', '.join(f'{p.name} ({p.stat().st_size / 1e9:.2f} GB)' for p in files.values())} "
              f"in {time.perf_counter() - started:.0f} s")
        for name, path in files.items():
            out = subprocess.run([sys.executable, __file__, "--read", str(path)], capture_output=True, text=True,
                                 check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            size_mb = path.stat().st_size / 2**20
            print(f"{name}: {r['documents']:,} documents, {r['sentences']:,} sentences, "
                  f"{r['text_bytes'] / 1e9:.2f} GB of text, file {size_mb / 1024:.2f} GiB, read in "
                  f"{r['seconds']:.0f} s ({r['text_bytes'] / 1e6 / r['seconds']:.0f} MB/s); peak RSS "
                  f"{r['peak_rss_mb']:.0f} MiB, peak anonymous RSS {r['peak_anon_rss_mb']:.0f} MiB "
                  f"({r['rss_before_mb']:.0f} MiB before the first row); file / cap = "
                  f"{size_mb / args.cap_mb:.1f}x, text / cap = {r['text_bytes'] / 2**20 / args.cap_mb:.1f}x")
            failed |= r["peak_anon_rss_mb"] > args.cap_mb
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if failed:
        sys.exit(f"the peak anonymous RSS passed --cap-mb {args.cap_mb:g}")


if __name__ == "__main__":
    main()
