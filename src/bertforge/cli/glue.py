"""`bertforge glue`: the GLUE benchmark from its official folder (``bertforge.glue``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bertforge.cli.commands import Command, model_dir, out_dir
from bertforge.errors import require_dir
from bertforge.options import add_arguments, from_namespace
from bertforge.recipe_files import add_config_argument


def _arguments(p: argparse.ArgumentParser) -> None:
    from bertforge.glue.settings import GlueSettings

    add_arguments(p, GlueSettings, required=("data", "model", "out"))
    add_config_argument(p)


def _run(args: argparse.Namespace) -> None:
    from bertforge.glue.settings import GlueSettings

    settings = from_namespace(GlueSettings, args)
    require_dir(settings.data, flag="--data", what="GLUE folder")
    model_dir(settings.model)
    out_dir(settings.out, inputs=[settings.data, settings.model])
    from bertforge.glue.run import run_glue

    results = run_glue(settings)
    print((Path(settings.out) / "glue.md").read_text(encoding="utf-8").rstrip())
    sub = results["submission"]
    print(f"results: {settings.out}/results.json   plot: {settings.out}/glue.png" +
          (f"   submission: {sub['zip']}" if sub["zip"] else ""))


COMMANDS = (Command("glue", "the GLUE benchmark from its official files: every task x seed fine-tuned, medians, the "
                    "GLUE score, a submission for gluebenchmark.com (resumable)", _arguments, _run),)
