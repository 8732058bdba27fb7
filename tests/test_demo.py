"""The main job runs end to end (a few steps here; `make demo` runs the full recipe) and prints its evidence."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_demo_prints_the_cloze_table_and_fill_mask(tmp_path, fetched):
    fetched("minilm"), fetched("gensim-data")
    run = subprocess.run([sys.executable, "-m", "bertforge", "demo", "--max-steps", "3", "--out", str(tmp_path / "d")],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    out = run.stdout
    for row in ("unigram (most frequent word)", "bigram (after the word before)", "MiniLM, new head (step 0)",
                "pre-trained, step 3"):
        assert row in out
    assert "Cloze on documents never trained on" in out and out.count("      -> ") == 6
    assert (tmp_path / "d" / "model" / "model.safetensors").is_file()
    # a few hundred held-out sentences to guess in (5% of the Wikipedia articles and lee.cor)
    held = [line for line in out.splitlines() if line.startswith("Cloze")]
    assert held and int(held[0].split(": ")[1].split()[0]) >= 200  # sentences to guess in
