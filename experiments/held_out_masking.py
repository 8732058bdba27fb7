"""Score a masked-LM pre-training run on its held-out text under another masking.

A run's own held-out perplexity is measured on the targets its masking picks. Span masking hides whole spans, so
each target has lost its nearest neighbours too: its perplexity measures a harder task than token masking's, and
the two rows' figures do not compare. This scores a saved model on the same held-out instances with the masking
switched (``--mask-spans`` on or off, and ``--masked-lm-prob``), against the unigram perplexity of those same
targets, and prints one JSON line: a span-masked model that has left the unigram stage shows it here on
token-masked targets.

    python experiments/held_out_masking.py runs/study/pretrain/spans --mask-spans off
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from bertforge.data.pretraining_data import InstanceStore, eval_batches
from bertforge.errors import BertforgeError, UsageError
from bertforge.objectives import OBJECTIVES
from bertforge.objectives.count_lm import CountLM
from bertforge.train.settings import PretrainArgs


def run_settings(run: Path, **changes) -> PretrainArgs:
    """The run's own settings (``run_config.json``) with ``changes``."""
    if not (run / "run_config.json").is_file():
        raise UsageError(f"{run}: no run_config.json, so not a pre-training run's directory",
                         hint="give the --out of a `bertforge pretrain` run")
    missing = [name for name in ("model", "data") if not (run / name).is_dir()]
    if missing:
        raise UsageError(f"{run}: no {' or '.join(f'{m}/' for m in missing)}, so not a finished pre-training run",
                         hint="a run keeps its model/ and data/ beside run_config.json; give the --out of a run "
                              "that has saved its model")
    saved = json.loads((run / "run_config.json").read_text())
    names = {f.name for f in dataclasses.fields(PretrainArgs) if f.init}
    return PretrainArgs(**{**{k: v for k, v in saved.items() if k in names}, **changes})


def score(run: Path, mask_spans: bool, masked_lm_prob: float | None = None) -> dict:
    from transformers import BertTokenizer

    trained = run_settings(run)
    changes = {"mask_spans": mask_spans}
    if masked_lm_prob is not None:  # the most predictions a sequence holds scales with the rate, as the run's did
        changes.update(masked_lm_prob=masked_lm_prob, max_predictions_per_seq=round(
            trained.max_predictions_per_seq * masked_lm_prob / trained.masked_lm_prob))
    args = run_settings(run, **changes)
    objective_type = OBJECTIVES[args.objective]
    if "mlm" not in objective_type.loss_names:
        masked = ", ".join(name for name, o in OBJECTIVES.items() if "mlm" in o.loss_names)
        raise UsageError(f"{run} was pre-trained with --objective {args.objective}, which has no masked LM",
                         hint=f"give a run of a masked-LM objective ({masked})")
    tokenizer = BertTokenizer.from_pretrained(run / "model")
    objective = objective_type.from_args(tokenizer, args)
    objective.count_lm = CountLM.from_store(InstanceStore(run / "data", "train"), tokenizer.vocab_size)
    model = objective.load_model(run / "model")
    held_out = eval_batches(InstanceStore(run / "data", "eval"), objective, args.batch_size, args.eval_instances)
    figures = objective.evaluate(model, held_out, torch.device("cpu"))
    return {"run": str(run), "trained": {"mask_spans": trained.mask_spans, "masked_lm_prob": trained.masked_lm_prob},
            "scored": {"mask_spans": args.mask_spans, "masked_lm_prob": args.masked_lm_prob}, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="pre-training run directories (with model/ and data/)")
    parser.add_argument("--mask-spans", choices=("on", "off"), required=True,
                        help="the masking of the held-out targets: SpanBERT spans or single pieces")
    parser.add_argument("--masked-lm-prob", type=float, help="the share of pieces masked (default: each run's own)")
    args = parser.parse_args()
    if args.masked_lm_prob is not None and not 0 < args.masked_lm_prob < 1:
        parser.error(f"--masked-lm-prob {args.masked_lm_prob} is not a share between 0 and 1")
    for run in args.runs:
        try:
            print(json.dumps(score(run, args.mask_spans == "on", args.masked_lm_prob)), flush=True)
        except BertforgeError as e:  # one line, as the command line reports it; the runs before it are printed
            parser.exit(2, f"{parser.prog}: error: {e}\n")


if __name__ == "__main__":
    main()
