"""The `bertforge` command line: thin sub-commands over the library."""

from __future__ import annotations

import argparse
import sys

from bertforge import __version__


def _data_fetch(args: argparse.Namespace) -> None:
    from bertforge.data.fetch import SOURCES, fetch

    if args.list or not args.names:
        for name, source in SOURCES.items():
            print(f"{name:<18} {source.requirement:<28} {source.description}")
        return
    for name in args.names:
        print(fetch(name))


def _demo(args: argparse.Namespace) -> None:
    from bertforge.demo import run_demo

    run_demo()


def _encode(args: argparse.Namespace) -> None:
    import json

    from bertforge.inference import encode
    from bertforge.model import BertModel
    from bertforge.tokenization import BertTokenizer

    model, tokenizer = BertModel.from_pretrained(args.model), BertTokenizer.from_pretrained(args.model)
    with open(args.input, encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f]
    vectors = encode(model, tokenizer, texts, pooling=args.pooling, normalize=args.normalize)
    out = open(args.output, "w", encoding="utf-8") if args.output != "-" else sys.stdout
    for v in vectors.tolist():
        out.write(json.dumps([round(x, 6) for x in v]) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertforge", description="Pre-train, fine-tune, evaluate and "
                                     "serve BERT, with checkpoints that transformers loads too.")
    parser.add_argument("--version", action="version", version=f"bertforge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    data = commands.add_parser("data", help="fetch real corpora and weights into the cache")
    data_commands = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    fetch = data_commands.add_parser("fetch", help="download a source by name (see --list)")
    fetch.add_argument("names", nargs="*", help="source names, e.g. minilm")
    fetch.add_argument("--list", action="store_true", help="list the sources")
    fetch.set_defaults(func=_data_fetch)

    demo = commands.add_parser("demo", help="the main job: a small real end-to-end run")
    demo.set_defaults(func=_demo)

    enc = commands.add_parser("encode", help="one vector per input line, as JSON lines")
    enc.add_argument("--model", required=True, help="model directory (transformers layout)")
    enc.add_argument("--input", required=True, help="text file, one input per line")
    enc.add_argument("--output", default="-", help="output file (default: stdout)")
    enc.add_argument("--pooling", choices=["mean", "cls", "pooler"], default="mean")
    enc.add_argument("--normalize", action="store_true", help="L2-normalise the vectors")
    enc.set_defaults(func=_encode)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return
    try:
        args.func(args)
    except (FileNotFoundError, ValueError) as e:  # user errors: one clear line, no traceback
        sys.exit(f"bertforge {args.command}: error: {e}")
