"""The pre-training recipes: what `pretrain` chooses for the flags not given, recorded in the run, and kept
across a resume that lengthens the run."""

import json

import numpy as np
import pytest

from bertforge.cli import build_parser, main
from bertforge.errors import UsageError
from bertforge.options import from_namespace
from bertforge.train.settings import PretrainArgs
from bertforge.vocab import train_vocab


def args(**kw):
    return PretrainArgs(corpus=["c.txt"], out="out", **kw)


def test_small_presets_take_the_small_budget_recipe():
    for preset in ("tiny", "mini", "small"):
        a = args(preset=preset, max_steps=3000)
        assert (a.recipe, a.arch, a.objective) == ("small-budget", "modernbert", "mlm")
        assert (a.lr, a.masked_lm_prob, a.max_predictions_per_seq, a.warmup_steps) == (1e-3, 0.4, 52, 600)
        assert a.derived == ["arch", "lr", "masked_lm_prob", "max_predictions_per_seq", "warmup_steps"]


def test_larger_presets_and_continued_pretraining_take_googles_defaults():
    for a in (args(preset="base"), args(preset="tiny", init_from="some/model"), args(preset="tiny", model_config="c.json"),
              args(preset="tiny", recipe="google")):
        assert a.recipe == "google" and a.objective == "mlm+nsp"
        assert (a.lr, a.masked_lm_prob, a.max_predictions_per_seq, a.warmup_steps) == (1e-4, 0.15, 20, 100)
    assert args(preset="base").arch == "bert"
    assert args(preset="tiny", init_from="some/model").arch is None  # the model directory says its family


def test_a_flag_given_wins_and_is_not_listed_as_chosen():
    a = args(preset="tiny", lr=5e-4, masked_lm_prob=0.2, warmup_steps=7)
    assert (a.lr, a.masked_lm_prob, a.max_predictions_per_seq, a.warmup_steps) == (5e-4, 0.2, 26, 7)
    assert a.derived == ["arch", "max_predictions_per_seq"]
    # An objective or --no-nsp keeps the family it implies (BERT) with the recipe's rates.
    for a in (args(preset="tiny", objective="mlm"), args(preset="tiny", nsp=False), args(preset="tiny", arch="bert")):
        assert a.arch in (None, "bert") and a.lr == 1e-3 and a.masked_lm_prob == 0.4
    assert args(preset="tiny", arch="bert").objective == "mlm+nsp"
    big = args(preset="base", recipe="small-budget")
    assert (big.arch, big.lr, big.masked_lm_prob) == ("modernbert", 1e-3, 0.4)


def test_electra_takes_the_recipes_masking_and_seq_len_scales_the_predictions():
    """ELECTRA's small discriminator stays at the base rate with its paper's 15% at a small budget and learns at
    40% (docs/recipes.md), so the small-budget recipe replaces 40% for it too; Google's keeps 15%."""
    assert args(preset="tiny", objective="electra").masked_lm_prob == 0.4
    assert args(preset="base", objective="electra").masked_lm_prob == 0.15
    assert args(preset="tiny", objective="plm").masked_lm_prob == 0.15  # not a masked objective: unused
    assert args(preset="tiny", seq_len=512).max_predictions_per_seq == 205  # ceil(0.4 * 512)
    assert args(preset="base", seq_len=512).max_predictions_per_seq == 77  # Google's 0.15 x 512 (it used 76-80)


def test_warm_up_follows_a_flop_budgets_steps():
    a = args(preset="tiny", max_steps=1000)
    assert a.warmup_steps == 200
    a.max_steps = 250  # what --max-flops turns into steps once the model is built
    a.resolve_warmup()
    assert a.warmup_steps == 50
    b = args(preset="tiny", warmup_steps=10)
    b.max_steps = 250
    b.resolve_warmup()
    assert b.warmup_steps == 10
    parsed = build_parser().parse_args(["pretrain", "--corpus", "c.txt", "--out", "out", "--preset", "tiny",
                                        "--max-steps", "1000", "--warmup-share", "0.05"])
    c = from_namespace(PretrainArgs, parsed)  # a share of its own, for any recipe
    assert c.warmup_steps == 50 and "warmup_steps" in c.derived
    c.max_steps = 300
    c.resolve_warmup()
    assert c.warmup_steps == 15
    assert args(preset="base", max_steps=2000, warmup_share=0.1).warmup_steps == 200  # not Google's fixed 100
    with pytest.raises(UsageError, match="--warmup-steps or --warmup-share, not both"):
        args(preset="tiny", warmup_steps=10, warmup_share=0.1)
    with pytest.raises(UsageError, match="--warmup-share"):
        args(preset="tiny", warmup_share=1.5)


def test_bad_recipe_is_refused():
    with pytest.raises(UsageError, match="--recipe"):
        args(preset="tiny", recipe="cramming")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = "the a cat dog runs sees big small red green house tree river walks bird sings".split()
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n\n".join("\n".join(" ".join(rng.choice(words, 8)) + "." for _ in range(4))
                                for _ in range(40)) + "\n")
    train_vocab([path.read_text()], 60).save_pretrained(path.parent / "tok")
    return path


def run(corpus, out, steps):
    return main(["pretrain", "--corpus", str(corpus), "--tokenizer", str(corpus.parent / "tok"), "--out", str(out),
                 "--preset", "tiny", "--seq-len", "32", "--batch-size", "4", "--max-steps", str(steps),
                 "--save-every", "5", "--eval-every", "5", "--workers", "1", "--no-progress"])


def test_the_run_records_the_recipe_and_a_longer_resumed_run_keeps_its_warm_up(corpus, tmp_path, capsys):
    assert run(corpus, tmp_path, 10) in (0, None)
    printed = capsys.readouterr().out
    assert "recipe small-budget: --arch modernbert, --lr 0.001" in printed
    config = json.loads((tmp_path / "run_config.json").read_text())
    assert (config["recipe"], config["arch"], config["warmup_steps"]) == ("small-budget", "modernbert", 2)
    assert "warmup_steps" in config["derived"]
    assert json.loads((tmp_path / "model" / "config.json").read_text())["model_type"] == "modernbert"
    # 20 steps would mean a warm-up of 4; the resumed run keeps the first run's 2 instead of refusing to resume.
    assert run(corpus, tmp_path, 20) in (0, None)
    assert "resuming from" in capsys.readouterr().out
    assert json.loads((tmp_path / "run_config.json").read_text())["warmup_steps"] == 2
