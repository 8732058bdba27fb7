"""README.md is executable documentation: every ```python block runs as written (each in a fresh namespace,
so each must be self-contained) against the real MiniLM weights, and every ``bertforge ...`` command line
of the ```bash blocks parses with the real command-line parser, so a documented flag that does not exist,
or a value it refuses, fails here."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from bertforge.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
# Placeholders the README writes where a number goes (``--vocab-size N``, ``--seed S``).
PLACEHOLDERS = {"N": "7", "S": "7"}
# An optional group is written ``[--flag VALUE ...]``; alternatives inside it are separated by `` | ``.
OPTIONAL = re.compile(r"\[(--[^\]]*)\]")


def blocks(language: str) -> list[tuple[int, str]]:
    """(first line number, text) of every fenced block of ``language``."""
    found, current, start = [], None, 0
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if current is None and line.strip() == f"```{language}":
            current, start = [], number + 1
        elif current is not None and line.strip() == "```":
            found.append((start, "\n".join(current)))
            current = None
        elif current is not None:
            current.append(line)
    return found


def command_lines() -> list[tuple[int, str]]:
    """(line number, command) of every bertforge command in the bash blocks, ``\\`` continuations joined
    and torchrun's own flags dropped (everything up to ``-m bertforge``)."""
    commands = []
    for start, text in blocks("bash"):
        pending, first = "", None
        for offset, line in enumerate(text.splitlines()):
            first = start + offset if not pending else first
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command, pending = (pending + line).strip(), ""
            if " -m bertforge " in f" {command} ":
                command = "bertforge " + command.split(" -m bertforge ", 1)[1]
            if command.startswith("bertforge ") or command == "bertforge":
                commands.append((first, command))
    return commands


def variants(command: str) -> list[list[str]]:
    """The argument lists a documented command stands for: the command without its optional groups, then
    the command with each alternative of each optional group added; a value written ``a|b|c`` is tried with
    each of its choices. ``# comments`` are dropped."""
    groups = OPTIONAL.findall(command)
    base = OPTIONAL.sub(" ", command)
    extras = [""] + [alternative for group in groups for alternative in group.split(" | ")]
    out = []
    for extra in extras:
        argv = (shlex.split(base, comments=True) + shlex.split(extra))[1:]  # without the program name
        argv = [PLACEHOLDERS.get(a, a) for a in argv]
        choices = [i for i, a in enumerate(argv) if "|" in a]
        if not choices:
            out.append(argv)
        for i in choices:
            for choice in argv[i].split("|"):
                out.append([choice if j == i else a.split("|")[0] for j, a in enumerate(argv)])
    return out


def expand_ellipsis(argv: list[str], full: dict[str, list[str]]) -> list[str]:
    """``bertforge finetune --task regress ... --format glue:STS-B``: ``...`` stands for the flags of the
    first complete command of that name in the README, less those the line gives itself."""
    if "..." not in argv or argv[0] not in full:
        return argv
    given = {a for a in argv if a.startswith("--")}
    kept, skip = [], False
    for a in full[argv[0]]:
        if a.startswith("--"):
            skip = a in given
        if not skip:
            kept.append(a)
    i = argv.index("...")
    return argv[:i] + kept[1:] + argv[i + 1:]


def documented_argvs() -> list[tuple[str, list[str]]]:
    full: dict[str, list[str]] = {}
    cases = []
    for line, command in command_lines():
        for argv in variants(command):
            if argv and "..." not in argv and not argv[0].startswith("-"):
                full.setdefault(argv[0], argv)
            if "..." in argv and argv[argv.index("...") - 1] != "--corpus":  # ``--corpus ...`` is a value
                argv = expand_ellipsis(argv, full)
            case = (f"README.md:{line}: bertforge {shlex.join(argv)}", argv)
            if case not in cases:
                cases.append(case)
    return cases


def test_the_readme_has_what_this_file_checks():
    assert len(blocks("python")) >= 1
    commands = [c for _, c in command_lines()]
    assert len(commands) >= 15
    assert any(c.startswith("bertforge pretrain --corpus ... --out runs/base") for c in commands)  # from torchrun
    assert any(c.startswith("bertforge pretrain --corpus wiki.xml.bz2") and "--warmup-steps" in c for c in commands)


def test_variants_and_ellipsis_expansion():
    assert variants("bertforge x --a 1 [--b N | --c DIR] [--d]  # note") == [
        ["x", "--a", "1"], ["x", "--a", "1", "--b", "7"], ["x", "--a", "1", "--c", "DIR"], ["x", "--a", "1", "--d"]]
    assert variants('bertforge f --m "The [MASK]." --format p|q') == [
        ["f", "--m", "The [MASK].", "--format", "p"], ["f", "--m", "The [MASK].", "--format", "q"]]
    full = {"finetune": ["finetune", "--task", "classify", "--model", "DIR", "--out", "o"]}
    assert expand_ellipsis(["finetune", "--task", "qa", "...", "--format", "squad"], full) == [
        "finetune", "--task", "qa", "--model", "DIR", "--out", "o", "--format", "squad"]


@pytest.mark.parametrize("where, argv", documented_argvs(), ids=lambda x: x if isinstance(x, str) else "")
def test_documented_command_line_parses(where, argv):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args = build_parser().parse_args(argv)
    except SystemExit as e:
        assert e.code == 0, f"{where}\n{err.getvalue()}"  # --help exits 0
        return
    given = [a.lstrip("-").replace("-", "_") for a in argv if a.startswith("--")]
    unknown = [name for name in given if not hasattr(args, name) and not name.startswith("no_")]
    assert not unknown, f"{where}: {unknown} are abbreviations of flags, not flags"  # argparse accepts prefixes


@pytest.mark.parametrize("start, code", blocks("python"), ids=lambda x: f"README.md:{x}" if isinstance(x, int) else "")
def test_python_block_runs(start, code, minilm_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # blocks may write files (clf.save_pretrained("out/"))
    namespace: dict = {"__name__": "__readme__"}
    try:
        exec(compile(code, f"README.md (python block at line {start})", "exec"), namespace)
    except Exception as e:
        pytest.fail(f"the python block at README.md:{start} does not run: {type(e).__name__}: {e}", pytrace=False)


def test_library_block_does_what_its_comments_say(minilm_dir, tmp_path, monkeypatch, hf):
    """The Library section's block, run, gives the shapes its comments state and a loadable classifier."""
    [(start, code)] = [(s, c) for s, c in blocks("python") if "BertForSequenceClassification" in c]
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "__readme__"}
    try:
        exec(compile(code, f"README.md (python block at line {start})", "exec"), ns)
    except Exception as e:
        pytest.fail(f"README.md:{start}: {type(e).__name__}: {e}", pytrace=False)
    out = ns["out"]
    B, T = ns["tok"](["A man plays a guitar.", "Someone makes music."])["input_ids"].shape
    assert out.last_hidden_state.shape == (B, T, 384) and out.pooler_output.shape == (B, 384)
    assert len(out.hidden_states) == 7 and all(h.shape == (B, T, 384) for h in out.hidden_states)
    assert ns["vectors"].shape == (len(ns["texts"]), 384)
    theirs = hf.BertForSequenceClassification.from_pretrained(tmp_path / "out")
    assert theirs.config.num_labels == 3
