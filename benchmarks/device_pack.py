"""What a lent GPU machine needs from here, in `.device/` (git-ignored, ~8 MB), for benchmarks/device_check.sh.

The device machine reaches no registry, and what travels with the working tree is capped at 64 MiB, so the
real MiniLM (87 MB) and SNLI (98 MB) cannot go as they are. Speed does not depend on the weights' values:

    .venv/bin/python benchmarks/device_pack.py             # here: MiniLM's config and tokenizer, SNLI slices
    python3 benchmarks/device_pack.py --weights            # there: random weights of MiniLM's shape (seed 0)

`.device/cache/` is laid out as bertforge's fetch cache (``BERTFORGE_CACHE``): `minilm/` (config, tokenizer,
and there the random `model.safetensors`) and `snli/` (the first 6,000 training pairs and 2,000 test pairs).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / ".device" / "cache"
MINILM_FILES = ("config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt")
SNLI_LINES = {"snli_1.0_train_subset.jsonl": 6000, "snli_1.0_test.jsonl": 2000}


def pack() -> None:
    from bertforge.data.fetch import fetch

    minilm, snli = fetch("minilm"), fetch("snli")
    shutil.rmtree(PACK, ignore_errors=True)
    (PACK / "minilm").mkdir(parents=True)
    (PACK / "snli").mkdir()
    for name in MINILM_FILES:
        shutil.copy2(minilm / name, PACK / "minilm" / name)
    for name, n in SNLI_LINES.items():
        with open(snli / name, encoding="utf-8") as source, open(PACK / "snli" / name, "w", encoding="utf-8") as out:
            for _, line in zip(range(n), source):
                out.write(line)
    size = sum(f.stat().st_size for f in PACK.rglob("*") if f.is_file())
    print(f"wrote {PACK} ({size / 2**20:.1f} MiB); carry '.device' to the device machine")


def random_weights() -> None:
    import torch

    from bertforge.config import BertConfig
    from bertforge.io import weights
    from bertforge.model import BertModel

    target = PACK / "minilm" / "model.safetensors"
    torch.manual_seed(0)
    model = BertModel(BertConfig.from_json_file(PACK / "minilm" / "config.json"))
    weights.save_state_dict(model.state_dict(), target)
    print(f"wrote random weights of MiniLM's shape to {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", action="store_true", help="write random MiniLM-shaped weights into the pack")
    if parser.parse_args().weights:
        random_weights()
    else:
        pack()


if __name__ == "__main__":
    main()
