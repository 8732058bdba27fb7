"""Recipes as files (``bertforge.recipe_files``): ``--config FILE`` for pretrain, finetune, ablate and glue, where a
flag beats the file's key and the key beats the default; the effective recipe every run writes, which repeats the
run; the errors that name the file, the line and the key; and every shipped recipe under recipes/, run on tiny
settings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bertforge.cli import parse_command_line
from bertforge.options import from_namespace
from bertforge.recipe_files import RECIPE_FILE, read_recipe, recipe_of
from in_process import cli

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "recipes").rglob("*.yaml"))


def settings_of(argv: list[str]):
    """The settings dataclass a command line gives (recipe applied), as the commands build it."""
    from bertforge.ablation.plan import Study
    from bertforge.data.options import DataOptions
    from bertforge.glue.settings import GlueSettings
    from bertforge.train.settings import FinetuneArgs, PretrainArgs

    args, _, _ = parse_command_line(argv)
    cls = {"pretrain": PretrainArgs, "finetune": FinetuneArgs, "ablate": Study, "glue": GlueSettings}[argv[0]]
    extra = {"data": from_namespace(DataOptions, args)} if cls is FinetuneArgs else {}
    return from_namespace(cls, args, **extra)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- precedence ----------------------------------------------------------------------------------

def test_a_flag_beats_the_recipe_which_beats_the_default(cli_inputs, tmp_path):
    recipe = write(tmp_path / "r.yaml", "preset: tiny\nbatch-size: 8\nlr: 1e-3\nno_nsp: true\nseq_len: 64\n"
                                        f"corpus: {cli_inputs['corpus']}\nout: {tmp_path / 'run'}\n")
    plain = settings_of(["pretrain", "--config", str(recipe)])
    assert (plain.preset, plain.batch_size, plain.lr, plain.nsp, plain.objective, plain.seq_len) == \
           ("tiny", 8, 1e-3, False, "mlm", 64)  # 1e-3 is a string to YAML 1.1; read as the flag reads it
    assert plain.corpus == [str(cli_inputs["corpus"])] and plain.out == str(tmp_path / "run")
    assert plain.weight_decay == 0.01  # not in the recipe: the default
    # the flags win, even where they give the default's value or an abbreviation (argparse's own matching)
    over = settings_of(["pretrain", "--config", str(recipe), "--batch-size", "32", "--lr=2e-4", "--seq", "128",
                        "--corpus", str(cli_inputs["lines_txt"]), "--out", str(tmp_path / "other")])
    assert (over.batch_size, over.lr, over.seq_len, over.nsp) == (32, 2e-4, 128, False)
    assert over.corpus == [str(cli_inputs["lines_txt"])] and over.out == str(tmp_path / "other")


def test_every_recipe_command_reads_config(cli_inputs, tmp_path):
    """finetune (with its data options), ablate and glue take the same --config; a list key is a YAML list."""
    inputs = cli_inputs
    finetune = write(tmp_path / "f.yaml", "command: finetune\ntask: classify\nepochs: 5\nseeds: [3, 4]\n"
                                          "max_length: 64\ntext_field: sentence\nfreeze_encoder: true\n")
    ft = settings_of(["finetune", "--config", str(finetune), "--model", str(inputs["pt_model"]), "--train",
                      str(inputs["train_jsonl"]), "--dev", str(inputs["dev_jsonl"]), "--out", str(tmp_path / "ft")])
    assert (ft.epochs, ft.seeds, ft.data.max_length, ft.data.text_field, ft.freeze_encoder) == \
           (5, [3, 4], 64, "sentence", True)
    ablate = write(tmp_path / "a.yaml", f"corpus: [{inputs['corpus']}]\nsteps: 7\nvariants: [bert, random]\n"
                                        f"finetune_lr: [1e-4, 2e-4]\ntask: ['s=classify:{inputs['train_jsonl']},"
                                        f"{inputs['dev_jsonl']}']\n")
    study = settings_of(["ablate", "--config", str(ablate), "--out", str(tmp_path / "study")])
    assert (study.steps, study.variants, study.finetune_lr, study.task[0][:11]) == \
           (7, ["bert", "random"], [1e-4, 2e-4], "s=classify:")
    glue = write(tmp_path / "g.yaml", "recipe: paper\nseeds: 2\ntasks: [rte, mrpc]\noverrides: [rte.epochs=1]\n")
    settings = settings_of(["glue", "--config", str(glue), "--data", str(tmp_path), "--model", "m", "--out", "o"])
    assert (settings.recipe, settings.seeds, settings.tasks, settings.overrides) == \
           ("paper", "2", ["rte", "mrpc"], ["rte.epochs=1"])


# --- the effective recipe ---------------------------------------------------------------------------

def test_the_recipe_a_run_writes_gives_back_the_same_settings(cli_inputs, tmp_path):
    """For each command: the recipe written from its settings, read back with --config alone, builds equal settings
    (the pre-training recipe's own choices come back as given values)."""
    inputs = cli_inputs
    runs = {
        "pretrain": ["--corpus", inputs["corpus"], "--out", tmp_path / "p", "--preset", "tiny", "--no-nsp",
                     "--mask-mix", "70,20,10", "--seq-len", "64"],
        "finetune": ["--task", "classify", "--model", inputs["pt_model"], "--train", inputs["train_jsonl"], "--dev",
                     inputs["dev_jsonl"], "--out", tmp_path / "f", "--seeds", "2", "5", "--max-length", "32",
                     "--freeze-encoder", "--text-pair-field", "other"],
        "ablate": ["--corpus", inputs["corpus"], "--task", f"s=classify:{inputs['train_jsonl']},{inputs['dev_jsonl']}",
                   "--out", tmp_path / "a", "--variants", "bert", "ltr", "--feature-lr", "0.002", "--no-progress"],
        "glue": ["--data", tmp_path, "--model", inputs["pt_model"], "--out", tmp_path / "g", "--tasks", "mnli,rte",
                 "--set", "rte.epochs=1", "--from-mnli"],
    }
    for command, argv in runs.items():
        first = settings_of([command, *map(str, argv)])
        recipe = write(tmp_path / f"{command}.yaml", recipe_of(command, first))
        again = settings_of([command, "--config", str(recipe)])
        strip = lambda s: {k: v for k, v in dataclasses.asdict(s).items() if k != "derived"}  # noqa: E731
        assert strip(again) == strip(first), command


def test_a_pretraining_run_writes_its_recipe_and_the_recipe_resumes_it(cli_inputs, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["pretrain", "--corpus", cli_inputs["corpus"], "--tokenizer", cli_inputs["tok"], "--out", out, "--preset",
            "tiny", "--seq-len", "32", "--batch-size", "4", "--max-steps", "2", "--no-progress", "--workers", "1"]
    code, _, err = cli(capsys, *argv)
    assert code == 0, err
    written = (out / RECIPE_FILE).read_text()
    assert written.startswith("# The settings this `bertforge pretrain` run used")
    assert "recipe: small-budget\n" in written and "lr: 0.001\n" in written and "arch: modernbert\n" in written
    # the written recipe is the whole run: a longer --max-steps resumes it (a changed setting would be refused)
    code, printed, err = cli(capsys, "pretrain", "--config", out / RECIPE_FILE, "--max-steps", "3")
    assert code == 0, err
    assert "resuming from" in printed and json.loads((out / "run_config.json").read_text())["max_steps"] == 3
    code, _, err = cli(capsys, "pretrain", "--config", out / RECIPE_FILE, "--max-steps", "4", "--seq-len", "64")
    assert code == 2 and "--seq-len was 32 and is 64 now" in err  # the flag changed a fixed setting: refused as without a recipe


def test_read_recipe_builds_the_settings_for_python_callers(cli_inputs, tmp_path):
    from bertforge.train.settings import PretrainArgs

    args = read_recipe(ROOT / "recipes" / "cpu-small-budget.yaml", PretrainArgs, corpus=[str(cli_inputs["corpus"])],
                       out=str(tmp_path / "run"), max_steps=10)
    assert (args.preset, args.arch, args.lr, args.masked_lm_prob, args.max_steps) == ("tiny", "modernbert", 1e-3,
                                                                                        0.4, 10)
    with pytest.raises(TypeError, match="max_step"):
        read_recipe(ROOT / "recipes" / "cpu-small-budget.yaml", PretrainArgs, max_step=10)  # a typo is not ignored
    bad = write(tmp_path / "bad.yaml", "preset: tiny\nlr: 3.0\n")
    with pytest.raises(ValueError, match=r"bad\.yaml:2: lr: must be <= 1, got 3"):
        read_recipe(bad, PretrainArgs, corpus=["c"], out="o")


# --- bad recipes ---------------------------------------------------------------------------------------

BAD = [  # (recipe text, expected parts of the one-line error)
    ("preset: tiny\nbatchsize: 8\n", ("r.yaml:2:", "unknown key 'batchsize'", "did you mean batch_size?",
                                      "bertforge pretrain takes:", "warmup_steps")),
    ("batch_size: big\n", ("r.yaml:1:", "batch_size: expected a whole number, got 'big'")),
    ("batch_size: 2.5\n", ("r.yaml:1:", "batch_size: expected a whole number, got 2.5")),
    ("whole_word_mask: yes please\n", ("r.yaml:1:", "whole_word_mask: expected true or false")),
    ("lr: [1, 2]\n", ("r.yaml:1:", "lr: expected a number, got [1, 2]")),
    ("preset: huge\n", ("r.yaml:1:", "preset: expected one of tiny, mini")),
    ("lr: 1e-3\nseq_len: 64\nlr: 1e-4\n", ("r.yaml:3:", "lr: given twice (lines 1 and 3)")),
    ("nsp: false\nno_nsp: true\n", ("r.yaml:2:", "no_nsp: sets nsp again (line 1 set it first)")),
    ("preset: tiny\n  lr: [1\n", ("r.yaml:", "not valid YAML")),
    ("- preset: tiny\n", ("r.yaml:1:", "a recipe is a mapping of settings", "not a list")),
    ("command: glue\npreset: tiny\n", ("r.yaml:1:", "the recipe is for 'glue', not 'pretrain'")),
    ("max_steps: 0\n", ("r.yaml:1: max_steps: must be >= 1, got 0",)),  # the settings dataclass's range, located
    ("lr: 5\n", ("r.yaml:1: lr: must be <= 1, got 5",)),
    ("mask_mix: 80,10\n", ("r.yaml:1: mask_mix: expected three whole percentages",)),
    ('{"model_type": "bert", "hidden_size": 128}\n', ("is a model's config.json, not a recipe", "--model-config")),
]


@pytest.mark.parametrize("text, expected", BAD, ids=[f"bad-{i}" for i in range(len(BAD))])
def test_a_bad_recipe_is_refused_naming_the_file_line_and_key(cli_inputs, tmp_path, capsys, text, expected):
    recipe = write(tmp_path / "r.yaml", text)
    out = tmp_path / "run"
    code, _, err = cli(capsys, "pretrain", "--config", recipe, "--corpus", cli_inputs["corpus"], "--out", out)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("bertforge pretrain: error: ")
    for part in expected:
        assert part.replace("r.yaml", str(recipe)) in err or part in err, (part, err)
    assert not out.exists()  # refused before anything is written


def test_a_flag_that_overrides_a_bad_key_is_what_counts(cli_inputs, tmp_path, capsys):
    """A key out of range that the command line overrides is not the run's value (only types are checked first);
    a flag out of range is named as the flag, not as the recipe's key."""
    recipe = write(tmp_path / "r.yaml", "lr: 5\n")
    assert settings_of(["pretrain", "--config", str(recipe), "--lr", "1e-3", "--corpus", "c", "--out", "o"]).lr == 1e-3
    code, _, err = cli(capsys, "pretrain", "--config", recipe, "--lr", "7", "--corpus", cli_inputs["corpus"],
                       "--out", tmp_path / "run")
    assert code == 2 and "--lr: must be <= 1, got 7" in err and "r.yaml" not in err


def test_a_missing_recipe_and_a_bad_path_in_a_recipe(cli_inputs, tmp_path, capsys):
    code, _, err = cli(capsys, "finetune", "--config", tmp_path / "nowhere.yaml")
    assert code == 2 and "--config" in err and "nowhere.yaml" in err
    recipe = write(tmp_path / "r.yaml", f"corpus: [{tmp_path / 'missing.txt'}]\nout: {tmp_path / 'o'}\n")
    code, _, err = cli(capsys, "pretrain", "--config", recipe)
    assert code == 2 and f"{recipe}:1: corpus: " in err and "missing.txt" in err


# --- the shipped recipes ---------------------------------------------------------------------------------

TINY_PRETRAIN = ["--preset", "tiny", "--max-steps", "2", "--batch-size", "4", "--seq-len", "32", "--warmup-steps", "0",
                 "--max-predictions-per-seq", "8", "--dupe-factor", "1", "--save-every", "2", "--eval-every", "2",
                 "--amp", "off", "--workers", "1", "--no-progress"]


def _command_of(recipe: Path) -> str:
    return next(line.split(":", 1)[1].strip() for line in recipe.read_text().splitlines() if line.startswith("command:"))


def test_the_shipped_recipes_are_all_here():
    names = {str(p.relative_to(ROOT / "recipes")) for p in SHIPPED}
    assert {"bert-base-paper.yaml", "cpu-small-budget.yaml", "one-gpu-day.yaml", "finetune-paper.yaml",
            "glue-paper.yaml", "studies/ablation-zh.yaml", "studies/ablation-en.yaml"} <= names


@pytest.mark.parametrize("recipe", SHIPPED, ids=[str(p.relative_to(ROOT / "recipes")) for p in SHIPPED])
def test_each_shipped_recipe_runs_on_tiny_settings(recipe, cli_inputs, tmp_path, capsys):
    """Each recipe, as it is, builds valid settings; then it runs end to end with flags that make it tiny."""
    inputs, out = cli_inputs, tmp_path / "run"
    command = _command_of(recipe)
    if command == "pretrain":
        as_is = settings_of(["pretrain", "--config", str(recipe), "--corpus", str(inputs["corpus"]), "--out", "o"])
        argv = ["--corpus", inputs["corpus"], "--tokenizer", inputs["tok"], "--out", out, *TINY_PRETRAIN]
    elif command == "finetune":
        as_is = settings_of(["finetune", "--config", str(recipe), "--model", "m", "--train", "t", "--dev", "d",
                             "--out", "o"])
        argv = ["--model", inputs["pt_model"], "--train", inputs["train_jsonl"], "--dev", inputs["dev_jsonl"], "--out",
                out, "--epochs", "1", "--batch-size", "8", "--max-length", "32", "--no-progress"]
    elif command == "glue":
        from tests.glue.files import build_glue

        as_is = settings_of(["glue", "--config", str(recipe), "--data", "g", "--model", "m", "--out", "o"])
        argv = ["--data", build_glue(tmp_path / "glue"), "--model", inputs["pt_model"], "--out", out, "--tasks", "rte",
                "--seeds", "1", "--set", "rte.epochs=1", "rte.lr=1e-4", "rte.max_length=32", "--no-progress"]
    else:
        task = f"s=classify:{inputs['train_jsonl']},{inputs['dev_jsonl']}"
        as_is = settings_of(["ablate", "--config", str(recipe), "--corpus", str(inputs["corpus"]), "--task", task,
                             "--out", "o"])
        assert len(as_is.chosen) > 5  # every variant or group it names exists
        argv = ["--corpus", inputs["corpus"], "--task", task, "--out", out, "--variants", "bert", "random", "--steps",
                "2", "--seq-len", "32", "--batch-size", "4", "--warmup-steps", "0", "--vocab-size", "200", "--epochs",
                "1", "--seeds", "1", "--finetune-batch-size", "8", "--max-length", "32", "--no-progress"]
    assert as_is is not None
    code, _, err = cli(capsys, command, "--config", recipe, *argv)
    assert code == 0, err[-3000:]
    written = (out / RECIPE_FILE).read_text()
    assert f"command: {command}\n" in written
