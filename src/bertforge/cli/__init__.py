"""The `bertforge` command line: a table of thin commands over the library (``cli/commands.py``).

Every expected failure (a bad flag value, a missing or wrong-kind path, bad data, a model that does
not fit) is a :class:`bertforge.errors.BertforgeError` and ends the command with exit status 2 and
one line on stderr that says what and where; ``BERTFORGE_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from bertforge import __version__
from bertforge.cli.commands import COMMANDS
from bertforge.errors import BertforgeError, Located
from bertforge.recipe_files import RECIPE_COMMANDS, RecipeSource, apply_recipe


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line too (the flag and what is wrong), with exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bertforge", description="Pre-train, fine-tune, evaluate and serve BERT "
                                     "and the models it is compared with, with checkpoints transformers loads too.")
    parser.add_argument("--version", action="version", version=f"bertforge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    groups: dict[str, argparse._SubParsersAction] = {}
    parser.commands = {}  # command name -> its parser, for apply_recipe
    for command in COMMANDS:
        *group, name = command.name.split()
        target = commands
        if group:
            if group[0] not in groups:
                sub = commands.add_parser(group[0], help=command.group_help)
                groups[group[0]] = sub.add_subparsers(dest=f"{group[0]}_command", metavar="ACTION", required=True,
                                                      parser_class=_Parser)
            target = groups[group[0]]
        p = target.add_parser(name, help=command.help, description=command.help)
        command.arguments(p)
        p.set_defaults(func=command.run, command_name=command.name)
        parser.commands[command.name] = p
    return parser


def parse_command_line(argv: list[str]) -> tuple[argparse.Namespace, RecipeSource | None, argparse.ArgumentParser]:
    """The parsed flags, with the keys of a ``--config`` recipe as the defaults they override, and where each
    recipe value came from (None without one). A bad recipe raises its BertforgeError."""
    parser = build_parser()
    recipe = None
    if argv and argv[0] in RECIPE_COMMANDS:
        recipe = apply_recipe(parser.commands[argv[0]], argv[1:], argv[0])
    return parser.parse_args(argv), recipe, parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = os.environ.get("BERTFORGE_DEBUG") == "1"
    try:
        args, recipe, parser = parse_command_line(argv)
    except BertforgeError as e:  # a recipe file that cannot be read
        if debug:
            raise
        _fail(argv[0], e)
    if not getattr(args, "func", None):
        parser.print_help()
        return
    if not debug:
        warnings.showwarning = _one_line_warning
    try:
        args.func(args)
    except (BertforgeError, ValueError, OSError) as e:  # expected failures: one line, no traceback
        if debug:
            raise
        if recipe is not None and isinstance(e, Located):  # a setting the recipe gave: name its file and line
            e = recipe.locate(e) or e
        _fail(args.command_name, e)
    except KeyboardInterrupt:
        print(f"bertforge {args.command_name}: interrupted", file=sys.stderr)
        sys.exit(130)


def _fail(command: str, e: Exception) -> None:
    message = (e.on_command_line() if isinstance(e, Located) else
               str(e) if not isinstance(e, OSError) or e.filename is None else f"{e.filename}: {e.strerror}")
    print(f"bertforge {command}: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one ``bertforge: warning: ...`` line, without the source location."""
    print(f"bertforge: warning: {' '.join(str(message).split())}", file=sys.stderr if file is None else file)
