"""Shared fixtures for tests that run the real `bertforge` command line in subprocesses.

``cli_inputs`` builds, once per session, every small input a CLI test needs (a tokenizer, a corpus,
tiny random models in the transformers layout, task files, and deliberately broken variants of each)
and returns them by name. ``bertforge_cli`` runs ``python -m bertforge ARGV`` in a given directory,
hermetically: one thread, no inherited PYTHONWARNINGS / BERTFORGE_DEBUG, an empty data cache and pip
told not to reach any index (so nothing is ever downloaded).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCTUATION = list(".,!?'\":;{}[]()-")
CORPUS_WORDS = ("the a cat dog runs sees big small red green house tree river walks quickly slowly bird sings "
                "over under near far").split()
POSITIVE, NEGATIVE = ["good", "great", "fine", "lovely"], ["bad", "awful", "poor", "sad"]
FILLER = "movie film plot actor was is very quite and but it this story".split()
QA_WORDS = "alice bob carol dave lives in paris london rome where does live who".split()
PIECES = ["##s", "##ed", "##ing", "##ly", "##e"]
VOCAB = SPECIALS + PUNCTUATION + list("0123456789") + CORPUS_WORDS + POSITIVE + NEGATIVE + FILLER + QA_WORDS + PIECES
VOCAB = list(dict.fromkeys(VOCAB))  # unique, in order: ids 0..n-1

CLI_TIMEOUT_S = 120


@dataclass
class CliResult:
    argv: list[str]
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    timed_out: bool = False

    def describe(self) -> str:
        status = "timed out" if self.timed_out else f"exit status {self.returncode}"
        return (f"$ bertforge {' '.join(self.argv)}\n{status}\n--- stdout ---\n{self.stdout[-3000:]}"
                f"\n--- stderr ---\n{self.stderr[-3000:]}")


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory) -> dict[str, str]:
    """The environment every CLI subprocess runs in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "BERTFORGE_DEBUG")}
    env.update(OMP_NUM_THREADS="1", BERTFORGE_CACHE=str(tmp_path_factory.mktemp("empty-cache")),
               PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


@pytest.fixture(scope="session")
def bertforge_cli(cli_env):
    """``run(argv, cwd, extra_env=None, timeout=120) -> CliResult``: ``python -m bertforge *argv``."""

    def run(argv: list[str], cwd: str | os.PathLike, extra_env: dict[str, str] | None = None,
            timeout: float = CLI_TIMEOUT_S) -> CliResult:
        argv = [str(a) for a in argv]
        try:
            p = subprocess.run([sys.executable, "-m", "bertforge", *argv], cwd=cwd, env={**cli_env, **(extra_env or {})},
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                               timeout=timeout)
        except subprocess.TimeoutExpired as e:
            decode = lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or "")  # noqa: E731
            return CliResult(argv, None, decode(e.stdout), decode(e.stderr), timed_out=True)
        return CliResult(argv, p.returncode, p.stdout, p.stderr)

    return run


def _write_jsonl(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    path.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode(encoding))
    return path


def _sentence(rng: random.Random, extra: str) -> str:
    words = rng.sample(FILLER, 4) + [extra]
    rng.shuffle(words)
    return " ".join(words)


def _copy_without(src: Path, dst: Path, *names: str) -> Path:
    shutil.copytree(src, dst)
    for name in names:
        (dst / name).unlink()
    return dst


@pytest.fixture(scope="session")
def cli_inputs(tmp_path_factory) -> dict[str, Path]:
    """Every input of the CLI tests, by name (see the comments below for what each one is)."""
    import torch

    from bertforge.config import BertConfig
    from bertforge.model import BertForPreTraining, BertForSequenceClassification, BertModel
    from bertforge.tokenization import BertTokenizer

    d = tmp_path_factory.mktemp("cli-inputs")
    rng = random.Random(0)
    x: dict[str, Path] = {}

    # --- vocabulary and pre-training text ---------------------------------------------------
    tokenizer = BertTokenizer({token: i for i, token in enumerate(VOCAB)})
    x["tok"] = tokenizer.save_pretrained(d / "tok")  # vocab.txt, tokenizer.json, tokenizer_config.json ...
    x["no_vocab_tok"] = _copy_without(x["tok"], d / "tok-without-vocab", "vocab.txt")

    docs = ["\n".join(" ".join(rng.choice(CORPUS_WORDS) for _ in range(rng.randint(4, 10))).capitalize() + "."
                      for _ in range(rng.randint(3, 7))) for _ in range(200)]
    # Google format: a sentence a line, blank line between documents; enough documents that the default
    # --eval-fraction 0.05 holds some out (so a valid run has a held-out set and nothing to warn about)
    x["corpus"] = d / "corpus.txt"
    x["corpus"].write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    x["corpus_dir"] = d / "corpus-dir"  # a folder holding a corpus: a directory where a file is expected
    x["corpus_dir"].mkdir()
    shutil.copy(x["corpus"], x["corpus_dir"] / "part-1.txt")
    x["empty_txt"] = d / "empty.txt"
    x["empty_txt"].write_text("")
    x["binary"] = d / "corpus.bin"  # not text at all
    x["binary"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(4096) + bytes(range(256)) * 8)
    x["lines_txt"] = d / "lines.txt"  # plain text inputs, one a line
    x["lines_txt"].write_text("a good movie .\nthe plot was awful .\nalice lives in paris .\n", encoding="utf-8")
    x["latin1_txt"] = d / "latin1.txt"  # line 2 is Latin-1 (0xe9), not UTF-8
    x["latin1_txt"].write_bytes("a good movie .\nthe caf\u00e9 film was bad .\nfine .\n".encode("latin-1"))

    # --- configs -----------------------------------------------------------------------------
    config = BertConfig.preset("tiny", vocab_size=len(VOCAB))
    x["config_dir"] = d / "configs"  # a directory holding a valid config.json
    config.to_json_file(x["config_dir"] / "config.json")
    x["bad_config_json"] = d / "truncated-config.json"
    x["bad_config_json"].write_text((x["config_dir"] / "config.json").read_text()[:60])
    x["heads_config_json"] = d / "three-heads-config.json"  # hidden_size 128 is not divisible by 3 heads
    data = json.loads((x["config_dir"] / "config.json").read_text())
    x["heads_config_json"].write_text(json.dumps({**data, "num_attention_heads": 3}, indent=2))

    # --- models ------------------------------------------------------------------------------
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # loading heads onto encoders warns about the new weights
        torch.manual_seed(0)
        x["pt_model"] = d / "pretrained"  # BertForPreTraining: encoder + MLM/NSP heads, with its tokenizer
        BertForPreTraining(config).save_pretrained(x["pt_model"])
        tokenizer.save_pretrained(x["pt_model"])
        x["base_model"] = d / "encoder-only"  # a plain BertModel: no MLM head in the checkpoint
        BertModel(config).save_pretrained(x["base_model"])
        tokenizer.save_pretrained(x["base_model"])
        x["clf"] = d / "classifier"  # looks fine-tuned: classify, labels neg/pos, with its tokenizer
        labels = ["neg", "pos"]
        BertForSequenceClassification.from_pretrained(
            x["pt_model"], num_labels=2, id2label={str(i): n for i, n in enumerate(labels)},
            label2id={n: i for i, n in enumerate(labels)}, bertforge_task="classify").save_pretrained(x["clf"])
        tokenizer.save_pretrained(x["clf"])
    x["no_config_model"] = _copy_without(x["pt_model"], d / "model-without-config", "config.json")
    x["no_weights_model"] = _copy_without(x["pt_model"], d / "model-without-weights", "model.safetensors")
    x["no_vocab_model"] = _copy_without(x["pt_model"], d / "model-without-vocab", "vocab.txt")
    x["bad_config_model"] = _copy_without(x["pt_model"], d / "model-with-truncated-config")
    (x["bad_config_model"] / "config.json").write_text((x["pt_model"] / "config.json").read_text()[:80])
    x["bad_weights_model"] = _copy_without(x["pt_model"], d / "model-with-truncated-weights")
    weights = (x["pt_model"] / "model.safetensors").read_bytes()
    (x["bad_weights_model"] / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    x["not_model_dir"] = d / "not-a-model"  # an ordinary folder
    x["not_model_dir"].mkdir()
    (x["not_model_dir"] / "readme.txt").write_text("holiday photos\n")

    # --- task data ---------------------------------------------------------------------------
    def clf_rows(n: int, labels=("neg", "pos")) -> list[dict]:
        rows = []
        for _ in range(n):
            label = rng.choice(labels)
            word = {"pos": POSITIVE, "neg": NEGATIVE}.get(label, ["the"])
            rows.append({"text": _sentence(rng, rng.choice(word)), "label": label})
        return rows

    x["train_jsonl"] = _write_jsonl(d / "train.jsonl", clf_rows(16))
    x["dev_jsonl"] = _write_jsonl(d / "dev.jsonl", clf_rows(8))
    x["three_jsonl"] = _write_jsonl(d / "three-labels.jsonl", clf_rows(12, ("neg", "pos", "neutral")))
    x["unseen_jsonl"] = _write_jsonl(d / "unseen-label.jsonl",
                                     clf_rows(3) + [{"text": "quite a story", "label": "meh"}])
    x["bad_json3"] = d / "malformed-line3.jsonl"  # line 3 is cut off in the middle of an object
    x["bad_json3"].write_text('{"text": "a good movie", "label": "pos"}\n{"text": "a bad film", "label": "neg"}\n'
                              '{"text": "fine plot", "label": \n{"text": "sad story", "label": "neg"}\n')
    latin1_rows = [("a good movie", "pos"), ("the caf\u00e9 film was awful", "neg"), ("lovely plot", "pos"),
                   ("poor actor", "neg")]
    x["wrong_field_jsonl"] = _write_jsonl(d / "sentences.jsonl", [{"sentence": "a good movie"},
                                                                  {"sentence": "a bad film"}])
    x["latin1_csv"] = d / "latin1.csv"  # header on line 1; line 3 holds 0xe9 (Latin-1 "é")
    x["latin1_csv"].write_bytes(("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in latin1_rows)).encode("latin-1"))
    x["latin1_jsonl"] = _write_jsonl(d / "latin1.jsonl", [{"text": "good film", "label": "pos"}]
                                     + [{"text": t, "label": lab} for t, lab in latin1_rows[1:]], encoding="latin-1")
    x["conll"] = d / "ner.conll"  # CoNLL columns: word tag, blank line between sentences
    x["conll"].write_text("".join(f"{name} B-PER\nlives O\nin O\n{city} B-LOC\n. O\n\n"
                                  for name in ("alice", "bob", "carol", "dave") for city in ("paris", "london")))
    paragraphs = []
    for i, (name, city) in enumerate([("alice", "paris"), ("bob", "london"), ("carol", "rome"), ("dave", "paris")]):
        context = f"{name} lives in {city} . the river is near the house ."
        paragraphs.append({"context": context, "qas": [
            {"id": f"q{i}", "question": f"where does {name} live ?",
             "answers": [{"text": city, "answer_start": context.index(city)}]}]})
    x["squad"] = d / "squad.json"  # SQuAD v1.1
    x["squad"].write_text(json.dumps({"version": "1.1", "data": [{"title": "towns", "paragraphs": paragraphs}]}))

    # --- Parquet (the test extra has pyarrow) -------------------------------------------------
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name in ("train", "dev"):  # the classification rows of train.jsonl and dev.jsonl
        rows = [json.loads(line) for line in x[f"{name}_jsonl"].read_text().splitlines()]
        x[f"{name}_parquet"] = d / f"{name}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), x[f"{name}_parquet"], row_group_size=4)
    x["no_text_parquet"] = d / "sentences.parquet"  # rows whose text is in a 'sentence' column, not 'text'
    rows = [json.loads(line) for line in x["train_jsonl"].read_text().splitlines()]
    pq.write_table(pa.table({"sentence": [r["text"] for r in rows], "label": [r["label"] for r in rows]}),
                   x["no_text_parquet"])
    x["cut_parquet"] = d / "cut-short.parquet"  # a Parquet file cut in half: its footer is gone
    data = x["train_parquet"].read_bytes()
    x["cut_parquet"].write_bytes(data[:len(data) // 2])

    # --- things a command must not overwrite ------------------------------------------------
    x["existing_file"] = d / "notes.txt"  # a user's file, given as --out
    x["existing_file"].write_text("my notes, not a run directory\n")
    x["empty_dir"] = d / "outdir"  # a directory, given where an output file is expected
    x["empty_dir"].mkdir()
    return x
