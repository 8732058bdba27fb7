"""``bertforge convert``: Google's TensorFlow BERT checkpoints to model directories and back, without
TensorFlow (``bertforge.io.tf_checkpoint``, ``bertforge.io.google_bert``).

    bertforge convert tf CKPT_PREFIX [--config bert_config.json --vocab vocab.txt] --out DIR [--task ...]
    bertforge convert --to tf MODEL_DIR --out PREFIX
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bertforge.cli.commands import Command, model_dir, out_dir
from bertforge.errors import PathError, UsageError, require_file

TASK_CHOICES = ("auto", "pretraining", "classify", "qa", "encoder")  # keep in step with google_bert.TASKS


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", nargs="+", metavar="SOURCE",
                   help="tf CKPT_PREFIX: a TensorFlow checkpoint written by Google's BERT code (its prefix, .index, "
                        "or the folder holding it); with --to tf: a model directory")
    p.add_argument("--to", choices=("tf",), help="the other way: write a model directory as a TensorFlow checkpoint")
    p.add_argument("--out", required=True, help="the model directory to write; with --to tf, the checkpoint prefix "
                   "(PREFIX.index and PREFIX.data-00000-of-00001, with bert_config.json and vocab.txt beside them)")
    p.add_argument("--config", help="Google's bert_config.json (default: the one beside the checkpoint)")
    p.add_argument("--vocab", help="its vocab.txt (default: the one beside the checkpoint)")
    p.add_argument("--task", choices=TASK_CHOICES, default="auto",
                   help="the head to keep: pretraining (masked LM + next sentence), classify (run_classifier.py), qa "
                        "(run_squad.py), encoder (none); default: the head the checkpoint carries")
    case = p.add_mutually_exclusive_group()
    case.add_argument("--cased", action="store_true", help="keep case when tokenizing (a cased model); default: "
                      "cased when the checkpoint's folder is named cased_..., as Google names them")
    case.add_argument("--uncased", action="store_true", help="lower-case when tokenizing")


def _beside(prefix: Path, given: str | None, name: str, flag: str) -> Path:
    if given is not None:
        return require_file(given, flag=flag, what="file")
    path = prefix.parent / name
    if not path.is_file():
        raise PathError(f"no {name} beside the checkpoint", path=path, flag=flag, hint=f"pass {flag} PATH")
    return path


def _from_tf(args: argparse.Namespace) -> None:
    if len(args.source) != 2 or args.source[0] != "tf":
        raise UsageError("expected `bertforge convert tf CKPT_PREFIX --out DIR` (a TensorFlow checkpoint to a model "
                         "directory) or `bertforge convert --to tf MODEL_DIR --out PREFIX`")
    from bertforge.io.tf_checkpoint import checkpoint_prefix

    prefix = checkpoint_prefix(args.source[1], flag="CKPT_PREFIX")
    config = _beside(prefix, args.config, "bert_config.json", "--config")
    vocab = _beside(prefix, args.vocab, "vocab.txt", "--vocab")
    out = out_dir(args.out)
    if out.is_dir() and (out.resolve() == prefix.parent.resolve() or any(out.glob("*.index"))):
        raise PathError("holds a TensorFlow checkpoint; the model directory would replace it", path=out,
                        flag="--out", hint="write the model to a new directory")
    folder = prefix.parent.name.lower()
    cased = args.cased or (not args.uncased and "cased" in folder.replace("uncased", ""))
    from bertforge.io.google_bert import convert_from_tf

    report = convert_from_tf(prefix, config, vocab, out, task=args.task, lowercase=not cased)
    skipped = f"; skipped {len(report.skipped)} optimizer slots and step counters" if report.skipped else ""
    print(f"{prefix}: {report.tensors} variables ({report.parameters:,} parameters) -> {report.architecture} "
          f"({'cased' if cased else 'uncased'} tokenizer) in {out}{skipped}")


def _to_tf(args: argparse.Namespace) -> None:
    for flag in ("config", "vocab"):
        if getattr(args, flag) is not None:
            raise UsageError("only applies when reading a TensorFlow checkpoint; --to tf takes them from the "
                             "model directory", flag=f"--{flag}")
    if args.task != "auto" or args.cased or args.uncased:
        raise UsageError("--task, --cased and --uncased only apply when reading a TensorFlow checkpoint")
    if len(args.source) != 1:
        raise UsageError(f"--to tf takes one model directory, got {len(args.source)} arguments",
                         hint="bertforge convert --to tf MODEL_DIR --out PREFIX")
    source = model_dir(args.source[0], flag="MODEL_DIR")
    from bertforge.io.google_bert import tf_output_paths

    prefix = Path(args.out)
    if prefix.is_dir() or prefix.name in ("", ".", ".."):
        raise PathError("is a directory; --to tf takes a checkpoint prefix such as DIR/bert_model.ckpt", path=prefix,
                        flag="--out")
    if prefix.parent.exists() and not prefix.parent.is_dir():
        raise PathError("is a file, not a directory", path=prefix.parent, flag="--out")
    existing = [p for p in tf_output_paths(prefix) if p.exists()]
    if existing:
        raise PathError(f"{existing[0]} exists; bertforge will not overwrite it", path=prefix, flag="--out",
                        hint="choose a new prefix or folder")
    from bertforge.io.google_bert import convert_to_tf

    summary = convert_to_tf(source, prefix)
    print(f"{source}: {summary['tensors']} tensors ({summary['parameters']:,} parameters) -> "
          + ", ".join(str(p) for p in summary["files"]))


def _run(args: argparse.Namespace) -> None:
    (_to_tf if args.to else _from_tf)(args)


COMMANDS = (Command("convert", "Google's TensorFlow BERT checkpoints to model directories (convert tf CKPT_PREFIX "
                    "--out DIR), and back (convert --to tf MODEL_DIR --out PREFIX); no TensorFlow needed",
                    _arguments, _run),)
