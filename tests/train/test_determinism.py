"""The same command gives the same bytes: pre-training (vocabulary, prepared shards, weights), vocabulary
training and fine-tuning, each run twice in fresh processes with different string-hash seeds, so nothing
may depend on set or dict order of strings, on worker scheduling or on the clock."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SEEDS = ("1", "2")  # PYTHONHASHSEED of the two runs


def run_twice(argv: list, tmp_path: Path) -> tuple[Path, Path]:
    """``bertforge ARGV --out tmp/run-SEED`` once per hash seed; the two run directories."""
    outs = []
    for seed in SEEDS:
        out = tmp_path / f"run-{seed}"
        env = {**{k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "BERTFORGE_DEBUG")},
               "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1"}
        r = subprocess.run([sys.executable, "-m", "bertforge", *map(str, argv), "--out", str(out)], env=env,
                           capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert r.returncode == 0, f"PYTHONHASHSEED={seed}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        outs.append(out)
    return outs[0], outs[1]


def same_bytes(a: Path, b: Path, relative: str) -> None:
    assert (a / relative).is_file(), relative
    assert (a / relative).read_bytes() == (b / relative).read_bytes(), f"{relative} differs between the runs"


@pytest.fixture(scope="module")
def lee_200(fetched, tmp_path_factory) -> Path:
    """The first 200 news stories of the Lee corpus (one document a line)."""
    lines = (fetched("gensim-data") / "lee_background.cor").read_text(encoding="utf-8").splitlines()[:200]
    path = tmp_path_factory.mktemp("lee") / "lee200.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_pretrain_twice_gives_identical_vocabulary_shards_and_weights(lee_200, tmp_path):
    a, b = run_twice(["pretrain", "--corpus", lee_200, "--vocab-size", 2000, "--preset", "tiny", "--seq-len", 32,
                      "--batch-size", 8, "--max-steps", 6, "--warmup-steps", 2, "--save-every", 3,
                      "--eval-every", 3, "--workers", 2, "--no-progress"], tmp_path)
    same_bytes(a, b, "tokenizer/vocab.txt")
    assert len((a / "tokenizer" / "vocab.txt").read_text(encoding="utf-8").splitlines()) == 2000
    shards = sorted(p.relative_to(a / "data").as_posix() for p in (a / "data").rglob("*") if p.is_file())
    assert sorted(p.relative_to(b / "data").as_posix() for p in (b / "data").rglob("*") if p.is_file()) == shards
    assert "meta.json" in shards and sum(s.endswith("-tokens.npy") for s in shards) >= 2  # train and eval
    for shard in shards:
        same_bytes(a / "data", b / "data", shard)
    same_bytes(a, b, "model/model.safetensors")
    same_bytes(a, b, "checkpoints/step-00000006/model.safetensors")


def test_tokenizer_train_twice_gives_identical_files(lee_200, tmp_path):
    a, b = run_twice(["tokenizer", "train", "--input", lee_200, "--vocab-size", 1500], tmp_path)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        same_bytes(a, b, name)


def test_finetune_twice_gives_identical_weights_and_results(tmp_path):
    import torch

    from bertforge.config import BertConfig
    from bertforge.model import BertForPreTraining
    from bertforge.tokenization import BertTokenizer

    words = "good great fine bad awful poor the a movie film plot was very it".split()
    tok = BertTokenizer({t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])})
    model_dir = tmp_path / "pretrained"
    torch.manual_seed(0)
    BertForPreTraining(BertConfig.preset("tiny", vocab_size=tok.vocab_size)).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    rng = random.Random(0)

    def rows(n):
        out = []
        for _ in range(n):
            label = rng.choice(["pos", "neg"])
            text = " ".join(rng.sample(words[6:], 3) + [rng.choice(words[:3] if label == "pos" else words[3:6])])
            out.append(json.dumps({"text": text, "label": label}) + "\n")
        return "".join(out)

    (tmp_path / "train.jsonl").write_text(rows(48))
    (tmp_path / "dev.jsonl").write_text(rows(16))
    a, b = run_twice(["finetune", "--task", "classify", "--model", model_dir, "--train", tmp_path / "train.jsonl",
                      "--dev", tmp_path / "dev.jsonl", "--epochs", 2, "--batch-size", 8, "--lr", "1e-3",
                      "--seeds", 1, 2, "--no-progress"], tmp_path)
    same_bytes(a, b, "model/model.safetensors")
    same_bytes(a, b, "eval_results.json")
    assert json.loads((a / "eval_results.json").read_text())["seeds"] == [1, 2]
