"""Builds a GLUE folder in the exact official layout (as download_glue_data.py writes it), a few rows per task with
every quirk: CoLA's headerless train/dev and its test header, the test files' index columns, MNLI's
matched/mismatched files and extra columns, QQP rows cut by a newline inside a question, STS-B's float
scores, unquoted fields holding a lone ``"``, MRPC's byte-order mark. The words are ``VOCAB``'s, which the
tiny test model's tokenizer knows."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = ("the a cat dog man woman child bird plays runs sees eats sleeps big small red green house tree park "
         "river quickly slowly is was not no yes today what who why how does did").split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = list(dict.fromkeys(SPECIALS + list(".,?!'\"-") + list("0123456789") + WORDS))
NLI3 = ("entailment", "neutral", "contradiction")
NLI2 = ("entailment", "not_entailment")
MNLI_TRAIN = ("index promptID pairID genre sentence1_binary_parse sentence2_binary_parse sentence1_parse "
              "sentence2_parse sentence1 sentence2 label1 gold_label").split()
MNLI_DEV = MNLI_TRAIN[:-2] + "label1 label2 label3 label4 label5 gold_label".split()
MNLI_TEST = MNLI_TRAIN[:-2]
STSB = "index genre filename year old_index source1 source2 sentence1 sentence2 score".split()
QQP_BROKEN = 2  # records of QQP's train.tsv cut in two by a newline: 4 skipped lines


def sentence(rng: random.Random, quote: bool = False) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 7))]
    if quote:
        words.insert(1, '"')  # GLUE's files never quote: a lone " is part of the text
    return " ".join(words).capitalize() + " ."


def balanced(labels, n: int, rng: random.Random) -> list:
    out = [labels[i % len(labels)] for i in range(n)]
    rng.shuffle(out)
    return out


def _tsv(path: Path, header: list[str] | None, rows: list[list[str]], bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ([("\ufeff" if bom else "") + "\t".join(header)] if header else []) + ["\t".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_glue(root: Path, n_train: int = 24, n_dev: int = 9, n_test: int = 6, seed: int = 0) -> Path:
    """Every GLUE folder; returns ``root``. Test rows' index columns start at 0 as the real ones do."""
    rng = random.Random(seed)
    s = lambda i=0: sentence(rng, quote=i % 5 == 1)  # noqa: E731
    for split, n in (("train", n_train), ("dev", n_dev)):  # CoLA: source, label, original mark, sentence; no header
        _tsv(root / "CoLA" / f"{split}.tsv", None, [["gj04", y, "" if y == "1" else "*", s(i)]
                                                    for i, y in enumerate(balanced("01", n, rng))])
    _tsv(root / "CoLA" / "test.tsv", ["index", "sentence"], [[i, s(i)] for i in range(n_test)])
    for split, n in (("train", n_train), ("dev", n_dev)):  # SST-2's sentences end with a space
        _tsv(root / "SST-2" / f"{split}.tsv", ["sentence", "label"], [[s(i) + " ", y]
                                                                      for i, y in enumerate(balanced("01", n, rng))])
    _tsv(root / "SST-2" / "test.tsv", ["index", "sentence"], [[i, s(i)] for i in range(n_test)])
    mrpc = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    for split, n in (("train", n_train), ("dev", n_dev)):  # train.tsv keeps the MS file's byte-order mark
        rows = [[y, 1000 + i, 2000 + i, s(i), s()] for i, y in enumerate(balanced("01", n, rng))]
        _tsv(root / "MRPC" / f"{split}.tsv", mrpc, rows, bom=split == "train")
    _tsv(root / "MRPC" / "test.tsv", ["index", *mrpc[1:]], [[i, 3000 + i, 4000 + i, s(i), s()] for i in range(n_test)])
    for split, n in (("train", n_train), ("dev", n_dev)):
        _tsv(root / "STS-B" / f"{split}.tsv", STSB, [[i, "main-captions", "MSRvid", "2012test", f"{i:04d}", "none",
                                                      "none", s(i), s(), f"{rng.uniform(0, 5):.3f}"] for i in range(n)])
    _tsv(root / "STS-B" / "test.tsv", STSB[:-1], [[i, "main-forums", "answers", "2015", f"{i:04d}", "none", "none",
                                                   s(i), s()] for i in range(n_test)])
    qqp = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = [[i, 2 * i, 2 * i + 1, s(i), s(), y] for i, y in enumerate(balanced("01", n, rng))]
        if split == "train":  # a question with a newline: the record is cut into two short lines
            for k in range(QQP_BROKEN):
                rows.insert(3 + 3 * k, [900 + k, 1, 2, "How does a cat"])
                rows.insert(4 + 3 * k, ["sleep ?", "Why does a dog run ?", "0"])
        _tsv(root / "QQP" / f"{split}.tsv", qqp, rows)
    _tsv(root / "QQP" / "test.tsv", ["id", "question1", "question2"], [[i, s(i), s()] for i in range(n_test)])
    for name, header, n in (("train", MNLI_TRAIN, n_train), ("dev_matched", MNLI_DEV, n_dev),
                            ("dev_mismatched", MNLI_DEV, n_dev)):
        rows = []
        for i, y in enumerate(balanced(NLI3, n, rng)):
            a, b = s(i), s()
            extra = [y] if name == "train" else [y, rng.choice(NLI3), y, y, rng.choice(NLI3)]
            rows.append([i, 100 + i, f"{100 + i}e", "fiction", f"( {a} )", f"( {b} )", f"(ROOT {a})", f"(ROOT {b})",
                         a, b, *extra, y])
        _tsv(root / "MNLI" / f"{name}.tsv", header, rows)
    for name in ("test_matched", "test_mismatched"):
        rows = []
        for i in range(n_test):
            a, b = s(i), s()
            rows.append([i, 500 + i, f"{500 + i}n", "travel", f"( {a} )", f"( {b} )", f"(ROOT {a})", f"(ROOT {b})",
                         a, b])
        _tsv(root / "MNLI" / f"{name}.tsv", MNLI_TEST, rows)
    for folder, labels, first in (("QNLI", NLI2, "question"), ("RTE", NLI2, "sentence1"), ("WNLI", "01", "sentence1")):
        second = "sentence" if folder == "QNLI" else "sentence2"
        for split, n in (("train", n_train), ("dev", n_dev)):
            _tsv(root / folder / f"{split}.tsv", ["index", first, second, "label"],
                 [[i, s(i), s(), y] for i, y in enumerate(balanced(labels, n, rng))])
        _tsv(root / folder / "test.tsv", ["index", first, second], [[i, s(i), s()] for i in range(n_test)])
    _tsv(root / "diagnostic" / "diagnostic.tsv", ["index", "sentence1", "sentence2"],
         [[i, s(i), s()] for i in range(n_test + 1)])
    return root


def _clean(text: str) -> str:
    return " ".join(text.split())  # no tab or newline may reach a GLUE row


def write_snli_as_mnli(snli: Path, root: Path, n_train: int, n_dev: int) -> Path:
    """Real pairs in MNLI's layout (columns and file names): train.tsv from SNLI's training subset,
    dev_matched.tsv and dev_mismatched.tsv from the first 2 x ``n_dev`` pairs of its test set ('-' dropped)."""
    import json

    def pairs(path: Path, n: int) -> list[dict]:
        out = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                if record["gold_label"] != "-":
                    out.append(record)
                    if len(out) == n:
                        break
        return out

    def row(i: int, r: dict, dev: bool) -> list:
        a, b = _clean(r["sentence1"]), _clean(r["sentence2"])
        labels = (r.get("annotator_labels") or [r["gold_label"]])[:5] if dev else [r["gold_label"]]
        labels += [""] * (5 - len(labels)) if dev else []
        return [i, r["captionID"], r["pairID"], "snli", _clean(r["sentence1_binary_parse"]),
                _clean(r["sentence2_binary_parse"]), _clean(r["sentence1_parse"]), _clean(r["sentence2_parse"]),
                a, b, *labels, r["gold_label"]]

    train = pairs(snli / "snli_1.0_train_subset.jsonl", n_train)
    test = pairs(snli / "snli_1.0_test.jsonl", 2 * n_dev)
    _tsv(root / "MNLI" / "train.tsv", MNLI_TRAIN, [row(i, r, False) for i, r in enumerate(train)])
    _tsv(root / "MNLI" / "dev_matched.tsv", MNLI_DEV, [row(i, r, True) for i, r in enumerate(test[:n_dev])])
    _tsv(root / "MNLI" / "dev_mismatched.tsv", MNLI_DEV, [row(i, r, True) for i, r in enumerate(test[n_dev:])])
    return root


def write_polarity_as_sst2(polarity: Path, root: Path, n_dev: int = 40, n_test: int = 40) -> Path:
    """Pang & Lee's polarity sentences (fastText lines, cp1252) in SST-2's layout, shuffled with a fixed seed:
    dev.tsv and test.tsv from the first ``n_dev`` and ``n_test``, train.tsv from the rest."""
    rows = []
    for line in polarity.read_text(encoding="cp1252").splitlines():
        label, _, text = line.partition(" ")
        if text.strip():
            rows.append((_clean(text) + " ", "1" if label == "__label__pos" else "0"))
    random.Random(0).shuffle(rows)
    dev, test, train = rows[:n_dev], rows[n_dev:n_dev + n_test], rows[n_dev + n_test:]
    _tsv(root / "SST-2" / "train.tsv", ["sentence", "label"], [list(r) for r in train])
    _tsv(root / "SST-2" / "dev.tsv", ["sentence", "label"], [list(r) for r in dev])
    _tsv(root / "SST-2" / "test.tsv", ["index", "sentence"], [[i, text] for i, (text, _) in enumerate(test)])
    return root
