"""Golden weights: five small fixed-seed CLI runs with a fixed tokenizer, and a sha256 of every weights file they
save, so a refactor that should not change the numbers can be checked to be bit-identical.

Runs (tiny preset, CPU, one process): pretrain mlm+nsp (20 steps); pretrain --objective mlm --whole-word-mask
--optimizer lamb --schedule cosine --grad-accum 2 (20 steps); finetune classify, tag and qa (a few steps each)
from the first run's model.

    .venv/bin/python benchmarks/golden_weights.py > after.txt
    PYTHONPATH=/tmp/before/src .venv/bin/python benchmarks/golden_weights.py > before.txt   # the old tree
    diff before.txt after.txt
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

WORDS = ("the a cat dog runs sees big small red green house tree river walks quickly slowly bird sings over under "
         "near far Alice Bob lives in Paris London good bad movie plot").split()
PRETRAIN = ["--preset", "tiny", "--seq-len", "32", "--batch-size", "4", "--max-steps", "20", "--save-every", "10",
            "--eval-every", "10", "--log-every", "5", "--warmup-steps", "4", "--lr", "1e-3", "--workers", "1",
            "--eval-instances", "16", "--seed", "7", "--no-progress",
            # Google's masking, spelled out: the small presets' recipe would choose other rates (docs/recipes.md)
            "--masked-lm-prob", "0.15", "--max-predictions-per-seq", "20"]
FINETUNE = ["--epochs", "1", "--batch-size", "8", "--lr", "1e-3", "--seeds", "3", "--no-progress"]


def corpus(path: Path) -> Path:
    rng = random.Random(0)
    docs = ["\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + "."
                      for _ in range(rng.randint(3, 7))) for _ in range(80)]
    path.write_text("\n\n".join(docs) + "\n")
    return path


def task_files(d: Path) -> dict[str, tuple[str, ...]]:
    """Training (= dev) files and flags of each fine-tuning run."""
    rng = random.Random(1)
    rows = [{"text": " ".join(rng.sample(WORDS[:20], 5) + [w]), "label": "pos" if w == "good" else "neg"}
            for w in (rng.choice(["good", "bad"]) for _ in range(48))]
    (d / "cls.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tagged = "".join(f"{name} B-PER\nlives O\nin O\n{city} B-LOC\n. O\n\n"
                     for name, city in ((rng.choice(["Alice", "Bob"]), rng.choice(["Paris", "London"]))
                                        for _ in range(40)))
    (d / "tag.conll").write_text(tagged)
    from bertforge.data.fetch import fetch

    squad = str(fetch("allennlp-fixtures", quiet=True) / "squad.json")
    return {"classify": (str(d / "cls.jsonl"),), "tag": (str(d / "tag.conll"), "--format", "conll"),
            "qa": (squad, "--max-length", "96", "--doc-stride", "32")}


def run(argv: list[str]) -> None:
    from bertforge.cli import main

    print("$ bertforge " + " ".join(argv), file=sys.stderr, flush=True)
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the hashes alone
        main(argv)


def main() -> None:
    import bertforge
    from bertforge.vocab import train_vocab

    print(f"# bertforge from {Path(bertforge.__file__).parent}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        text = corpus(root / "corpus.txt")
        train_vocab([text.read_text()], 120).save_pretrained(root / "tok")
        common = ["--corpus", str(text), "--tokenizer", str(root / "tok")]
        run(["pretrain", *common, "--out", str(root / "mlm-nsp"), *PRETRAIN, "--objective", "mlm+nsp"])
        run(["pretrain", *common, "--out", str(root / "mlm-wwm-lamb"), *PRETRAIN, "--objective", "mlm",
             "--whole-word-mask", "--optimizer", "lamb", "--schedule", "cosine", "--grad-accum", "2"])
        for task, (data, *flags) in task_files(root).items():
            run(["finetune", "--task", task, "--model", str(root / "mlm-nsp" / "model"), "--train", data, "--dev", data,
                 "--out", str(root / f"finetune-{task}"), *FINETUNE, *flags])
        for path in sorted(root.rglob("*.safetensors")):
            print(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(root)}")


if __name__ == "__main__":
    main()
