"""The main job runs end to end through the CLI (a few pre-training steps and a small SNLI recipe here; `make demo`
runs the full ones), prints its evidence and ends on SNLI test accuracy, written to demo_results.json."""

import json
import warnings

import pytest

from bertforge import demo
from bertforge.cli import main

pytestmark = pytest.mark.slow

SMALL = demo.SnliRecipe(train=400, dev=100, test=200, epochs=1)


def test_demo_pretrains_then_finetunes_on_snli(tmp_path, fetched, capsys, monkeypatch):
    fetched("minilm"), fetched("gensim-data"), fetched("snli")
    monkeypatch.setattr(demo, "SNLI", SMALL)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() installs its one-line warnings
    main(["demo", "--max-steps", "3", "--out", str(tmp_path / "d")])
    out = capsys.readouterr().out
    # the pre-training and its cloze table, on a few hundred held-out sentences
    for row in ("unigram (most frequent word)", "bigram (after the word before)", "MiniLM, new head (step 0)",
                "pre-trained, step 3"):
        assert row in out
    held = [line for line in out.splitlines() if line.startswith("Cloze")]
    assert held and int(held[0].split(": ")[1].split()[0]) >= 200
    assert (tmp_path / "d" / "model" / "model.safetensors").is_file()
    # then fine-tuning on SNLI, scored on test pairs against the majority class, and the last screen's examples
    assert out.index("Cloze on documents") < out.index("Fine-tuning it on SNLI") < out.index("SNLI test:")
    for row in ("majority class (always", "fine-tuned, pre-trained (this run)", "fine-tuned, random init"):
        assert row in out
    assert out.count("          premise:    ") == demo.EXAMPLES == out.count("          hypothesis: ")
    assert out.count("[right]") + out.count("[wrong]") == demo.EXAMPLES
    results = json.loads((tmp_path / "d" / "demo_results.json").read_text())
    snli = results["snli"]
    assert (snli["train_pairs"], snli["dev_pairs"], snli["test_pairs"], snli["epochs"]) == (400, 100, 200, 1)
    for key in ("accuracy", "majority_accuracy", "random_init_accuracy"):
        assert isinstance(snli[key], float) and 0 <= snli[key] <= 1
    assert snli["majority_class"] in ("entailment", "neutral", "contradiction")
    assert 0.25 < snli["majority_accuracy"] < 0.45  # SNLI's three classes are about balanced
    assert (tmp_path / "d" / "snli" / "model" / "model.safetensors").is_file()
    assert set(results["wall_s"]) == {"pretrain_s", "cloze_s", "snli_s", "total_s"}
    assert f"{snli['accuracy']:.1%}" in out and f"{snli['majority_accuracy']:.1%}" in out
