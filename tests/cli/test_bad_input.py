"""Bad input through the real `bertforge` command line: every expected failure is one clear line.

The error policy under test: every expected failure (bad flag value, missing/unreadable/wrong-kind
path, bad data, incompatible model) exits non-zero (status 2, as ``bertforge.errors`` documents) with
ONE line on stderr, starting ``bertforge``, that names the flag, file, line or field in the user's
terms; no traceback unless ``BERTFORGE_DEBUG=1``; flag values are validated before any data is read
or prepared, so a failing command prints no results and leaves nothing behind (its working directory,
where every case writes, is byte-for-byte as before, and inputs it was pointed at are unchanged).
A path of the wrong kind (missing, a directory for a file...) must be named with its flag (``--dev
PATH``, as ``errors.PathError(flag=...)`` writes it); bad contents with the file, and line when there
is one (``PATH:3``); an out-of-range value with its flag.

Each case's argv is a template: ``{name}`` is an input built by ``cli_inputs`` (tests/cli/conftest.py),
``{tmp}`` the case's own working directory and ``{own}`` a private copy, in that directory, of the
input named by ``setup`` (for cases that could damage it). Every command family also has a baseline
(``BASELINES``) that must succeed, showing that each case's argv is valid but for its one bad thing.
All commands run once, two at a time, in a module fixture; the tests then check the stored results.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# About two minutes even once flags are checked before torch is imported: the baselines train, and
# the cases about models must load one.
pytestmark = pytest.mark.slow

# --------------------------------------------------------------------------------------------
# Expectations on the error line


@dataclass(frozen=True)
class Re:
    """A regular expression the error line must match (re.search); not templated."""

    pattern: str

    def check(self, line: str, ctx: dict[str, str]) -> bool:
        return re.search(self.pattern, line) is not None

    def __str__(self) -> str:
        return f"/{self.pattern}/"


@dataclass(frozen=True)
class AtLine:
    """The file ``{name}`` and its 1-based line ``n``: ``PATH:n`` or ``PATH ... line n``."""

    path: str
    n: int

    def check(self, line: str, ctx: dict[str, str]) -> bool:
        path = re.escape(self.path.format(**ctx))
        return re.search(rf"{path}(:{self.n}\b|.*\bline {self.n}\b)", line) is not None

    def __str__(self) -> str:
        return f"{self.path} at line {self.n}"


# The message for a too-small value must say what the smallest usable one is.
MINIMUM = Re(r"(?i)(at least|minimum|>=|≥|no less than|smallest)\D{0,20}\d+")


def matches(expected, line: str, ctx: dict[str, str]) -> bool:
    if isinstance(expected, str):
        return expected.format(**ctx) in line
    return expected.check(line, ctx)


# --------------------------------------------------------------------------------------------
# The table


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    setup: str | None  # the cli_inputs entry the case is about; copied into {tmp} as {own}
    expect: tuple = ()  # substrings (templates), Re or AtLine: all must be in the one error line
    unchanged: tuple[str, ...] = ()  # more paths (templates) whose contents must not change
    warnings_ok: bool = False  # other stderr lines (warnings) may come before the error line
    usage_ok: bool = False  # an argparse `choices` error: its usage block is allowed; exit status 2


def flags(base: dict[str, str | None], changes: dict[str, str | None], tail: tuple[str, ...] = ()) -> tuple[str, ...]:
    """``base`` with ``changes`` applied (None removes a flag); a negative value is written --flag=-x."""
    merged = {**base, **changes}
    out: list[str] = []
    for flag, value in merged.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            out += [flag, *value]
        elif value.startswith("-"):
            out.append(f"{flag}={value}")
        else:
            out += [flag, value]
    return (*out, *tail)


PRETRAIN = {"--corpus": "{corpus}", "--tokenizer": "{tok}", "--out": "{tmp}/run", "--preset": "tiny",
            "--seq-len": "32", "--batch-size": "4", "--max-steps": "2", "--warmup-steps": "1",
            "--save-every": "2", "--eval-every": "2", "--log-every": "1", "--eval-instances": "8",
            "--workers": "1"}
PREPARE = {"--corpus": "{corpus}", "--tokenizer": "{tok}", "--out": "{tmp}/data", "--seq-len": "32",
           "--workers": "1"}
TOKENIZER = {"--input": "{corpus}", "--vocab-size": "60", "--out": "{tmp}/vocab"}
FINETUNE = {"--task": "classify", "--model": "{pt_model}", "--train": "{train_jsonl}", "--dev": "{dev_jsonl}",
            "--out": "{tmp}/ft", "--epochs": "1", "--batch-size": "8", "--max-length": "32"}
QA = {**FINETUNE, "--task": "qa", "--train": "{squad}", "--dev": "{squad}", "--out": "{tmp}/qa",
      "--batch-size": "4", "--doc-stride": "8", "--max-query-length": "8"}
TAG = {**FINETUNE, "--task": "tag", "--train": "{conll}", "--dev": "{conll}", "--out": "{tmp}/tag"}
EVALUATE = {"--model": "{clf}", "--data": "{dev_jsonl}", "--max-length": "32"}
PREDICT = {"--model": "{clf}", "--input": "{lines_txt}", "--output": "{tmp}/predictions.jsonl"}
ENCODE = {"--model": "{pt_model}", "--input": "{lines_txt}", "--output": "{tmp}/vectors.jsonl"}
FILL_MASK = {"--model": "{pt_model}", "--top-k": "3"}
MASKED = "the cat [MASK] over the tree ."


def pretrain(**changes) -> tuple[str, ...]:
    return ("pretrain", *flags(PRETRAIN, {f"--{k.replace('_', '-')}": v for k, v in changes.items()},
                               ("--no-progress",)))


def prepare(changes: dict) -> tuple[str, ...]:
    return ("data", "prepare", *flags(PREPARE, changes))


def tokenizer_train(changes: dict) -> tuple[str, ...]:
    return ("tokenizer", "train", *flags(TOKENIZER, changes))


def finetune(changes: dict, base: dict = FINETUNE, tail: tuple[str, ...] = ()) -> tuple[str, ...]:
    return ("finetune", *flags(base, changes, (*tail, "--no-progress")))


def evaluate(changes: dict) -> tuple[str, ...]:
    return ("evaluate", *flags(EVALUATE, changes))


def predict(changes: dict) -> tuple[str, ...]:
    return ("predict", *flags(PREDICT, changes))


def encode(changes: dict) -> tuple[str, ...]:
    return ("encode", *flags(ENCODE, changes))


def fill_mask(changes: dict, text: str = MASKED) -> tuple[str, ...]:
    return ("fill-mask", *flags(FILL_MASK, changes), text)


C = Case
CASES = [
    # --- pretrain: flag values (checked before the corpus is read: no run directory appears) ---
    C("pretrain-batch-size-0", pretrain(batch_size="0"), None, ("--batch-size",)),
    C("pretrain-grad-accum-0", pretrain(grad_accum="0"), None, ("--grad-accum",)),
    C("pretrain-max-steps-0", pretrain(max_steps="0"), None, ("--max-steps",)),
    C("pretrain-save-every-0", pretrain(save_every="0"), None, ("--save-every",)),
    C("pretrain-eval-every-0", pretrain(eval_every="0"), None, ("--eval-every",)),
    C("pretrain-log-every-0", pretrain(log_every="0"), None, ("--log-every",)),
    C("pretrain-keep-last-0", pretrain(keep_last="0"), None, ("--keep-last",)),
    C("pretrain-seq-len-0", pretrain(seq_len="0"), None, ("--seq-len",)),
    C("pretrain-seq-len-5-too-short", pretrain(seq_len="5"), None, ("--seq-len", MINIMUM)),
    C("pretrain-seq-len-beyond-positions", pretrain(seq_len="1024", arch="bert"), None, ("--seq-len", "512")),
    C("pretrain-vocab-size-0", pretrain(tokenizer=None, vocab_size="0"), None, ("--vocab-size",)),
    C("pretrain-workers-negative", pretrain(workers="-1"), None, ("--workers",)),
    C("pretrain-lr-negative", pretrain(lr="-0.0001"), None, ("--lr",)),
    C("pretrain-warmup-steps-negative", pretrain(warmup_steps="-1"), None, ("--warmup-steps",)),
    C("pretrain-clip-norm-negative", pretrain(clip_norm="-1"), None, ("--clip-norm",)),
    C("pretrain-dupe-factor-0", pretrain(dupe_factor="0"), None, ("--dupe-factor",)),
    C("pretrain-dropout-1.5", pretrain(dropout="1.5"), None, ("--dropout",)),
    C("pretrain-masked-lm-prob-0", pretrain(masked_lm_prob="0"), None, ("--masked-lm-prob",)),
    C("pretrain-masked-lm-prob-1.5", pretrain(masked_lm_prob="1.5"), None, ("--masked-lm-prob",)),
    C("pretrain-max-predictions-per-seq-0", pretrain(max_predictions_per_seq="0"), None,
      ("--max-predictions-per-seq",)),
    C("pretrain-eval-fraction-1", pretrain(eval_fraction="1"), None, ("--eval-fraction",)),
    C("pretrain-short-seq-prob-negative", pretrain(short_seq_prob="-0.1"), None, ("--short-seq-prob",)),
    C("pretrain-format-unknown", pretrain(format="docx"), None, ("--format", "docx")),
    C("pretrain-preset-unknown", pretrain(preset="huge"), None, ("--preset",), usage_ok=True),
    C("pretrain-recipe-unknown", pretrain(recipe="fast"), None, ("--recipe", "fast"), usage_ok=True),
    # --- pretrain: paths --------------------------------------------------------------------
    C("pretrain-corpus-is-a-directory", pretrain(corpus="{corpus_dir}"), "corpus_dir",
      ("--corpus", "{corpus_dir}"), unchanged=("{corpus_dir}",)),
    C("pretrain-corpus-missing", pretrain(corpus="{tmp}/missing.txt"), None, ("--corpus", "missing.txt")),
    C("pretrain-corpus-empty", pretrain(corpus="{empty_txt}"), "empty_txt", ("{empty_txt}",)),
    C("pretrain-corpus-binary", pretrain(corpus="{binary}"), "binary", ("{binary}",)),
    C("pretrain-corpus-parquet-without-text-column", pretrain(corpus="{no_text_parquet}"), "no_text_parquet",
      ("{no_text_parquet}", "no column 'text'", "sentence, label", "--text-field")),
    C("pretrain-model-config-is-a-directory", pretrain(model_config="{config_dir}"), "config_dir",
      ("--model-config", "{config_dir}")),
    C("pretrain-model-config-truncated-json", pretrain(model_config="{bad_config_json}"), "bad_config_json",
      ("{bad_config_json}",)),
    C("pretrain-model-config-heads-do-not-divide-hidden", pretrain(model_config="{heads_config_json}"),
      "heads_config_json",
      ("{heads_config_json}", "num_attention_heads")),
    C("pretrain-out-is-an-existing-file", pretrain(out="{own}"), "existing_file", ("--out", "{own}")),
    C("pretrain-init-from-not-a-model", pretrain(init_from="{not_model_dir}"), "not_model_dir",
      ("--init-from", "{not_model_dir}")),
    C("pretrain-tokenizer-without-vocab", pretrain(tokenizer="{no_vocab_tok}"), "no_vocab_tok",
      ("--tokenizer", "{no_vocab_tok}", "vocab.txt")),
    C("pretrain-tokenizer-missing", pretrain(tokenizer="{tmp}/missing-tok"), None, ("--tokenizer", "missing-tok")),
    # --- pretrain: resuming a finished run with other settings (the run must be left as it was) ---
    C("pretrain-resume-changed-lr", pretrain(out="{own}", lr="0.002"), "run", ("--lr", "0.001", "0.002")),
    C("pretrain-resume-changed-batch-size", pretrain(out="{own}", batch_size="8"), "run", ("--batch-size",)),
    C("pretrain-resume-changed-preset", pretrain(out="{own}", preset="mini"), "run", ("--preset",)),
    # --- data prepare ------------------------------------------------------------------------
    C("data-prepare-seq-len-0", prepare({"--seq-len": "0"}), None, ("--seq-len",)),
    C("data-prepare-dupe-factor-0", prepare({"--dupe-factor": "0"}), None, ("--dupe-factor",)),
    C("data-prepare-eval-fraction-1", prepare({"--eval-fraction": "1"}), None, ("--eval-fraction",)),
    C("data-prepare-short-seq-prob-1.5", prepare({"--short-seq-prob": "1.5"}), None, ("--short-seq-prob",)),
    C("data-prepare-workers-negative", prepare({"--workers": "-1"}), None, ("--workers",)),
    C("data-prepare-format-unknown", prepare({"--format": "docx"}), None, ("--format", "docx")),
    C("data-prepare-corpus-is-a-directory", prepare({"--corpus": "{corpus_dir}"}), "corpus_dir",
      ("--corpus", "{corpus_dir}")),
    C("data-prepare-corpus-parquet-cut-short", prepare({"--corpus": "{cut_parquet}"}), "cut_parquet",
      ("{cut_parquet}", "damaged or cut short")),
    C("data-prepare-tokenizer-without-vocab", prepare({"--tokenizer": "{no_vocab_tok}"}), "no_vocab_tok",
      ("--tokenizer", "{no_vocab_tok}", "vocab.txt")),
    C("data-prepare-out-is-an-existing-file", prepare({"--out": "{own}"}), "existing_file", ("--out", "{own}")),
    # --- data fetch, demo ----------------------------------------------------------------------
    C("data-fetch-unknown-name", ("data", "fetch", "wikipedia-full"), None,
      ("wikipedia-full", Re(r"--list|minilm"))),
    C("demo-max-steps-0", ("demo", "--out", "{tmp}/demo", "--max-steps", "0"), None, ("--max-steps",)),
    # --- tokenizer train -----------------------------------------------------------------------
    C("tokenizer-train-vocab-size-0", tokenizer_train({"--vocab-size": "0"}), None, ("--vocab-size",)),
    C("tokenizer-train-input-is-a-directory", tokenizer_train({"--input": "{corpus_dir}"}), "corpus_dir",
      ("--input", "{corpus_dir}")),
    C("tokenizer-train-input-missing", tokenizer_train({"--input": "{tmp}/missing.txt"}), None,
      ("--input", "missing.txt")),
    C("tokenizer-train-input-empty", tokenizer_train({"--input": "{empty_txt}"}), "empty_txt", ("{empty_txt}",)),
    C("tokenizer-train-format-unknown", tokenizer_train({"--format": "docx"}), None, ("--format", "docx")),
    C("tokenizer-train-out-is-an-existing-file", tokenizer_train({"--out": "{own}"}), "existing_file",
      ("--out", "{own}")),
    # --- fill-mask ------------------------------------------------------------------------------
    C("fill-mask-top-k-0", fill_mask({"--top-k": "0"}), None, ("--top-k",)),
    C("fill-mask-top-k-negative", fill_mask({"--top-k": "-1"}), None, ("--top-k",)),
    C("fill-mask-top-k-beyond-vocabulary", fill_mask({"--top-k": "100000"}), None, ("--top-k", "{vocab_size}")),
    C("fill-mask-text-without-mask", fill_mask({}, "the cat runs over the tree ."), None, ("[MASK]",)),
    C("fill-mask-untrained-mlm-head", fill_mask({"--model": "{base_model}"}), "base_model", ("{base_model}",)),
    C("fill-mask-model-missing", fill_mask({"--model": "{tmp}/missing-model"}), None, ("--model", "missing-model")),
    C("fill-mask-model-is-a-file", fill_mask({"--model": "{corpus}"}), "corpus", ("--model", "{corpus}")),
    C("fill-mask-model-without-config", fill_mask({"--model": "{no_config_model}"}), "no_config_model",
      ("{no_config_model}", "config.json")),
    C("fill-mask-model-without-weights", fill_mask({"--model": "{no_weights_model}"}), "no_weights_model",
      ("{no_weights_model}", "model.safetensors")),
    C("fill-mask-config-truncated-json", fill_mask({"--model": "{bad_config_model}"}), "bad_config_model",
      ("{bad_config_model}/config.json",)),
    C("fill-mask-safetensors-truncated", fill_mask({"--model": "{bad_weights_model}"}), "bad_weights_model",
      ("{bad_weights_model}/model.safetensors",)),
    # --- encode --------------------------------------------------------------------------------
    C("encode-input-empty", encode({"--input": "{empty_txt}"}), "empty_txt", ("{empty_txt}",)),
    C("encode-input-parquet-without-text-column", encode({"--input": "{no_text_parquet}"}), "no_text_parquet",
      ("{no_text_parquet}", "no column 'text'", "sentence, label", "--text-field")),
    C("encode-input-parquet-cut-short", encode({"--input": "{cut_parquet}"}), "cut_parquet",
      ("{cut_parquet}", "damaged or cut short")),
    C("encode-input-is-a-directory", encode({"--input": "{corpus_dir}"}), "corpus_dir", ("--input", "{corpus_dir}")),
    C("encode-input-missing", encode({"--input": "{tmp}/missing.txt"}), None, ("--input", "missing.txt")),
    C("encode-input-not-utf8", encode({"--input": "{latin1_txt}"}), "latin1_txt", (AtLine("{latin1_txt}", 2),)),
    C("encode-pooling-unknown", encode({"--pooling": "max"}), None, ("--pooling",), usage_ok=True),
    C("encode-output-is-a-directory", encode({"--output": "{own}"}), "empty_dir", ("--output", "{own}")),
    C("encode-model-without-vocab", encode({"--model": "{no_vocab_model}"}), "no_vocab_model",
      ("{no_vocab_model}", "vocab.txt")),
    # --- finetune: flag values ----------------------------------------------------------------
    C("finetune-epochs-0", finetune({"--epochs": "0"}), None, ("--epochs",)),
    C("finetune-batch-size-0", finetune({"--batch-size": "0"}), None, ("--batch-size",)),
    C("finetune-lr-negative", finetune({"--lr": "-0.001"}), None, ("--lr",)),
    C("finetune-warmup-1.5", finetune({"--warmup": "1.5"}), None, ("--warmup",)),
    C("finetune-warmup-negative", finetune({"--warmup": "-0.1"}), None, ("--warmup",)),
    C("finetune-feature-cache-gb-negative", finetune({"--feature-cache-gb": "-1"}), None,
      ("--feature-cache-gb", MINIMUM)),
    C("finetune-dropout-1.5", finetune({"--dropout": "1.5"}), None, ("--dropout",)),
    C("finetune-seeds-negative", finetune({"--seeds": ("1", "-2")}), None, ("--seeds",)),
    C("finetune-max-train-examples-0", finetune({"--max-train-examples": "0"}), None, ("--max-train-examples",)),
    C("finetune-max-length-2", finetune({"--max-length": "2"}), None, ("--max-length",)),
    C("finetune-max-length-beyond-positions", finetune({"--max-length": "1024"}), None, ("--max-length", "512")),
    C("finetune-format-unknown", finetune({"--format": "docx"}), None, ("--format", "docx")),
    C("finetune-task-unknown", finetune({"--task": "summarize"}), None, ("--task",), usage_ok=True),
    C("finetune-scheme-unknown", finetune({"--scheme": "BIOES"}, TAG), None, ("--scheme",), usage_ok=True),
    C("finetune-qa-doc-stride-0", finetune({"--doc-stride": "0"}, QA), None, ("--doc-stride",)),
    C("finetune-qa-max-query-length-0", finetune({"--max-query-length": "0"}, QA), None, ("--max-query-length",)),
    C("finetune-qa-n-best-0", finetune({"--n-best": "0"}, QA), None, ("--n-best",)),
    C("finetune-qa-max-answer-length-0", finetune({"--max-answer-length": "0"}, QA), None,
      ("--max-answer-length",)),
    C("finetune-concat-last-4-on-2-layers", finetune({}, QA, ("--freeze-encoder",)), None,
      ("--features", "needs 4 layers, the model has 2")),
    # --- finetune: paths, data, models ---------------------------------------------------------
    C("finetune-train-is-a-directory", finetune({"--train": "{corpus_dir}"}), "corpus_dir",
      ("--train", "{corpus_dir}")),
    C("finetune-dev-missing", finetune({"--dev": "{tmp}/missing-dev.jsonl"}), None, ("--dev", "missing-dev.jsonl")),
    C("finetune-test-missing", finetune({"--test": "{tmp}/missing-test.jsonl"}), None,
      ("--test", "missing-test.jsonl")),
    C("finetune-out-is-an-existing-file", finetune({"--out": "{own}"}), "existing_file", ("--out", "{own}")),
    C("finetune-model-missing", finetune({"--model": "{tmp}/missing-model"}), None, ("--model", "missing-model")),
    C("finetune-model-is-a-tokenizer-dir", finetune({"--model": "{tok}"}), "tok", ("{tok}", "config.json")),
    C("finetune-model-without-weights", finetune({"--model": "{no_weights_model}"}), "no_weights_model",
      ("{no_weights_model}", "model.safetensors")),
    C("finetune-label-field-missing", finetune({"--label-field": "sentiment"}), None,
      (AtLine("{train_jsonl}", 1), "sentiment")),
    C("finetune-dev-unseen-label", finetune({"--dev": "{unseen_jsonl}"}), "unseen_jsonl", ("{unseen_jsonl}", "meh")),
    C("finetune-train-not-utf8", finetune({"--train": "{latin1_csv}"}), "latin1_csv",
      (AtLine("{latin1_csv}", 3), "--encoding")),
    C("finetune-train-malformed-json-line-3", finetune({"--train": "{bad_json3}"}), "bad_json3",
      (AtLine("{bad_json3}", 3),)),
    C("finetune-head-has-other-label-count", finetune({"--model": "{clf}", "--train": "{three_jsonl}",
                                                       "--dev": "{three_jsonl}"}), "clf",
      ("{clf}", "--ignore-mismatched-sizes")),
    C("finetune-train-parquet-without-text-column", finetune({"--train": "{no_text_parquet}",
                                                                "--dev": "{dev_parquet}"}), "no_text_parquet",
      ("{no_text_parquet}", "no column 'text'", "sentence, label", "--text-field")),
    C("finetune-dev-parquet-cut-short", finetune({"--train": "{train_parquet}", "--dev": "{cut_parquet}"}),
      "cut_parquet", ("{cut_parquet}", "damaged or cut short")),
    C("finetune-tag-reads-classification-jsonl", finetune({"--train": "{train_jsonl}", "--dev": "{dev_jsonl}"}, TAG),
      "train_jsonl", (AtLine("{train_jsonl}", 1),)),
    # --- evaluate -------------------------------------------------------------------------------
    C("evaluate-data-unknown-labels", evaluate({"--data": "{unseen_jsonl}"}), "unseen_jsonl",
      ("{unseen_jsonl}", "meh")),
    C("evaluate-data-is-a-directory", evaluate({"--data": "{corpus_dir}"}), "corpus_dir", ("--data", "{corpus_dir}")),
    C("evaluate-data-missing", evaluate({"--data": "{tmp}/missing.jsonl"}), None, ("--data", "missing.jsonl")),
    C("evaluate-data-malformed-json-line-3", evaluate({"--data": "{bad_json3}"}), "bad_json3",
      (AtLine("{bad_json3}", 3),)),
    C("evaluate-data-not-utf8", evaluate({"--data": "{latin1_csv}"}), "latin1_csv",
      (AtLine("{latin1_csv}", 3), "--encoding")),
    C("evaluate-encoding-unknown", evaluate({"--encoding": "klingon"}), None, ("--encoding", "klingon")),
    C("evaluate-max-length-2", evaluate({"--max-length": "2"}), None, ("--max-length",)),
    C("evaluate-model-not-fine-tuned", evaluate({"--model": "{pt_model}"}), "pt_model", ("{pt_model}",)),
    C("evaluate-model-config-truncated-json", evaluate({"--model": "{bad_config_model}"}), "bad_config_model",
      ("{bad_config_model}/config.json",)),
    C("evaluate-output-is-a-directory", evaluate({"--output": "{own}"}), "empty_dir", ("--output", "{own}")),
    # --- predict --------------------------------------------------------------------------------
    C("predict-input-malformed-json-line-3", predict({"--input": "{bad_json3}"}), "bad_json3",
      (AtLine("{bad_json3}", 3),)),
    C("predict-input-missing-text-field", predict({"--input": "{wrong_field_jsonl}"}), "wrong_field_jsonl",
      (AtLine("{wrong_field_jsonl}", 1), "text")),
    C("predict-input-empty", predict({"--input": "{empty_txt}"}), "empty_txt", ("{empty_txt}",)),
    C("predict-input-parquet-without-text-column", predict({"--input": "{no_text_parquet}"}), "no_text_parquet",
      ("{no_text_parquet}", "row 1", "no column 'text'", "sentence, label")),
    C("predict-input-parquet-cut-short", predict({"--input": "{cut_parquet}"}), "cut_parquet",
      ("{cut_parquet}", "damaged or cut short")),
    C("predict-input-is-a-directory", predict({"--input": "{corpus_dir}"}), "corpus_dir", ("--input", "{corpus_dir}")),
    C("predict-input-not-utf8", predict({"--input": "{latin1_txt}"}), "latin1_txt", (AtLine("{latin1_txt}", 2),)),
    C("predict-output-is-a-directory", predict({"--output": "{own}"}), "empty_dir", ("--output", "{own}")),
    C("predict-model-missing", predict({"--model": "{tmp}/missing-model"}), None, ("--model", "missing-model")),
    # the models BERT is compared with, and the ablation variants
    C("pretrain-plm-from-a-bert-checkpoint", pretrain(objective="plm", init_from="{pt_model}"), "pt_model",
      ("--init-from", "bert", "plm")),
    C("pretrain-arch-contradicts-objective", pretrain(arch="elmo", objective="mlm"), None, ("--arch", "elmo")),
    C("pretrain-no-nsp-contradicts-objective", pretrain(no_nsp=None, objective="ltr") + ("--no-nsp",), None,
      ("--no-nsp", "ltr")),
    C("pretrain-mask-spans-with-ltr", pretrain(objective="ltr") + ("--mask-spans",), None, ("--mask-spans", "ltr")),
    C("pretrain-mask-mix-not-100", pretrain(mask_mix="80,20,10"), None, ("--mask-mix", "100")),
    C("pretrain-plm-k-0", pretrain(objective="plm", plm_k="0"), None, ("--plm-k",)),
    C("pretrain-plm-in-a-modernbert-size", pretrain(objective="plm", preset="modernbert-base"), None,
      ("--preset", "modernbert-base", "xlnet")),
    C("pretrain-electra-generator-wider", pretrain(objective="electra", generator_size="1.5"), None,
      ("--generator-size",)),
    C("pretrain-electra-roformer-odd-generator-heads", pretrain(arch="roformer", objective="electra",
                                                                generator_size="0.1"), None,
      ("--generator-size", "13", "even")),
    C("generate-on-a-masked-lm", ("generate", "--model", "{pt_model}", "the cat"), "pt_model",
      ("--model", "left-to-right")),
    C("finetune-features-without-freeze", finetune({"--features": "scalar-mix"}), None,
      ("--features", "--freeze-encoder")),
    C("ablate-unknown-variant", ("ablate", "--corpus", "{corpus}", "--task", "x=classify:{lines_txt},{lines_txt}",
                                 "--out", "{tmp}/study", "--variants", "gpt5"), None, ("--variants", "gpt5", "bert")),
    C("ablate-task-without-dev", ("ablate", "--corpus", "{corpus}", "--task", "x=classify:{lines_txt}", "--out",
                                  "{tmp}/study"), None, ("--task", "no dev file")),
    C("ablate-steps-0", ("ablate", "--corpus", "{corpus}", "--task", "x=classify:{lines_txt},{lines_txt}", "--out",
                         "{tmp}/study", "--steps", "0"), None, ("--steps",)),
]

# Valid commands, one per family the cases vary: each must succeed (exit 0).
BASELINES = {
    "pretrain": pretrain(),
    "data-prepare": prepare({}),
    "data-fetch-list": ("data", "fetch", "--list"),
    "tokenizer-train": tokenizer_train({}),
    "fill-mask": fill_mask({}),
    "encode": encode({}),
    "finetune-classify": finetune({}),
    "finetune-classify-parquet": finetune({"--train": "{train_parquet}", "--dev": "{dev_parquet}"}),
    "finetune-qa": finetune({}, QA),
    "finetune-tag": finetune({}, TAG),
    "evaluate": evaluate({}),
    "predict": predict({}),
}

# Commands that succeed but must say something (explicit warnings instead of silence).
LATIN1 = {
    "evaluate-csv": (evaluate({"--data": "{latin1_csv}", "--encoding": "latin-1"}), "latin1_csv"),
    "evaluate-jsonl": (evaluate({"--data": "{latin1_jsonl}", "--encoding": "latin-1"}), "latin1_jsonl"),
    "finetune-csv": (finetune({"--train": "{latin1_csv}", "--dev": "{latin1_csv}", "--encoding": "latin-1"}),
                     "latin1_csv"),
}
NO_HELD_OUT = pretrain(eval_fraction="0")
VOCAB_TOO_BIG = tokenizer_train({"--vocab-size": "5000"})
DEBUG_CASE = "fill-mask-text-without-mask"


# --------------------------------------------------------------------------------------------
# Running everything once


def snapshot(path: Path) -> dict[str, str] | None:
    """Contents of a file or directory tree (relative path -> sha256, or "dir"); None if absent."""
    if not path.exists():
        return None
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    tree = {}
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        tree[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return tree


@dataclass
class Run:
    """One command, ready to run in its own directory, and what happened."""

    key: str
    argv: list[str]
    cwd: Path
    ctx: dict[str, str]
    extra_env: dict[str, str] = field(default_factory=dict)
    watched: dict[str, dict | None] = field(default_factory=dict)  # path -> snapshot before
    result: object = None
    after: dict[str, dict | None] = field(default_factory=dict)


def render(template: str, ctx: dict[str, str]) -> str:
    return template.format(**ctx)


@pytest.fixture(scope="module")
def pretrained_run(cli_inputs, bertforge_cli, tmp_path_factory) -> Path:
    """A finished 2-step pre-training run made with the baseline flags (the resume cases reuse it)."""
    home = tmp_path_factory.mktemp("finished-run")
    ctx = {k: str(v) for k, v in cli_inputs.items()} | {"tmp": str(home)}
    result = bertforge_cli([render(a, ctx) for a in pretrain()], home)
    assert result.returncode == 0, result.describe()
    assert (home / "run" / "model" / "config.json").is_file(), result.describe()
    return home / "run"


def _run_key(item) -> str | None:
    """Which planned command a collected test of this module checks."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return {"test_bad_input_is_one_clear_line": lambda: params["case"].id,
            "test_baseline_command_succeeds": lambda: f"baseline-{params['name']}",
            "test_bertforge_debug_shows_the_traceback": lambda: "debug",
            "test_encoding_flag_is_honoured": lambda: f"latin1-{params['name']}",
            "test_pretraining_without_held_out_set_says_so_and_where_the_model_is": lambda: "no-held-out",
            "test_vocabulary_size_the_corpus_cannot_reach_says_so": lambda: "vocab-too-big",
            }.get(getattr(item, "originalname", ""), lambda: None)()


@pytest.fixture(scope="module")
def runs(request, cli_inputs, bertforge_cli, tmp_path_factory) -> dict[str, Run]:
    """Every selected command, run once (two at a time): ``-k`` selects what runs, not just what is checked."""
    wanted = {_run_key(item) for item in request.session.items if item.module is request.module}
    inputs = dict(cli_inputs)
    if any(c.setup == "run" and c.id in wanted for c in CASES):
        inputs["run"] = request.getfixturevalue("pretrained_run")
    vocab_size = len((cli_inputs["tok"] / "vocab.txt").read_text(encoding="utf-8").splitlines())
    root = tmp_path_factory.mktemp("cli-cases")
    planned: list[Run] = []

    def plan(key: str, argv, setup: str | None = None, watch=(), extra_env=None) -> Run | None:
        if key not in wanted:
            return None
        cwd = root / key
        cwd.mkdir()
        ctx = {k: str(v) for k, v in inputs.items()} | {"tmp": str(cwd), "vocab_size": str(vocab_size)}
        if setup is not None:
            src, own = inputs[setup], cwd / inputs[setup].name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, own)
            ctx["own"] = str(own)
        run = Run(key, [render(a, ctx) for a in argv], cwd, ctx, dict(extra_env or {}))
        for p in (str(cwd), *(render(w, ctx) for w in watch)):
            run.watched[p] = snapshot(Path(p))
        planned.append(run)
        return run

    for case in CASES:
        plan(case.id, case.argv, case.setup, case.unchanged)
    for name, argv in BASELINES.items():
        plan(f"baseline-{name}", argv)
    for name, (argv, _) in LATIN1.items():
        plan(f"latin1-{name}", argv)
    plan("no-held-out", NO_HELD_OUT)
    plan("vocab-too-big", VOCAB_TOO_BIG)
    debug = next(c for c in CASES if c.id == DEBUG_CASE)
    plan("debug", debug.argv, debug.setup, extra_env={"BERTFORGE_DEBUG": "1"})

    def execute(run: Run) -> None:
        run.result = bertforge_cli(run.argv, run.cwd, run.extra_env)
        run.after = {p: snapshot(Path(p)) for p in run.watched}

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(execute, planned))
    return {run.key: run for run in planned}


# --------------------------------------------------------------------------------------------
# The checks


def _is_usage(line: str) -> bool:
    """A line of argparse's usage block (printed before its own error line)."""
    return line.startswith("usage:") or line.startswith(" ")


def _is_warning(line: str) -> bool:
    """A warning line, e.g. ``bertforge: warning: ...`` or ``bertforge pretrain: warning: ...``."""
    return re.match(r"bertforge[^:]*: warning\b", line) is not None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line(case: Case, runs):
    run = runs[case.id]
    r = run.result
    where = r.describe()
    assert not r.timed_out, f"no answer within the timeout\n{where}"
    assert r.returncode != 0, f"succeeded (exit 0) instead of refusing\n{where}"
    assert r.returncode > 0, f"killed by signal {-r.returncode}\n{where}"
    assert "Traceback" not in r.stdout + r.stderr, f"traceback without BERTFORGE_DEBUG\n{where}"
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("bertforge") and not _is_warning(line)]
    assert len(errors) == 1, (f"expected exactly one stderr line starting 'bertforge' (warnings aside), "
                              f"got {len(errors)}\n{where}")
    line = errors[0]
    assert lines[-1] == line, f"the error line is not the last thing on stderr\n{where}"
    others = [x for x in lines[:-1] if not (case.usage_ok and _is_usage(x))]
    assert case.warnings_ok or not others, f"unexpected stderr lines before the error: {others}\n{where}"
    missing = [str(e) for e in case.expect if not matches(e, line, run.ctx)]
    assert not missing, f"the error line does not name {missing}:\n  {line}\n{where}"
    assert not r.stdout.strip(), f"a failing command printed results (validate before working)\n{where}"
    for path, before in run.watched.items():
        after = run.after[path]
        if before != after:
            added = sorted(set(after or {}) - set(before or {}))
            changed = sorted(k for k in set(before or {}) & set(after or {}) if before[k] != after[k])
            removed = sorted(set(before or {}) - set(after or {}))
            raise AssertionError(f"{path} changed on failure: added {added[:8]}, changed {changed[:8]}, "
                                 f"removed {removed[:8]}\n{where}")
    assert r.returncode == 2, f"expected exit status 2 (bertforge.errors: expected failures exit 2)\n{where}"


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_command_succeeds(name, runs):
    """The valid command each case departs from: proves the cases fail for their one bad thing only."""
    r = runs[f"baseline-{name}"].result
    assert r.returncode == 0, r.describe()
    assert "Traceback" not in r.stderr, r.describe()


def test_bertforge_debug_shows_the_traceback(runs):
    r = runs["debug"].result
    assert not r.timed_out and r.returncode not in (0, None), r.describe()
    assert "Traceback (most recent call last)" in r.stderr, f"BERTFORGE_DEBUG=1 shows no traceback\n{r.describe()}"


@pytest.mark.parametrize("name", list(LATIN1))
def test_encoding_flag_is_honoured(name, runs, cli_inputs):
    """--encoding latin-1 reads a Latin-1 CSV/JSONL file (the same files fail as UTF-8, above)."""
    run = runs[f"latin1-{name}"]
    r = run.result
    assert r.returncode == 0, r.describe()
    if name.startswith("evaluate"):
        result = json.loads(r.stdout)
        path = cli_inputs[LATIN1[name][1]]
        n_rows = len([x for x in path.read_bytes().decode("latin-1").splitlines()[1 if path.suffix == ".csv" else 0:]
                      if x.strip()])
        assert result["examples"] == n_rows, r.describe()


def test_pretraining_without_held_out_set_says_so_and_where_the_model_is(runs):
    run = runs["no-held-out"]
    r = run.result
    assert r.returncode == 0, r.describe()
    assert (Path(run.ctx["tmp"]) / "run" / "model" / "config.json").is_file(), r.describe()
    said = r.stdout + r.stderr
    assert re.search(r"(?i)held[- ]out|--eval-fraction", said), f"no word about the missing held-out set\n{r.describe()}"
    assert f"{run.ctx['tmp']}/run/model" in said, f"does not print where the model is\n{r.describe()}"


def test_vocabulary_size_the_corpus_cannot_reach_says_so(runs):
    run = runs["vocab-too-big"]
    r = run.result
    assert r.returncode == 0, r.describe()
    got = len((Path(run.ctx["tmp"]) / "vocab" / "vocab.txt").read_text(encoding="utf-8").splitlines())
    assert got < 5000
    said = r.stdout + r.stderr
    assert re.search(r"\b5,?000\b", said) and re.search(rf"\b{got:,}\b|\b{got}\b", said), \
        f"does not say that 5000 pieces were asked and {got} learned\n{r.describe()}"
