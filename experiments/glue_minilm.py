"""docs/glue.md's table: `bertforge glue` on what exists offline, through the official layout. SNLI's pairs written
as MNLI (columns and file names; SNLI's test pairs as dev_matched and dev_mismatched) and Pang & Lee's polarity
sentences as SST-2, fine-tuned from the real all-MiniLM-L6-v2.

    .venv/bin/python experiments/glue_minilm.py [--train-pairs 4000] [--out runs/glue-minilm]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.glue.files import write_polarity_as_sst2, write_snli_as_mnli  # noqa: E402  (the layout writers)

from bertforge.cli import main as bertforge  # noqa: E402
from bertforge.data.fetch import fetch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-pairs", type=int, default=4000)
    parser.add_argument("--dev-pairs", type=int, default=1000)
    parser.add_argument("--out", default="runs/glue-minilm")
    args = parser.parse_args()
    data = Path(args.out) / "GLUE"
    write_snli_as_mnli(fetch("snli"), data, n_train=args.train_pairs, n_dev=args.dev_pairs)
    write_polarity_as_sst2(fetch("gensim-data") / "pang_lee_polarity.cor", data)
    bertforge(["glue", "--data", str(data), "--model", str(fetch("minilm")), "--out", str(Path(args.out) / "run"),
               "--tasks", "mnli,sst2", "--seeds", "3", "--set", "mnli.epochs=1", "--no-progress"])


if __name__ == "__main__":
    main()
