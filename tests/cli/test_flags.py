"""Every documented flag shows its effect: each test here runs a flag through the real parser
(``bertforge.cli.main`` in-process, or ``build_parser`` into the command's settings) and checks what it
changes against the run without it, so a flag that parsed but was ignored fails. ``FLAG_TESTS`` names the
test of each flag tested here, ``ELSEWHERE`` the test file of each flag tested with its command's own
tests; ``test_every_documented_flag_has_a_test`` fails when a new flag has neither.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bertforge.cli import build_parser, main
from bertforge.options import from_namespace

# --- the table --------------------------------------------------------------------------------

FLAG_TESTS = {  # "command --flag": the test in this file that fails when the flag is ignored
    "--version": "test_version_is_the_package_version",
    "pretrain --mask-mix": "test_pretrain_mask_mix_sets_the_shares_of_mask_random_and_kept",
    "pretrain --mask-spans": "test_pretrain_mask_spans_masks_runs_of_words",
    "pretrain --masked-lm-prob": "test_pretrain_masked_lm_prob_and_max_predictions_per_seq",
    "pretrain --max-predictions-per-seq": "test_pretrain_masked_lm_prob_and_max_predictions_per_seq",
    "pretrain --plm-k": "test_pretrain_plm_k_predicts_the_last_kth_of_each_order",
    "pretrain --arch": "test_pretrain_arch_picks_the_family_and_its_objective",
    "pretrain --short-seq-prob": "test_short_seq_prob_makes_shorter_instances",
    "data prepare --short-seq-prob": "test_short_seq_prob_makes_shorter_instances",
    **{f"{c} --text-field": "test_corpus_text_field_names_the_column" for c in (
        "pretrain", "data prepare", "tokenizer train")},
    "pretrain --weight-decay": "test_pretrain_weight_decay_clip_norm_and_keep_last",
    "pretrain --clip-norm": "test_pretrain_weight_decay_clip_norm_and_keep_last",
    "pretrain --keep-last": "test_pretrain_weight_decay_clip_norm_and_keep_last",
    "finetune --weight-decay": "test_finetune_optimiser_flags_reach_the_optimiser",
    "finetune --clip-norm": "test_finetune_optimiser_flags_reach_the_optimiser",
    "finetune --eval-batch-size": "test_finetune_optimiser_flags_reach_the_optimiser",
    "finetune --group-by-length": "test_finetune_group_by_length_batches_similar_lengths",
    "finetune --head-bilstm": "test_finetune_head_bilstm_saves_a_bilstm_head",
    "generate --max-new-tokens": "test_generate_max_new_tokens_and_temperature",
    "generate --temperature": "test_generate_max_new_tokens_and_temperature",
    "serve --max-inputs": "test_serve_input_limits_truncate_and_timeout",
    "serve --max-input-tokens": "test_serve_input_limits_truncate_and_timeout",
    "serve --truncate": "test_serve_input_limits_truncate_and_timeout",
    "serve --timeout": "test_serve_input_limits_truncate_and_timeout",
    "serve --max-batch-tokens": "test_serve_max_batch_tokens_splits_batches",
    "serve --host": "test_serve_host_and_log_level",
    "serve --log-level": "test_serve_host_and_log_level",
}
# The data flags are one DataOptions in finetune, evaluate and predict (test_data_flags_are_one_set_of_options);
# their effects are shown through predict and evaluate.
DATA_TESTS = {
    "--text-field": "test_text_pair_and_label_fields_name_the_columns",
    "--text-pair-field": "test_text_pair_and_label_fields_name_the_columns",
    "--label-field": "test_text_pair_and_label_fields_name_the_columns",
    "--null-threshold": "test_null_threshold_turns_answers_into_no_answer",
    "--max-answer-length": "test_qa_max_answer_length_bounds_the_answers",
    "--n-best": "test_qa_n_best_bounds_the_candidates_and_never_changes_the_answer",
    "--max-query-length": "test_max_query_length_cuts_the_question",
}
for _command in ("finetune", "evaluate", "predict"):
    FLAG_TESTS.update({f"{_command} {flag}": test for flag, test in DATA_TESTS.items()})

ELSEWHERE = {  # "command --flag": the test file that runs the flag and checks its effect
    "data fetch --list": "tests/cli/test_commands.py",
    "pretrain --recipe": "tests/train/test_recipe.py",
    **{f"data prepare {f}": "tests/cli/test_commands.py" for f in (
        "--corpus", "--tokenizer", "--out", "--seq-len", "--dupe-factor", "--no-nsp", "--eval-fraction", "--seed",
        "--format")},
    "data prepare --workers": "tests/data/test_prepare.py",
    "demo --out": "tests/test_demo.py",
    "demo --max-steps": "tests/test_demo.py",
    "demo --minilm": "tests/cli/test_commands.py",
    **{f"encode {f}": "tests/cli/test_commands.py" for f in (
        "--model", "--input", "--text-field", "--output", "--pooling", "--normalize", "--max-length")},
    **{f"pretrain {f}": "tests/cli/test_commands.py" for f in (
        "--batch-size", "--grad-accum", "--lr", "--log-every", "--no-progress", "--corpus", "--out", "--format",
        "--tokenizer", "--vocab-size", "--no-lowercase", "--preset", "--model-config", "--init-from",
        "--objective",
        "--no-nsp", "--whole-word-mask", "--static-masks", "--seq-len", "--dupe-factor", "--eval-fraction",
        "--max-steps", "--warmup-steps", "--schedule", "--optimizer", "--seed", "--save-every", "--eval-every")},
    "pretrain --amp": "tests/test_cuda.py",
    "pretrain --compile": "tests/train/test_finetune.py",
    "pretrain --dropout": "tests/train/test_pretrain.py",
    "pretrain --workers": "tests/train/test_pretrain.py",
    "pretrain --eval-instances": "tests/train/test_pretrain.py",
    **{f"tokenizer train {f}": "tests/cli/test_commands.py" for f in (
        "--input", "--vocab-size", "--out", "--no-lowercase", "--format")},
    **{f"fill-mask {f}": "tests/cli/test_commands.py" for f in ("--model", "--top-k", "--allow-untrained-head")},
    **{f"generate {f}": "tests/cli/test_commands.py" for f in ("--model", "--top-k", "--seed")},
    **{f"finetune {f}": "tests/cli/test_commands.py" for f in (
        "--batch-size", "--grad-accum", "--lr", "--log-every", "--no-progress", "--task", "--model", "--train",
        "--dev", "--out", "--test", "--epochs", "--warmup", "--seeds", "--max-train-examples", "--freeze-encoder",
        "--features", "--format", "--encoding", "--scheme", "--max-length", "--doc-stride")},
    "finetune --amp": "tests/test_cuda.py",
    "finetune --compile": "tests/train/test_finetune.py",
    "finetune --dropout": "tests/train/test_finetune.py",
    "finetune --ignore-mismatched-sizes": "tests/train/test_finetune.py",
    **{f"finetune {f}": "tests/train/test_finetune_resume.py" for f in (
        "--optimizer", "--schedule", "--save-every", "--keep-last")},
    **{f"{c} {f}": "tests/cli/test_commands.py" for c in ("evaluate", "predict") for f in (
        "--model", "--format", "--encoding", "--scheme", "--max-length", "--doc-stride")},
    "evaluate --data": "tests/cli/test_commands.py",
    "evaluate --output": "tests/cli/test_commands.py",
    "predict --input": "tests/cli/test_commands.py",
    "predict --output": "tests/cli/test_commands.py",
    "predict --backend": "tests/export/test_cli.py",
    **{f"export onnx {f}": "tests/export/test_cli.py" for f in ("--model", "--out", "--quantize", "--opset")},
    **{f"serve {f}": "tests/serve/test_cli.py" for f in (
        "--model", "--port", "--backend", "--max-wait-ms", "--max-concurrent", "--api-key", "--loop-nice")},
    # written with the TensorFlow converter (its own helper's file): it must run each of these flags
    **{f"convert {f}": "tests/io/test_tf_checkpoint.py" for f in (
        "--to", "--out", "--config", "--vocab", "--task", "--cased", "--uncased")},
    "pretrain --generator-size": "tests/objectives/test_electra.py",
    "pretrain --max-flops": "tests/train/test_pretrain.py",
    "pretrain --warmup-share": "tests/train/test_recipe.py",
    "finetune --feature-cache-gb": "tests/train/test_finetune.py",
    "ablate --budget": "tests/ablation/test_protocol.py",
    "ablate --arch": "tests/ablation/test_study_arch.py",
    **{f"{c} --report-to": "tests/train/test_tensorboard.py" for c in ("pretrain", "finetune", "ablate", "glue")},
    **{f"{c} --config": "tests/cli/test_recipe_files.py" for c in ("pretrain", "finetune", "ablate", "glue")},
    "data prepare --segment-words": "tests/data/test_chinese_wwm.py",
    # the GLUE recipes' own tests (a folder: any file in it may run the flag)
    **{f"glue {f}": "tests/glue" for f in (
        "--amp", "--data", "--eval-batch-size", "--from-mnli", "--model", "--no-progress", "--out", "--recipe",
        "--seeds", "--set", "--tasks")},
    **{f"attention {f}": "tests/serve/test_cli.py" for f in ("--model", "--pair", "--out", "--layer", "--head")},
    **{f"ablate {f}": "tests/ablation/test_ablate.py" for f in (
        "--corpus", "--task", "--out", "--variants", "--no-progress", "--quick")},
}
FLAG_TESTS.update({f"ablate {flag}": "test_ablate_study_flags_reach_its_runs" for flag in (
    "--seeds", "--preset", "--steps", "--seq-len", "--batch-size", "--lr", "--warmup-steps", "--vocab-size", "--epochs",
    "--finetune-lr", "--feature-lr", "--finetune-batch-size", "--max-length", "--max-train-examples", "--seed")})

ROOT = Path(__file__).resolve().parents[2]


def documented_flags(parser: argparse.ArgumentParser | None = None, path: tuple[str, ...] = ()):
    """("command --flag", its action) for every flag of every command, as ``--help`` lists them."""
    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from documented_flags(sub, path + (name,))
        elif action.option_strings and action.dest != "help" and action.help is not argparse.SUPPRESS:
            yield " ".join(path + (max(action.option_strings, key=len),)), action


def test_every_documented_flag_has_a_test():
    flags = dict(documented_flags())
    missing = sorted(set(flags) - set(FLAG_TESTS) - set(ELSEWHERE))
    assert not missing, f"documented flags without a test (add one here, or name its file in ELSEWHERE): {missing}"
    stale = sorted((set(FLAG_TESTS) | set(ELSEWHERE)) - set(flags))
    assert not stale, f"entries for flags that no command has: {stale}"
    assert not set(FLAG_TESTS) & set(ELSEWHERE)
    for flag, test in FLAG_TESTS.items():
        assert callable(globals().get(test)), f"{flag}: no test named {test} in this file"
    def text(path: Path) -> str:
        return "".join(p.read_text() for p in sorted(path.rglob("*.py"))) if path.is_dir() else path.read_text()

    unused = [f"{key}: {file}" for key, file in ELSEWHERE.items()
              if key.split()[-1] not in (t := text(ROOT / file)) and f"{flags[key].dest}=" not in t]
    assert not unused, f"files that never pass the flag (nor set its field) they are said to test: {unused}"


def test_the_readme_command_line_section_lists_only_real_flags():
    """The README's "Command line" block names flags of the commands it shows; each of them exists."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Command line", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    known = {key.split()[-1] for key in dict(documented_flags())} | {"--help"}
    named = {word.strip("[]|,") for word in block.split() if word.startswith(("--", "[--"))}
    assert named and named <= known, sorted(named - known)


def test_version_is_the_package_version(capsys):
    from bertforge import __version__

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.strip() == f"bertforge {__version__}"


# --- helpers ----------------------------------------------------------------------------------

def settings_of(command: str, *argv: str):
    """The settings dataclass a command builds from these flags, through the real parser."""
    args = build_parser().parse_args([*command.split(), *argv])
    if command == "pretrain":
        from bertforge.train.settings import PretrainArgs
        return from_namespace(PretrainArgs, args)
    if command == "serve":
        from bertforge.serve.settings import ServeSettings
        return from_namespace(ServeSettings, args)
    from bertforge.data.options import DataOptions
    return from_namespace(DataOptions, args)


PRETRAIN = ["--corpus", "c.txt", "--out", "run", "--recipe", "google"]  # Google's defaults, which these tests count


@pytest.fixture(scope="module")
def tok(cli_inputs):
    from bertforge.tokenization import BertTokenizer
    return BertTokenizer.from_pretrained(cli_inputs["tok"])


@pytest.fixture(scope="module")
def rows(tok):
    """Eight stored instances of 30 word pieces each: ``[CLS] w ... w [SEP]`` (no ## pieces)."""
    words = [i for t, i in tok.vocab.items() if t.isalpha() and not t.startswith("##")]
    rng = np.random.default_rng(0)
    tokens = np.stack([[tok.cls_token_id, *rng.choice(words, 28), tok.sep_token_id] for _ in range(8)])
    n = np.full(8, 30)
    return {"tokens": tokens, "lengths": n, "b_start": n.copy(), "is_random_next": np.zeros(8, np.uint8)}


def batch_of(tok, rows, *flags: str) -> dict[str, torch.Tensor]:
    from bertforge.objectives import OBJECTIVES
    args = settings_of("pretrain", *PRETRAIN, *flags)
    return OBJECTIVES[args.objective].from_args(tok, args).make_batch(rows, np.arange(len(rows["lengths"])), 0)


# --- pre-training: masking and objectives ------------------------------------------------------

def test_pretrain_mask_mix_sets_the_shares_of_mask_random_and_kept(tok, rows):
    chosen = lambda b: b["labels"] != -100  # noqa: E731
    default = batch_of(tok, rows, "--objective", "mlm", "--masked-lm-prob", "0.5")
    kept = batch_of(tok, rows, "--objective", "mlm", "--masked-lm-prob", "0.5", "--mask-mix", "0,0,100")
    masked = batch_of(tok, rows, "--objective", "mlm", "--masked-lm-prob", "0.5", "--mask-mix", "100,0,0")
    assert (default["input_ids"] == tok.mask_token_id).any()
    # 0,0,100: positions are chosen and predicted, but none becomes [MASK] and none changes
    assert chosen(kept).sum() > 20 and not (kept["input_ids"] == tok.mask_token_id).any()
    assert torch.equal(kept["input_ids"], torch.from_numpy(rows["tokens"]).long())
    # 100,0,0: every chosen position is [MASK]
    assert (masked["input_ids"][chosen(masked)] == tok.mask_token_id).all()


def runs_of(labels: torch.Tensor) -> list[int]:
    """Lengths of the runs of consecutive predicted positions, over every row."""
    out = []
    for row in (labels != -100).tolist():
        n = 0
        for hit in row + [False]:
            if hit:
                n += 1
            elif n:
                out.append(n)
                n = 0
    return out


def test_pretrain_mask_spans_masks_runs_of_words(tok, rows):
    plain = runs_of(batch_of(tok, rows, "--objective", "mlm")["labels"])
    spans = runs_of(batch_of(tok, rows, "--objective", "mlm", "--mask-spans")["labels"])
    # 15% single positions mostly stand alone; SpanBERT's spans (mean length ~3.8 words) do not
    assert np.mean(plain) < 1.5 and np.mean(spans) > 2 and max(spans) > max(plain)


def test_pretrain_masked_lm_prob_and_max_predictions_per_seq(tok, rows):
    count = lambda b: (b["labels"] != -100).sum(1)  # noqa: E731  (B,) predicted positions per row
    # Google's count, over the 30 tokens a row with [CLS] and [SEP]: min(cap, max(1, round(30 * prob)))
    assert count(batch_of(tok, rows, "--objective", "mlm")).tolist() == [round(30 * 0.15)] * 8 == [4] * 8
    assert count(batch_of(tok, rows, "--objective", "mlm", "--masked-lm-prob", "0.5")).tolist() == [15] * 8
    capped = batch_of(tok, rows, "--objective", "mlm", "--masked-lm-prob", "0.5", "--max-predictions-per-seq", "3")
    assert count(capped).tolist() == [3] * 8


def test_pretrain_plm_k_predicts_the_last_kth_of_each_order(tok, rows):
    count = lambda b: (b["labels"] != -100).sum(1)  # noqa: E731
    default, two = batch_of(tok, rows, "--objective", "plm"), batch_of(tok, rows, "--objective", "plm", "--plm-k", "2")
    # 28 predictable words a row: the last 1/6 (4 or 5) by default, the last half (14) with K=2
    assert set(count(default).tolist()) <= {4, 5} and count(two).tolist() == [14] * 8


def test_pretrain_arch_picks_the_family_and_its_objective():
    assert settings_of("pretrain", *PRETRAIN).objective == "mlm+nsp"
    assert settings_of("pretrain", *PRETRAIN, "--arch", "xlnet").objective == "plm"
    assert settings_of("pretrain", *PRETRAIN, "--arch", "elmo").objective == "bilm"
    small = settings_of("pretrain", "--corpus", "c.txt", "--out", "run", "--preset", "tiny")  # the small-budget recipe
    assert (small.arch, small.objective) == ("modernbert", "mlm")


def test_short_seq_prob_makes_shorter_instances(cli_inputs, tmp_path):
    from bertforge.train.pretrain import prepare_settings

    assert prepare_settings(settings_of("pretrain", *PRETRAIN, "--short-seq-prob", "0.7")).short_seq_prob == 0.7
    lengths = {}
    for prob in ("0", "1"):
        out = tmp_path / f"p{prob}"
        main(["data", "prepare", "--corpus", str(cli_inputs["corpus"]), "--tokenizer", str(cli_inputs["tok"]),
              "--out", str(out), "--seq-len", "64", "--workers", "1", "--short-seq-prob", prob])
        lengths[prob] = np.concatenate([np.load(p) for p in sorted(out.glob("train-*-lengths.npy"))])
    # a target length drawn from [2, 61] for every instance, against 61 for 90% of them by default (the
    # documents, ~35 pieces each, cap most instances either way)
    assert np.mean(lengths["1"]) < 0.8 * np.mean(lengths["0"])


def test_corpus_text_field_names_the_column(cli_inputs, tmp_path, capsys):
    """--text-field names the Parquet column (or JSONL field) with the text: data prepare and tokenizer train read
    it, and refuse a file without it; pretrain hands it to both."""
    from unavailable import require

    from bertforge.train.pretrain import prepare_settings

    pa, pq = require("pyarrow"), require("pyarrow.parquet")
    assert prepare_settings(settings_of("pretrain", *PRETRAIN, "--text-field", "body")).text_field == "body"
    documents = [doc.replace("\n", " ") for doc in cli_inputs["corpus"].read_text().split("\n\n")]
    corpus = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"body": documents, "source": ["web"] * len(documents)}), corpus, row_group_size=50)
    tokenizer = ["tokenizer", "train", "--input", str(corpus), "--vocab-size", "200"]
    main([*tokenizer, "--out", str(tmp_path / "tok"), "--text-field", "body"])
    vocab = (tmp_path / "tok" / "vocab.txt").read_text().split()
    assert {"cat", "river", "house"} <= set(vocab) and "web" not in vocab  # the body's words, not the source's
    prepare = ["data", "prepare", "--corpus", str(corpus), "--tokenizer", str(cli_inputs["tok"]), "--seq-len", "64",
               "--workers", "1"]
    main([*prepare, "--out", str(tmp_path / "data"), "--text-field", "body"])
    meta = json.loads((tmp_path / "data" / "meta.json").read_text())
    assert meta["corpus"]["documents"] == len(documents) and meta["settings"]["text_field"] == "body"
    capsys.readouterr()
    for argv in ([*tokenizer, "--out", str(tmp_path / "tok2")], [*prepare, "--out", str(tmp_path / "data2")]):
        with pytest.raises(SystemExit):  # by default the text is in a column named text, which this file lacks
            main(argv)
        assert "no column 'text' (its columns: body, source)" in capsys.readouterr().err


# --- pre-training and fine-tuning runs ---------------------------------------------------------

@pytest.fixture
def spies(monkeypatch):
    """Records the arguments of the optimiser, gradient clipping and dev prediction of a run."""
    import bertforge.train.finetune as ft
    import bertforge.train.pretrain as pt

    seen: dict[str, list] = {"weight_decay": [], "max_norm": [], "eval_batch_size": [], "widths": []}

    def optimizer(build):
        def wrapped(model, *args, **kwargs):
            seen["weight_decay"].append(kwargs["weight_decay"])
            return build(model, *args, **kwargs)
        return wrapped

    clip = torch.nn.utils.clip_grad_norm_

    def clip_spy(parameters, max_norm, *args, **kwargs):
        seen["max_norm"].append(max_norm)
        return clip(parameters, max_norm, *args, **kwargs)

    predict = ft.predict_examples

    def predict_spy(model, task, tokenizer, examples, opts, batch_size, *rest):
        seen["eval_batch_size"].append(batch_size)
        return predict(model, task, tokenizer, examples, opts, batch_size, *rest)

    collate = ft.collate

    def collate_spy(feats, pad):
        batch = collate(feats, pad)
        seen["widths"].append((int(batch["attention_mask"].sum()), batch["attention_mask"].numel()))
        return batch

    monkeypatch.setattr(pt, "build_optimizer", optimizer(pt.build_optimizer))
    monkeypatch.setattr(ft, "build_optimizer", optimizer(ft.build_optimizer))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip_spy)
    monkeypatch.setattr(ft, "predict_examples", predict_spy)
    monkeypatch.setattr(ft, "collate", collate_spy)
    return seen


@pytest.mark.slow
def test_pretrain_weight_decay_clip_norm_and_keep_last(cli_inputs, tmp_path, spies):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    main(["pretrain", "--corpus", str(cli_inputs["corpus"]), "--tokenizer", str(cli_inputs["tok"]), "--out", str(out),
          "--preset", "tiny", "--seq-len", "32", "--batch-size", "4", "--max-steps", "6", "--save-every", "2",
          "--eval-every", "100", "--eval-instances", "4", "--warmup-steps", "1", "--workers", "1", "--no-progress",
          "--weight-decay", "0.3", "--clip-norm", "0.25", "--keep-last", "1"])
    assert spies["weight_decay"] == [0.3] and set(spies["max_norm"]) == {0.25}
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert checkpoints == ["step-00000006"]  # steps 2, 4 and 6 were saved; the default would keep two


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """Classify train/dev files whose texts run from 1 to 24 words."""
    d = tmp_path_factory.mktemp("varied")
    rng = np.random.default_rng(0)
    words = "the a cat dog runs sees big small red green house tree".split()
    rows = [{"text": " ".join(rng.choice(words, n) + ["good" if n % 2 else "bad"]), "label": ["neg", "pos"][n % 2]}
            for n in rng.permutation(np.arange(1, 25).repeat(2))]
    return write_jsonl(d / "train.jsonl", rows), write_jsonl(d / "dev.jsonl", rows[:10])


def finetune(cli_inputs, varied, out: Path, *flags: str) -> Path:
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the new head's weights
        main(["finetune", "--task", "classify", "--model", str(cli_inputs["pt_model"]), "--train", str(varied[0]),
              "--dev", str(varied[1]), "--out", str(out), "--epochs", "1", "--batch-size", "8", "--no-progress",
              "--seeds", "1", *flags])
    return out


@pytest.mark.slow
def test_finetune_optimiser_flags_reach_the_optimiser(cli_inputs, varied, tmp_path, spies):
    finetune(cli_inputs, varied, tmp_path / "ft", "--weight-decay", "0.2", "--clip-norm", "0.5",
             "--eval-batch-size", "3")
    assert spies["weight_decay"] == [0.2] and set(spies["max_norm"]) == {0.5}
    assert set(spies["eval_batch_size"]) == {3}


@pytest.mark.slow
def test_finetune_group_by_length_batches_similar_lengths(cli_inputs, varied, tmp_path, spies):
    def padding() -> float:
        real, total = map(sum, zip(*spies["widths"]))
        spies["widths"].clear()
        return 1 - real / total

    finetune(cli_inputs, varied, tmp_path / "random")
    random_padding = padding()
    finetune(cli_inputs, varied, tmp_path / "grouped", "--group-by-length")
    # lengths 3..26 pieces in random batches of 8 pad ~40%; batches of similar lengths pad a few percent
    assert padding() < random_padding / 3


@pytest.mark.slow
def test_finetune_head_bilstm_saves_a_bilstm_head(cli_inputs, varied, tmp_path):
    plain = load_file(finetune(cli_inputs, varied, tmp_path / "plain") / "model" / "model.safetensors")
    bilstm = load_file(finetune(cli_inputs, varied, tmp_path / "bilstm", "--head-bilstm") / "model"
                       / "model.safetensors")
    assert not any("lstm" in k for k in plain) and any("lstm" in k for k in bilstm)
    from bertforge.data.options import DataOptions
    from bertforge.inference import Predictor

    predictor = Predictor.load(tmp_path / "bilstm" / "model")  # the saved BiLSTM head loads and predicts
    predictions, _ = predictor.predict(predictor.task.read(varied[1], DataOptions()), DataOptions())
    assert len(predictions) == 10 and set(predictions) <= {"neg", "pos"}


# --- the data flags of finetune, evaluate and predict -----------------------------------------

def test_data_flags_are_one_set_of_options():
    """finetune, evaluate and predict read their data flags into the same DataOptions."""
    from bertforge.train.settings import FinetuneArgs

    flags = ["--text-field", "s", "--text-pair-field", "p", "--label-field", "y", "--null-threshold", "2.5",
             "--n-best", "3", "--max-answer-length", "4", "--max-query-length", "5"]
    expected = dict(text_field="s", text_pair_field="p", label_field="y", null_threshold=2.5, n_best=3,
                    max_answer_length=4, max_query_length=5)
    for command in ("evaluate", "predict"):
        opts = settings_of(command, "--model", "m", "--data", "d", *flags) if command == "evaluate" else \
            settings_of(command, "--model", "m", "--input", "i", "--output", "o", *flags)
        assert {k: getattr(opts, k) for k in expected} == expected, command
    args = build_parser().parse_args(["finetune", "--task", "qa", "--model", "m", "--train", "t", "--dev", "d",
                                      "--out", "o", *flags])
    from bertforge.cli.commands import _data_options
    settings = from_namespace(FinetuneArgs, args, data=_data_options(args))
    assert {k: getattr(settings.data, k) for k in expected} == expected


def predict_lines(model: Path, rows: list[dict], tmp_path: Path, *flags: str) -> list[dict]:
    source, output = write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    output.unlink(missing_ok=True)
    main(["predict", "--model", str(model), "--input", str(source), "--output", str(output), *flags])
    return [json.loads(line) for line in output.read_text().splitlines()]


def test_text_pair_and_label_fields_name_the_columns(cli_inputs, tmp_path, capsys):
    clf = cli_inputs["clf"]
    texts = [("a good movie", "the plot was bad"), ("an awful film", "lovely story"), ("fine", "poor actor")]
    plain = predict_lines(clf, [{"text": a, "text_pair": b} for a, b in texts], tmp_path)
    renamed = predict_lines(clf, [{"s": a, "p": b} for a, b in texts], tmp_path,
                            "--text-field", "s", "--text-pair-field", "p")
    alone = predict_lines(clf, [{"text": a} for a, _ in texts], tmp_path)
    assert renamed == plain
    assert [r["scores"] if "scores" in r else r for r in alone] != [r["scores"] if "scores" in r else r for r in plain]
    # --label-field: evaluate scores against the column it names (accuracy recomputed from the predictions)
    gold = ["pos", "neg", "neg"]
    data = write_jsonl(tmp_path / "gold.jsonl", [{"s": a, "y": g} for (a, _), g in zip(texts, gold)])
    capsys.readouterr()
    main(["evaluate", "--model", str(clf), "--data", str(data), "--text-field", "s", "--label-field", "y"])
    result = json.loads(capsys.readouterr().out)
    predicted = [r["label"] for r in predict_lines(clf, [{"text": a} for a, _ in texts], tmp_path)]
    assert result["examples"] == 3
    assert result["accuracy"] == pytest.approx(np.mean([p == g for p, g in zip(predicted, gold)]))


@pytest.fixture(scope="module")
def qa_model(cli_inputs, tmp_path_factory):
    """A QA model (random head) that may answer "no answer" (trained on SQuAD 2.0, says its config)."""
    from bertforge.model import BertForQuestionAnswering
    from bertforge.tokenization import BertTokenizer

    path = tmp_path_factory.mktemp("qa") / "model"
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        BertForQuestionAnswering.from_pretrained(cli_inputs["pt_model"], bertforge_task="qa",
                                                 bertforge_squad_v2=True).save_pretrained(path)
    BertTokenizer.from_pretrained(cli_inputs["tok"]).save_pretrained(path)
    return path


QUESTIONS = [{"question": f"where does {name} live ?",
              "context": f"{name} lives in {city} . the river is near the big house and the green tree ."}
             for name, city in (("alice", "paris"), ("bob", "london"), ("carol", "rome"), ("dave", "paris"))]


def test_null_threshold_turns_answers_into_no_answer(qa_model, tmp_path):
    never = predict_lines(qa_model, QUESTIONS, tmp_path, "--null-threshold=1e9")
    always = predict_lines(qa_model, QUESTIONS, tmp_path, "--null-threshold=-1e9")
    assert all(r["answer"] for r in never) and all(r["answer"] == "" for r in always)


def test_qa_max_answer_length_bounds_the_answers(qa_model, tmp_path):
    default = [r["answer"] for r in predict_lines(qa_model, QUESTIONS, tmp_path, "--null-threshold=1e9")]
    short = [r["answer"] for r in predict_lines(qa_model, QUESTIONS, tmp_path, "--null-threshold=1e9",
                                                "--max-answer-length", "2")]
    assert min(len(a.split()) for a in default) > 2 and all(1 <= len(a.split()) <= 2 for a in short)


def qa_answer(tok, start_at: dict[str, float], end_at: dict[str, float], *flags: str) -> str:
    """The answer decoded, with the data flags ``flags``, from logits that score the named context words."""
    from bertforge.data.examples import QAExample
    from bertforge.tasks import TASKS

    task, opts = TASKS["qa"], settings_of("predict", "--model", "m", "--input", "i", "--output", "o", *flags)
    example = QAExample("q", "where does alice live ?", "alice lives in paris .")
    (window,) = task.encode(tok, [example], None, opts)
    words = [example.context[o[0]:o[1]] if o else None for o in window.offsets]
    logits = np.full((len(window.input_ids), 2), -10.0)
    for column, scores in ((0, start_at), (1, end_at)):
        for word, score in scores.items():
            logits[words.index(word), column] = score
    return task.decode([example], [window], [logits], {"bertforge_squad_v2": False}, opts)[0]


def test_qa_n_best_bounds_the_candidates_and_never_changes_the_answer(tok):
    # The answer is searched exactly over every valid (start, end), unlike Google's n-best starts x n-best ends
    # heuristic, which could miss it: --n-best only bounds the candidates kept per question.
    from bertforge.data.examples import QAExample
    from bertforge.tasks import TASKS
    from bertforge.tasks.qa import candidate_spans

    start, end = {"paris": 5.0}, {"alice": 5.0, ".": 4.0}  # the best end lies before the best start
    assert qa_answer(tok, start, end) == qa_answer(tok, start, end, "--n-best", "1") == "paris ."
    examples = [QAExample("q", "where does alice live ?", "alice lives in paris .")]
    for n in (1, 3):
        opts = settings_of("predict", "--model", "m", "--input", "i", "--output", "o", "--n-best", str(n))
        windows = TASKS["qa"].encode(tok, examples, None, opts)
        T = len(windows[0].input_ids)
        logits = np.linspace(0, 1, T)
        ((spans, _),) = candidate_spans(examples, windows, [logits], [logits[::-1].copy()], opts.n_best, 30)
        assert len(spans) == n


def test_max_query_length_cuts_the_question(tok):
    from bertforge.data.examples import QAExample
    from bertforge.tasks import TASKS

    examples = [QAExample("q", "where does alice live now ?", "alice lives in paris .")]
    for flags, pieces in (((), 6), (("--max-query-length", "2"), 2)):
        opts = settings_of("predict", "--model", "m", "--input", "i", "--output", "o", *flags)
        (window,) = TASKS["qa"].encode(tok, examples, None, opts)
        ids = list(window.input_ids)
        assert ids[0] == tok.cls_token_id and ids.index(tok.sep_token_id) - 1 == pieces


# --- generate ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ltr_model(tmp_path_factory):
    """A random left-to-right model over whole words only (so generated pieces are words)."""
    from bertforge.config import BertConfig
    from bertforge.model import BertLMHeadModel
    from bertforge.tokenization import BertTokenizer

    words = "the a cat dog runs sees big small red green house tree river bird sings over under near far".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    path = tmp_path_factory.mktemp("ltr") / "model"
    torch.manual_seed(0)
    config = BertConfig.preset("tiny", vocab_size=len(vocab), is_decoder=True)
    BertLMHeadModel(config).save_pretrained(path)
    BertTokenizer({t: i for i, t in enumerate(vocab)}).save_pretrained(path)
    return path


def test_generate_max_new_tokens_and_temperature(ltr_model, capsys):
    def generate(*flags: str) -> list[str]:
        capsys.readouterr()
        main(["generate", "--model", str(ltr_model), "the cat", *flags])
        return capsys.readouterr().out.split()

    prefix = ["the", "cat"]
    greedy = generate("--max-new-tokens", "12")
    assert greedy[:2] == prefix and len(greedy) <= 14
    assert len(generate("--max-new-tokens", "3")) == len(prefix) + 3
    # sampling from the 10 likeliest: near-greedy at a low temperature, near-uniform among them at a high one
    cold = generate("--max-new-tokens", "12", "--top-k", "10", "--temperature", "0.001")
    hot = generate("--max-new-tokens", "12", "--top-k", "10", "--temperature", "1000")
    assert cold == greedy and hot != greedy


# --- serve ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def serve_app(cli_inputs):
    """``client(*flags)``: a TestClient of the app ``bertforge serve --model ENCODER *flags`` serves."""
    from unavailable import require

    require("fastapi")
    require("httpx")
    from fastapi.testclient import TestClient

    from bertforge.serve.app import create_app
    from bertforge.serve.models import ServedModel

    model = ServedModel.load(cli_inputs["base_model"])

    def client(*flags: str) -> TestClient:
        return TestClient(create_app(model, settings_of("serve", "--model", "m", *flags)),
                          raise_server_exceptions=False)

    return client


def test_serve_input_limits_truncate_and_timeout(serve_app):
    long = " ".join(["the big red house"] * 10)  # 40 words
    with serve_app() as c:
        assert c.post("/embed", json={"inputs": ["a", "b", "c"]}).status_code == 200
        assert c.post("/embed", json={"inputs": long}).status_code == 200
    with serve_app("--max-inputs", "2") as c:
        refused = c.post("/embed", json={"inputs": ["a", "b", "c"]})
        assert refused.status_code == 413 and "limit of 2" in refused.text
        assert c.post("/embed", json={"inputs": ["a", "b"]}).status_code == 200
    with serve_app("--max-input-tokens", "16") as c:
        refused = c.post("/embed", json={"inputs": long})
        assert refused.status_code == 413 and "limit of 16" in refused.text
    with serve_app("--max-input-tokens", "16", "--truncate") as c:
        assert c.post("/embed", json={"inputs": long}).status_code == 200
        assert len(c.post("/tokenize", json={"inputs": long}).json()["tokens"]) == 16
    with serve_app("--max-wait-ms", "300", "--timeout", "0.05") as c:  # the batch waits longer than a request may
        late = c.post("/embed", json={"inputs": "a cat"})
        assert late.status_code == 504 and "within 0.05 s" in late.text


def test_serve_max_batch_tokens_splits_batches(serve_app):
    """Requests that arrive together share a forward pass unless their tokens exceed --max-batch-tokens."""
    import concurrent.futures

    def forward_passes(*flags: str) -> int:
        with serve_app("--max-wait-ms", "200", *flags) as c:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda i: c.post("/embed", json={"inputs": "the big red house " * 4}),
                                        range(8)))
            assert all(a.status_code == 200 for a in answers)
            metrics = c.get("/metrics").text
        counts = [x for x in metrics.splitlines() if x.startswith("bertforge_batch_rows_count")]  # one per op
        return sum(int(float(x.split()[-1])) for x in counts)

    assert forward_passes() < forward_passes("--max-batch-tokens", "20")


@pytest.mark.slow
def test_serve_host_and_log_level(cli_inputs, tmp_path):
    """--host is the address the server listens on; --log-level info adds uvicorn's startup lines."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("BERTFORGE_DEBUG", None)
    lines = {}
    for level in ("warning", "info"):
        proc = subprocess.Popen([sys.executable, "-m", "bertforge", "serve", "--model", str(cli_inputs["base_model"]),
                                 "--port", "0", "--host", "127.0.0.2", "--log-level", level], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = proc.stdout.readline()
            if " at http://" in first:  # wait until it answers: uvicorn logs its startup before that
                url = first.split(" at ", 1)[1].split()[0]
                urllib.request.urlopen(url + "/info", timeout=30).read()
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=60)
        assert " at http://127.0.0.2:" in first, first + err
        lines[level] = err
    assert "Application startup complete" in lines["info"]
    assert "Application startup complete" not in lines["warning"]


# --- ablate ---------------------------------------------------------------------------------

ABLATE = {"--seeds": ["4", "5"], "--preset": ["tiny"], "--steps": ["7"], "--seq-len": ["48"], "--batch-size": ["6"],
          "--lr": ["2e-3"], "--warmup-steps": ["3"], "--vocab-size": ["500"], "--epochs": ["2"],
          "--finetune-lr": ["2e-4", "5e-4"], "--feature-lr": ["7e-3"], "--finetune-batch-size": ["4"],
          "--max-length": ["40"], "--max-train-examples": ["9"], "--seed": ["77"]}


def test_ablate_study_flags_reach_its_runs(cli_inputs, tmp_path, monkeypatch):
    """Each study flag of ablate lands in the pre-training and fine-tuning runs the study starts."""
    import bertforge.ablation as ablation
    import bertforge.train.finetune as ft
    import bertforge.vocab
    from bertforge.ablation.plan import TaskSpec, variants_of
    from bertforge.ablation.run import _finetune, _tokenizer, learning_rates, pretrain_args

    studies, runs, vocabularies = [], [], []
    monkeypatch.setattr(ablation, "run_study", studies.append)
    monkeypatch.setattr(ft, "finetune", runs.append)
    monkeypatch.setattr(bertforge.vocab, "train_vocab_from_corpus", lambda corpus, size, out: vocabularies.append(size))
    task = f"t=classify:{cli_inputs['train_jsonl']},{cli_inputs['dev_jsonl']}"
    flags = [x for flag, values in ABLATE.items() for x in (flag, *values)]
    common = ["--corpus", str(cli_inputs["corpus"]), "--task", task, "--no-progress"]
    main(["ablate", *common, "--out", str(tmp_path / "full"), *flags])
    main(["ablate", "--quick", *common, "--out", str(tmp_path / "quick"), *flags[flags.index("--finetune-lr"):]])
    full, quick = studies
    variants = variants_of("tiny")
    finetuned = []
    for study in (full, quick):
        assert learning_rates(study, variants["bert"]) == [2e-4, 5e-4]
        assert learning_rates(study, variants["bert-frozen"]) == [7e-3]
        _finetune(study, variants["bert"], TaskSpec.parse(task), 4, 2e-4, log=lambda _: None)
        finetuned.append(runs.pop())
        assert (finetuned[-1].batch_size, finetuned[-1].data.max_length, finetuned[-1].max_train_examples) == (4, 40, 9)
    assert full.seeds == [4, 5] and (finetuned[0].epochs, finetuned[0].lr, finetuned[0].seeds) == (2, 2e-4, [4])
    pretrain = pretrain_args(full, variants["bert"], tmp_path / "tok")
    assert (pretrain.preset, pretrain.max_steps, pretrain.seq_len, pretrain.batch_size, pretrain.lr,
            pretrain.warmup_steps, pretrain.seed) == ("tiny", 7, 48, 6, 2e-3, 3, 77)
    _tokenizer(full, log=lambda _: None)
    assert vocabularies == [500]
