"""README.md and docs/*.md are executable documentation: every ```python block runs as written (each in a fresh
namespace, so each must be self-contained) against the real MiniLM weights, every ``bertforge ...`` command
line of the ```bash blocks parses with the real command-line parser, so a documented flag that does not exist,
or a value it refuses, fails here, and every relative link (and its #anchor) leads to something that exists."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from bertforge.cli import build_parser, parse_command_line

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
# Placeholders the pages write where a number goes (``--vocab-size N``, ``--seed S``).
PLACEHOLDERS = {"N": "7", "S": "7"}
# An optional group is written ``[--flag VALUE ...]``; alternatives inside it are separated by `` | ``.
OPTIONAL = re.compile(r"\[(--[^\]]*)\]")


def name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def blocks(language: str, page: Path = README) -> list[tuple[int, str]]:
    """(first line number, text) of every fenced block of ``language`` in ``page``."""
    found, current, start = [], None, 0
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if current is None and line.strip() == f"```{language}":
            current, start = [], number + 1
        elif current is not None and line.strip() == "```":
            found.append((start, "\n".join(current)))
            current = None
        elif current is not None:
            current.append(line)
    return found


def command_lines(page: Path = README) -> list[tuple[int, str]]:
    """(line number, command) of every bertforge command in the bash blocks, ``\\`` continuations joined
    and torchrun's own flags dropped (everything up to ``-m bertforge``)."""
    commands = []
    for start, text in blocks("bash", page):
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
    first complete command of that name on the same page, less those the line gives itself."""
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


def documented_argvs(pages: list[Path] = PAGES) -> list[tuple[str, list[str]]]:
    cases = []
    for page in pages:
        full: dict[str, list[str]] = {}
        for line, command in command_lines(page):
            for argv in variants(command):
                if argv and "..." not in argv and not argv[0].startswith("-"):
                    full.setdefault(argv[0], argv)
                if "..." in argv and argv[argv.index("...") - 1] != "--corpus":  # ``--corpus ...`` is a value
                    argv = expand_ellipsis(argv, full)
                case = (f"{name(page)}:{line}: bertforge {shlex.join(argv)}", argv)
                if case not in cases:
                    cases.append(case)
    return cases


def python_blocks() -> list[tuple[str, str]]:
    return [(f"{name(page)}:{start}", code) for page in PAGES for start, code in blocks("python", page)]


# --- links ----------------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation other than ``-`` and ``_`` dropped, spaces
    as hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor in ``page``; a repeated heading gets ``-1``, ``-2``... as on GitHub."""
    found: set[str] = set()
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    for line in text.splitlines():
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            base = anchor = slug(match.group(1))
            n = 0
            while anchor in found:
                n += 1
                anchor = f"{base}-{n}"
            found.add(anchor)
    return found


def links(text: str) -> list[str]:
    """The link targets of markdown ``text``, outside code blocks and code spans."""
    return LINK.findall(CODE_SPAN.sub("", FENCE.sub("", text)))


def broken_links(page: Path) -> list[str]:
    """Each relative link of ``page`` whose file (or #anchor in it) does not exist."""
    bad = []
    for target in links(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z+.-]*:", target):  # https:, mailto:: not checked here
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            bad.append(f"{target}: no file {file}")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            bad.append(f"{target}: no heading #{anchor} in {file.name}")
    return bad


# --- tests ----------------------------------------------------------------------------------------


def test_the_pages_have_what_this_file_checks():
    assert len(DOCS) >= 8
    assert len(blocks("python")) >= 1
    commands = [c for _, c in command_lines()]
    assert len(commands) >= 15
    assert any(c.startswith("bertforge pretrain --corpus wiki.xml.bz2") and "--warmup-steps" in c for c in commands)
    assert any(c.startswith("bertforge convert tf ") for c in commands)
    training = [c for _, c in command_lines(ROOT / "docs" / "training.md")]
    assert any(c.startswith("bertforge pretrain --corpus ... --out runs/base") for c in training)  # from torchrun
    assert len(python_blocks()) > len(blocks("python"))  # docs pages have python blocks too
    assert sum(len(links(p.read_text(encoding="utf-8"))) for p in PAGES) >= 30


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README.read_text(encoding="utf-8"))}
    assert [name(p) for p in DOCS if p.resolve() not in linked] == []


def test_variants_and_ellipsis_expansion():
    assert variants("bertforge x --a 1 [--b N | --c DIR] [--d]  # note") == [
        ["x", "--a", "1"], ["x", "--a", "1", "--b", "7"], ["x", "--a", "1", "--c", "DIR"], ["x", "--a", "1", "--d"]]
    assert variants('bertforge f --m "The [MASK]." --format p|q') == [
        ["f", "--m", "The [MASK].", "--format", "p"], ["f", "--m", "The [MASK].", "--format", "q"]]
    full = {"finetune": ["finetune", "--task", "classify", "--model", "DIR", "--out", "o"]}
    assert expand_ellipsis(["finetune", "--task", "qa", "...", "--format", "squad"], full) == [
        "finetune", "--task", "qa", "--model", "DIR", "--out", "o", "--format", "squad"]


def test_link_checker(tmp_path):
    """The checker finds links outside code only, follows them relative to the page, and knows anchors."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n\n## Speed of `encode`, on CPUs\n\n## Notes\n\n## Notes\n",
                                            encoding="utf-8")
    (tmp_path / "docs" / "p.png").write_bytes(b"")
    page = tmp_path / "README.md"
    page.write_text("[a](docs/a.md) [s](docs/a.md#speed-of-encode-on-cpus) ![p](docs/p.png) [n](docs/a.md#notes-1)\n"
                    "[web](https://example.org/x) `[no](nowhere.md)`\n```\n[no](nowhere.md)\n```\n"
                    "[gone](docs/b.md) [bad](docs/a.md#speed) [png](docs/p.png#x) [self](#title)\n",
                    encoding="utf-8")
    assert anchors(tmp_path / "docs" / "a.md") == {"title", "speed-of-encode-on-cpus", "notes", "notes-1"}
    assert [b.split(":")[0] for b in broken_links(page)] == ["docs/b.md", "docs/a.md#speed", "docs/p.png#x",
                                                             "#title"]


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_relative_links_resolve(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("where, argv", documented_argvs(), ids=lambda x: x if isinstance(x, str) else "")
def test_documented_command_line_parses(where, argv):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parse_command_line(argv)  # with a --config recipe's keys, as the command reads them
    except SystemExit as e:
        assert e.code == 0, f"{where}\n{err.getvalue()}"  # --help exits 0
        return
    unknown = [a for a in argv if a.startswith("--") and a.split("=")[0] not in option_strings(build_parser())]
    assert not unknown, f"{where}: {unknown} are abbreviations of flags, not flags"  # argparse accepts prefixes


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every flag of ``parser`` and of its subcommands, spelled out."""
    found = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= option_strings(sub)
    return found


@pytest.mark.parametrize("where, code", python_blocks(), ids=lambda x: x if ":" in x and "\n" not in x else "")
def test_python_block_runs(where, code, minilm_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # blocks may write files (clf.save_pretrained("out/"))
    namespace: dict = {"__name__": "__readme__"}
    try:
        exec(compile(code, f"{where} (python block)", "exec"), namespace)
    except Exception as e:
        pytest.fail(f"the python block at {where} does not run: {type(e).__name__}: {e}", pytrace=False)


def test_library_block_does_what_its_comments_say(minilm_dir, tmp_path, monkeypatch, hf):
    """The README's Python block, run, gives the shapes its comments state and a loadable classifier."""
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


def test_modernbert_block_saves_what_transformers_loads(tmp_path, monkeypatch, hf):
    """docs/models.md's ModernBERT block: the shapes it prints, and a directory transformers reads back to
    the same logits."""
    import torch

    [(where, code)] = [(w, c) for w, c in python_blocks() if "ModernBertForMaskedLM" in c]
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "__readme__"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, where, "exec"), ns)
    ids, mask, logits = ns["ids"], ns["mask"], ns["logits"]
    assert logits.shape == (2, 24, ns["config"].vocab_size)
    theirs = hf.ModernBertForMaskedLM.from_pretrained(tmp_path / "modernbert-tiny").eval()
    with torch.no_grad():
        expected = theirs(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(logits[real], expected[real], atol=1e-5, rtol=1e-5)
