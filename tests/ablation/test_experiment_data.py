"""experiments/ablation.py's data step for the English study: the newsgroups sample (a Python 2 pickle of an
sklearn Bunch with numpy arrays inside) and SNLI's fixed splits, written where the study reads them."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_english_study_data(fetched, tmp_path, monkeypatch):
    fetched("gensim-data")
    fetched("snli")
    spec = importlib.util.spec_from_file_location("ablation_experiment", ROOT / "experiments" / "ablation.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(script, "DATA", tmp_path)
    corpus, (task,) = script.english()
    posts = Path(corpus[-1]).read_text(encoding="utf-8").splitlines()
    assert len(posts) == 200 and all(posts) and not any(p.startswith(("From:", "Subject:")) for p in posts)
    assert all(Path(p).is_file() for p in corpus)
    name, files = task.split(":", 1)
    assert name == "snli=classify"
    train, dev, test = ([json.loads(line) for line in open(f, encoding="utf-8")] for f in files.split(","))
    assert (len(train), len(dev), len(test)) == (10000, 2000, 9824)
    assert {r["label"] for r in train} == {"entailment", "neutral", "contradiction"}
    assert train[0]["text"] and train[0]["text_pair"]

    with_text, _ = script.english(with_snli_text=True)
    assert with_text[:-1] == corpus
    documents = Path(with_text[-1]).read_text(encoding="utf-8").split("\n\n")
    sentences = {line for d in documents for line in d.splitlines()}
    assert len(documents) > 20000  # one per premise of the ~88,000 pairs after the first 12,000
    assert not sentences & {r[k] for r in dev + test for k in ("text", "text_pair")}  # no held-out sentence
    assert len(sentences) > 100000

    # a second piece of the study leaves the same files untouched: a prepared corpus is known by size and mtime
    written = {p: Path(p).stat().st_mtime_ns for p in with_text + files.split(",")}
    Path(files.split(",")[0]).write_text("changed\n", encoding="utf-8")
    script.english(with_snli_text=True)
    after = {p: Path(p).stat().st_mtime_ns for p in written}
    changed = [p for p in written if after[p] != written[p]]
    assert changed == [files.split(",")[0]]  # only the file whose text differed was written again
    assert len(Path(changed[0]).read_text(encoding="utf-8").splitlines()) == 10000
