"""Corpus -> pre-training instances, once, into sharded on-disk arrays that training streams from.

The corpus is read lazily and cut into chunks of about ``shard_bytes`` of text; worker processes
tokenize each chunk (through a per-process cache of distinct words,
:mod:`bertforge.data.word_cache`), turn its documents into instances with Google's rules
(:mod:`bertforge.data.instances`), and write one shard of fixed-width arrays (``np.save``, read
back with ``mmap_mode="r"``). At most ``2 * workers`` chunks are in flight, so memory stays bounded
whatever the corpus size. Masks are not stored: they are drawn per batch (see ``pretraining_data``).

With ``segment_words`` each shard also stores, one bit per piece (``continues``, packed with
``np.packbits``), whether the piece continues the word of the piece before it: Chinese text segmented into
words (:mod:`bertforge.data.segment`), so whole-word masking masks whole Chinese words. The instances are
the same with or without it, so a corpus prepared with words also serves runs that do not use them.

A fraction of documents (chosen by seed) goes to a held-out ``eval`` split. The output directory is
complete only once ``meta.json`` exists (the directory is built under a temporary name and
renamed); a second call with the same corpus, tokenizer and settings reuses it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bertforge.data import columnar
from bertforge.data.corpus import FORMATS, CorpusStats, Document, read_documents, require_documents
from bertforge.data.instances import Instance, create_instances
from bertforge.data.masking import SpecialIds, continuation_mask
from bertforge.data.segment import (SegmentedSentence, Segmenter, continuation_bits, has_cjk, require_segmenter,
                                     segmenter_installed, segmenter_version)
from bertforge.data.word_cache import WordPieceCache
from bertforge.errors import DataFormatError, UsageError
from bertforge.io.atomic import atomic_dir
from bertforge.options import check, option
from bertforge.tokenization import BertTokenizer

SPLITS = ("train", "eval")
ARRAYS = ("tokens", "lengths", "b_start", "is_random_next")
CONTINUES = "continues"  # the optional array of segment_words: (n, ceil(width / 8)) packed bits
CONTINUES_BIT = 1 << 30  # while instances are made, the bit rides in each piece id (instances.py copies ids)


@dataclass(frozen=True)
class PrepareSettings:
    max_seq_length: int = option(128, "max_seq_length of instances", flag="--seq-len", min=16, max=8192)
    short_seq_prob: float = option(0.1, "share of instances made shorter", min=0, max=1)
    dupe_factor: int = option(1, "passes over each document (each draws new splits and random B segments)",
                              min=1, max=100)
    nsp: bool = option(True, "no sentence pairs: pack contiguous text", negate="--no-nsp")
    random_next: bool = option(True, "B is a random segment half of the time (NSP); False: always the real "
                               "continuation (sentence-order prediction)", cli=False)
    eval_fraction: float = option(0.05, "share of documents held out", min=0, below=1)
    seed: int = option(12345, "seed of the document split and instance choices", min=0)
    format: str = option("auto", "corpus format (default: detect per file)", choices=("auto", *FORMATS))
    text_field: str = option("text", "the JSONL field, or the Parquet / Arrow column, that holds each document's "
                             "text")
    shard_bytes: int = option(4 << 20, "raw text per shard", min=1 << 10, cli=False)
    segment_words: bool = option(False, "store each piece's word for whole-word masking: Chinese text segmented "
                                 "by jieba (People's Daily by its own segmentation), ## pieces with their word")

    def __post_init__(self) -> None:
        check(self)


def special_ids(tokenizer: BertTokenizer) -> SpecialIds:
    return SpecialIds(cls=tokenizer.cls_token_id, sep=tokenizer.sep_token_id, mask=tokenizer.mask_token_id,
                      pad=tokenizer.pad_token_id, vocab_size=tokenizer.vocab_size)


def fingerprint(paths: list[Path | columnar.DatasetSource], tokenizer_dir: Path, settings: PrepareSettings) -> str:
    """Identity of a prepared corpus's instances: the files (path, size, mtime; a Dataset's fingerprint), the
    vocabulary, the settings (but ``segment_words``, which adds an array and changes no instance: see
    :func:`_reusable`; and ``text_field`` at its default, so corpora prepared before it existed are reused)."""
    fields = {k: v for k, v in dataclasses.asdict(settings).items()
              if k != "segment_words" and not (k == "text_field" and v == "text")}
    h = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    for p in paths:
        h.update(columnar.identity(p).encode())
    h.update((tokenizer_dir / "vocab.txt").read_bytes())
    h.update((tokenizer_dir / "tokenizer_config.json").read_bytes()
             if (tokenizer_dir / "tokenizer_config.json").exists() else b"")
    return h.hexdigest()[:16]


def prepare(corpus: Iterable[str | os.PathLike], tokenizer_dir: str | os.PathLike, out_dir: str | os.PathLike,
            settings: PrepareSettings = PrepareSettings(), workers: int = 2, progress: bool = True) -> dict:
    """Write (or reuse) the prepared corpus in ``out_dir``; return its ``meta.json`` contents. ``corpus``: files,
    ``datasets`` folders or ``datasets.Dataset`` objects."""
    paths = [columnar.require_source(p, setting="corpus", what="corpus file") for p in corpus]
    if not paths:
        raise UsageError("no corpus files given", setting="corpus")
    tokenizer_dir, out_dir = Path(tokenizer_dir), Path(out_dir)
    tokenizer = BertTokenizer.from_pretrained(tokenizer_dir)
    key = fingerprint(paths, tokenizer_dir, settings)
    existing = read_meta(out_dir) if (out_dir / "meta.json").exists() else None
    if existing and _reusable(existing, key, settings):
        return existing

    stats = CorpusStats()
    documents = read_documents(paths, format=settings.format, text_field=settings.text_field, stats=stats,
                               keep_words=settings.segment_words)
    with atomic_dir(out_dir) as tmp:
        counts, errors = {s: [] for s in SPLITS}, []
        bar = tqdm(desc="preparing corpus", unit="B", unit_scale=True, disable=not progress)
        segmented = {"jieba": 0, "corpus": 0}
        if settings.segment_words and not segmenter_installed():
            documents = _require_segmenter_for_chinese(documents, paths)
        for result in _run(_chunks(documents, settings.shard_bytes, bar), tokenizer_dir, settings, tmp, workers):
            for split in SPLITS:
                counts[split].append(result[split])
            errors += result["errors"]
            for k in segmented:
                segmented[k] += result.get("segmented", {}).get(k, 0)
        bar.close()
        require_documents(stats, paths)
        if sum(counts["train"]) == 0:
            raise DataFormatError(errors[0] if errors else "no training instances could be made",
                                  path=", ".join(map(str, paths)))
        meta = {
            "fingerprint": key,
            "settings": dataclasses.asdict(settings),
            "vocab_size": tokenizer.vocab_size,
            "dtype": _dtype(tokenizer.vocab_size).__name__,
            "shards": {split: counts[split] for split in SPLITS},
            "instances": {split: sum(counts[split]) for split in SPLITS},
            "corpus": {"files": [str(p) for p in paths], **dataclasses.asdict(stats)},
        }
        if settings.segment_words:  # the segmenter, and how many sentences it and the corpus segmented
            meta["words"] = {"segmenter": segmenter_version(), "sentences": segmented}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def _reusable(meta: dict, key: str, settings: PrepareSettings) -> bool:
    """The same instances, and word boundaries from the same segmenter when they are asked for."""
    if meta["fingerprint"] != key:
        return False
    return not settings.segment_words or meta.get("words", {}).get("segmenter") == segmenter_version()


def _require_segmenter_for_chinese(documents: Iterator[Document], paths: list[Path]) -> Iterator[Document]:
    """The documents, stopping with the one clear error at the first Chinese sentence that jieba would have
    to segment (People's Daily brings its own words)."""
    for doc in documents:
        if any(not isinstance(s, SegmentedSentence) and has_cjk(s) for s in doc):
            require_segmenter(", ".join(map(str, paths)))
        yield doc


def read_meta(directory: Path) -> dict:
    return json.loads((Path(directory) / "meta.json").read_text())


def shard_path(directory: Path, split: str, shard: int, array: str) -> Path:
    return Path(directory) / f"{split}-{shard:05d}-{array}.npy"


# --- the pipeline ------------------------------------------------------------------------------

def _chunks(documents: Iterator[Document], shard_bytes: int, bar: tqdm) -> Iterator[list[Document]]:
    chunk: list[Document] = []
    size = 0
    for doc in documents:
        chunk.append(doc)
        n = sum(len(s) for s in doc)
        size += n
        bar.update(n)
        if size >= shard_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _run(chunks: Iterator[list[Document]], tokenizer_dir: Path, settings: PrepareSettings, out: Path,
         workers: int) -> Iterator[dict]:
    """Shard results in order; with workers > 1, a pool with a bounded number of chunks in flight."""
    if workers <= 1:
        _init_worker(tokenizer_dir, settings)
        for i, chunk in enumerate(chunks):
            yield _make_shard(i, chunk, out)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch threads
    with ctx.Pool(workers, initializer=_init_worker, initargs=(tokenizer_dir, settings)) as pool:
        pending: deque = deque()
        for i, chunk in enumerate(chunks):
            pending.append(pool.apply_async(_make_shard, (i, chunk, out)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


_worker: dict = {}


def _init_worker(tokenizer_dir: Path, settings: PrepareSettings) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _worker["tokenizer"] = BertTokenizer.from_pretrained(tokenizer_dir)
    _worker["words"] = WordPieceCache(_worker["tokenizer"])
    _worker["settings"] = settings
    if settings.segment_words:
        _worker["subword"] = continuation_mask(_worker["tokenizer"].vocab)
        _worker["segmenter"] = Segmenter()


def _make_shard(index: int, documents: list[Document], out: Path) -> dict:
    """Tokenize one chunk of documents, split off held-out documents, write both splits' arrays."""
    tokenizer: BertTokenizer = _worker["tokenizer"]
    s: PrepareSettings = _worker["settings"]
    sentences = [sentence for doc in documents for sentence in doc]
    result: dict = {"errors": []}
    if s.segment_words:
        segmenter: Segmenter = _worker["segmenter"]
        before = dict(segmenter.used)
        ids = iter([np.where(cont, piece | CONTINUES_BIT, piece) for piece, cont in
                    continuation_bits(tokenizer, sentences, _worker["subword"], segmenter)])
        result["segmented"] = {k: segmenter.used[k] - before[k] for k in before}
    else:
        ids = iter(_worker["words"].piece_arrays(sentences))
    tokenized = [[next(ids) for _ in doc] for doc in documents]
    rng = np.random.default_rng([s.seed, index])
    held_out = rng.random(len(tokenized)) < s.eval_fraction
    splits = {"train": [d for d, h in zip(tokenized, held_out) if not h],
              "eval": [d for d, h in zip(tokenized, held_out) if h]}
    if len(splits["eval"]) < 2:  # too few to pair with random documents: keep them for training
        splits = {"train": tokenized, "eval": []}
    for split, docs in splits.items():
        instances: list[Instance] = []
        if docs:
            try:
                instances = create_instances(docs, special_ids(tokenizer), s.max_seq_length, s.short_seq_prob,
                                             s.dupe_factor if split == "train" else 1, rng, s.nsp,
                                             s.random_next)
            except ValueError as e:  # e.g. no document long enough for NSP in this chunk
                result["errors"].append(str(e))
        _write(out, split, index, instances, s.max_seq_length, tokenizer, s.segment_words)
        result[split] = len(instances)
    return result


def _dtype(vocab_size: int) -> type:
    return np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32


def _write(out: Path, split: str, index: int, instances: list[Instance], width: int,
           tokenizer: BertTokenizer, words: bool = False) -> None:
    n = len(instances)
    continues = np.zeros((n, width), dtype=bool)
    tokens = np.full((n, width), tokenizer.pad_token_id, dtype=_dtype(tokenizer.vocab_size))
    lengths = np.zeros(n, dtype=np.int16)
    b_start = np.zeros(n, dtype=np.int16)  # first position of segment B (== length when there is none)
    random_next = np.zeros(n, dtype=np.uint8)
    for i, inst in enumerate(instances):
        continues[i, :len(inst.tokens)] = inst.tokens & CONTINUES_BIT
        tokens[i, :len(inst.tokens)] = inst.tokens & (CONTINUES_BIT - 1)
        lengths[i] = len(inst.tokens)
        b_start[i] = len(inst.tokens) - int(inst.segment_ids.sum())  # segment B is the ones at the end
        random_next[i] = inst.is_random_next
    for name, array in zip(ARRAYS, (tokens, lengths, b_start, random_next)):
        np.save(shard_path(out, split, index, name), array)
    if words:
        np.save(shard_path(out, split, index, CONTINUES), np.packbits(continues, axis=1))
