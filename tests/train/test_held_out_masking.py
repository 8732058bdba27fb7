"""experiments/held_out_masking.py: scoring a saved masked-LM run on its held-out text under its own masking gives
the run's own last evaluation back; under another masking it scores other targets of the same text."""

import importlib.util
import json
import math
import random
from pathlib import Path

import pytest
import torch

from bertforge.train.pretrain import pretrain
from bertforge.train.settings import PretrainArgs

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "held_out_masking.py"
WORDS = "the a river bird sings over under house tree small big red green runs sees".split()


@pytest.fixture(scope="module")
def held_out_masking():
    spec = importlib.util.spec_from_file_location("held_out_masking", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def spans_run(tmp_path_factory):
    from bertforge.vocab import train_vocab

    rng = random.Random(0)
    d = tmp_path_factory.mktemp("spans")
    docs = ["\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))) + "."
                      for _ in range(rng.randint(3, 7))) for _ in range(120)]
    (d / "corpus.txt").write_text("\n\n".join(docs) + "\n")
    train_vocab([(d / "corpus.txt").read_text()], 60).save_pretrained(d / "tok")
    torch.set_num_threads(1)
    pretrain(PretrainArgs(corpus=[str(d / "corpus.txt")], tokenizer=str(d / "tok"), out=str(d / "run"), preset="tiny",
                          objective="mlm", mask_spans=True, masked_lm_prob=0.4, max_predictions_per_seq=13,
                          seq_len=32, batch_size=4, max_steps=3, warmup_steps=0, eval_every=3, eval_fraction=0.1,
                          workers=1, progress=False))
    return d / "run"


def last_evaluation(run: Path) -> dict:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "eval_mlm_loss" in r][-1]


@pytest.mark.slow
def test_its_own_masking_gives_the_runs_own_evaluation_back(held_out_masking, spans_run):
    scored = held_out_masking.score(spans_run, mask_spans=True)
    own = last_evaluation(spans_run)
    assert scored["trained"] == scored["scored"] == {"mask_spans": True, "masked_lm_prob": 0.4}
    for key in ("eval_mlm_loss", "eval_unigram_perplexity", "eval_perplexity_vs_unigram"):
        assert scored[key] == pytest.approx(own[key], rel=1e-6), key


@pytest.mark.slow
def test_another_masking_scores_other_targets_of_the_same_text(held_out_masking, spans_run):
    own = last_evaluation(spans_run)
    tokens = held_out_masking.score(spans_run, mask_spans=False, masked_lm_prob=0.15)
    assert tokens["scored"] == {"mask_spans": False, "masked_lm_prob": 0.15}
    assert tokens["eval_unigram_perplexity"] != pytest.approx(own["eval_unigram_perplexity"], rel=1e-6)
    assert tokens["eval_perplexity"] == pytest.approx(math.exp(tokens["eval_mlm_loss"]), rel=1e-6)


def test_bad_input_is_one_line_naming_the_run_or_the_flag(held_out_masking, tmp_path, monkeypatch, capsys):
    def run(*argv):
        monkeypatch.setattr("sys.argv", ["held_out_masking.py", *argv])
        with pytest.raises(SystemExit) as stopped:
            held_out_masking.main()
        assert stopped.value.code == 2
        return capsys.readouterr().err

    assert "--masked-lm-prob 1.5 is not a share between 0 and 1" in run(str(tmp_path), "--mask-spans", "off",
                                                                       "--masked-lm-prob", "1.5")
    assert f"{tmp_path}: no run_config.json" in run(str(tmp_path), "--mask-spans", "off")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "run_config.json").write_text(json.dumps({"corpus": ["c.txt"], "objective": "mlm"}))
    (unfinished / "data").mkdir()
    assert f"{unfinished}: no model/, so not a finished pre-training run" in run(str(unfinished), "--mask-spans", "off")
    ltr = tmp_path / "ltr"
    for name in ("model", "data"):
        (ltr / name).mkdir(parents=True)
    (ltr / "run_config.json").write_text(json.dumps({"corpus": ["c.txt"], "out": str(ltr), "objective": "ltr"}))
    error = run(str(ltr), "--mask-spans", "off")
    assert f"{ltr} was pre-trained with --objective ltr, which has no masked LM" in error
    assert "Traceback" not in error and "mlm" in error.split("which has no masked LM")[1]  # the objectives to use
