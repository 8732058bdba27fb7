"""`bertforge ablate`: the paper's ablations, pre-training and fine-tuning every variant (``bertforge.ablation``)."""

from __future__ import annotations

import argparse

from bertforge.cli.commands import Command, out_dir
from bertforge.options import add_arguments, from_namespace
from bertforge.recipe_files import add_config_argument


def _arguments(p: argparse.ArgumentParser) -> None:
    from bertforge.ablation.plan import Study

    add_arguments(p, Study, required=("corpus", "task", "out"))
    add_config_argument(p)
    p.add_argument("--quick", action="store_true", help="tiny settings (tiny preset, 30 steps, 1 seed, 64 training "
                   "examples): the whole chain in a few minutes")


def _run(args: argparse.Namespace) -> None:
    from bertforge.ablation.plan import Study

    if args.quick:
        fields = Study.__dataclass_fields__
        given = {k: v for k, v in vars(args).items() if k in fields and v is not None and v != fields[k].default}
        study = Study.quick(**given)
    else:
        study = from_namespace(Study, args)
    out_dir(study.out)
    from bertforge.ablation import run_study

    run_study(study)


COMMANDS = (Command("ablate", "the paper's ablations: pre-train every variant at equal compute, fine-tune each on every "
                    "task with every seed, write the table (resumable)", _arguments, _run),)
