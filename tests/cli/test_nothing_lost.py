"""Nothing lost (issue 27): outputs that would clobber what they must not, damaged model files, out-of-bound
settings and errors found late, through the real command line (``python -m bertforge`` subprocesses).

Every case must end with exit status 2 and exactly ONE stderr line, starting ``bertforge``, that names the
cause; print nothing on stdout; and leave its working directory exactly as it was: every input and output
the case points at lives there (private copies and private special files the case makes, never the
system's ``/dev`` nodes), and the directory is compared entry by entry before and after: regular files by
SHA-256, links by their target, FIFOs and devices by their kind and device numbers (so a FIFO that became
a regular file fails, and nothing new, such as a half-made run directory or prepared shards, may appear).

The symlink rule under test: an output whose last part is a symbolic link is refused (bertforge does not
write through links), and the link and its target stay as they were.

Each case's argv is a template: ``{name}`` is an input of ``cli_inputs`` (tests/cli/conftest.py), ``{tmp}``
the case's directory, and names its ``setup`` returns (private inputs it made there). The cases that
pre-train are ``slow``; the rest run in about a minute on two cores.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# --------------------------------------------------------------------------------------------------------
# Setups: each makes the case's private inputs in its directory and returns their names (or skips)


def _copy(src: Path, dst: Path) -> Path:
    (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    return dst


def own_copy(name: str, as_name: str | None = None):
    def setup(d: Path, x: dict[str, Path]) -> dict[str, Path]:
        return {"own": _copy(x[name], d / (as_name or x[name].name))}
    return setup


def hard_link(d, x):
    own = _copy(x["lines_txt"], d / "lines.txt")
    os.link(own, d / "predictions.jsonl")
    return {"own": own, "link": d / "predictions.jsonl"}


def fifo(d, x):
    os.mkfifo(d / "out.fifo")
    return {"node": d / "out.fifo"}


def fifo_png(d, x):
    os.mkfifo(d / "attention.png")
    return {"node": d / "attention.png"}


def char_device(d, x):
    """A private character device node (the null device's numbers) made in the case directory."""
    try:
        os.mknod(d / "out.dev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except OSError as e:
        pytest.skip(f"cannot make a device node here: {e}")
    return {"node": d / "out.dev"}


def file_link(d, x):
    (d / "target.json").write_text('{"kept": true}\n')
    (d / "metrics.json").symlink_to(d / "target.json")
    return {"link": d / "metrics.json"}


def dir_link(d, x):
    (d / "real-dir").mkdir()
    (d / "vocab-link").symlink_to(d / "real-dir")
    return {"link": d / "vocab-link"}


def holds(name: str, inner: str):
    """A directory ``inner`` in the case directory holding a copy of input ``name``."""
    def setup(d, x):
        (d / inner).mkdir()
        return {"own": _copy(x[name], d / inner / x[name].name), "holder": d / inner}
    return setup


def zeroed_weights(d, x):
    own = _copy(x["pt_model"], d / "model")
    data = bytearray((own / "model.safetensors").read_bytes())
    start = len(data) // 2
    data[start:start + 4000] = bytes(4000)  # the header still parses: only the record can tell
    (own / "model.safetensors").write_bytes(bytes(data))
    return {"own": own}


def truncated_tokenizer_json(d, x):
    own = _copy(x["pt_model"], d / "model")
    text = (own / "tokenizer.json").read_text()
    (own / "tokenizer.json").write_text(text[: len(text) // 3])
    return {"own": own}


def swapped_tokenizer_json(d, x):
    import json

    own = _copy(x["clf"], d / "model")
    data = json.loads((own / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    vocab["cat"], vocab["dog"] = vocab["dog"], vocab["cat"]
    (own / "tokenizer.json").write_text(json.dumps(data))
    return {"own": own}


def vocab_without(token: str):
    def setup(d, x):
        own = _copy(x["tok"], d / "tok")
        (own / "tokenizer.json").unlink()  # vocab.txt is the file under test
        lines = (own / "vocab.txt").read_text().splitlines()
        (own / "vocab.txt").write_text("".join(t + "\n" for t in lines if t != token))
        return {"own": own}
    return setup


def read_only_sysfs(d, x):
    """``/sys``: a file system where nobody, root included, may create a directory (Linux)."""
    if not Path("/sys/kernel").is_dir():
        pytest.skip("no /sys here")
    return {}


def finished_run(d, x):
    return {"own": _copy(x["run"], d / "run")}


# --------------------------------------------------------------------------------------------------------
# The table

PRETRAIN = ("pretrain", "--corpus", "{corpus}", "--tokenizer", "{tok}", "--preset", "tiny", "--seq-len", "32",
            "--batch-size", "4", "--max-steps", "2", "--warmup-steps", "1", "--save-every", "2", "--eval-every", "2",
            "--eval-instances", "8", "--workers", "1", "--no-progress")
FINETUNE = ("finetune", "--task", "classify", "--epochs", "1", "--batch-size", "8", "--max-length", "32",
            "--no-progress")


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    expect: tuple[str, ...]  # substrings (templates) of the one error line
    setup: Callable[[Path, dict], dict] | None = None
    absent: tuple[str, ...] = ()  # substrings (templates) the line must not hold (an internal temporary's name)
    slow: bool = False  # pre-trains (prepares data, builds a model) before the error
    progress: bool = False  # found late: progress lines (the corpus read) may come on stdout before it


C = Case
CASES = [
    # --- outputs: never the input, a special file, a link, or inside / around an input ---------------------
    C("predict-output-is-the-input", ("predict", "--model", "{clf}", "--input", "{own}", "--output", "{own}"),
      ("--output {own}", "is the input"), own_copy("lines_txt")),
    C("predict-output-is-a-hard-link-of-the-input",
      ("predict", "--model", "{clf}", "--input", "{own}", "--output", "{link}"), ("--output {link}", "hard link"),
      hard_link),
    C("predict-output-is-a-fifo", ("predict", "--model", "{clf}", "--input", "{lines_txt}", "--output", "{node}"),
      ("--output {node}", "FIFO"), fifo),
    C("encode-output-is-a-device", ("encode", "--model", "{pt_model}", "--input", "{lines_txt}", "--output", "{node}"),
      ("--output {node}", "character device"), char_device),
    C("evaluate-output-is-a-symlink", ("evaluate", "--model", "{clf}", "--data", "{dev_jsonl}", "--max-length", "32",
                                       "--output", "{link}"), ("--output {link}", "symbolic link"), file_link),
    C("evaluate-output-is-the-data", ("evaluate", "--model", "{clf}", "--data", "{own}", "--max-length", "32",
                                      "--output", "{own}"), ("--output {own}", "is the input"), own_copy("dev_jsonl")),
    C("encode-output-inside-the-model", ("encode", "--model", "{own}", "--input", "{lines_txt}", "--output",
                                         "{own}/vectors.jsonl"), ("--output {own}/vectors.jsonl", "inside"),
      own_copy("pt_model", "model")),
    C("attention-out-is-a-fifo", ("attention", "--model", "{pt_model}", "the cat", "--out", "{node}"),
      ("--out {node}", "FIFO"), fifo_png),
    C("finetune-out-is-the-model", (*FINETUNE, "--model", "{own}", "--train", "{train_jsonl}", "--dev", "{dev_jsonl}",
                                    "--out", "{own}"), ("--out {own}", "is the input"), own_copy("pt_model", "model")),
    C("finetune-out-holds-the-training-file", (*FINETUNE, "--model", "{pt_model}", "--train", "{own}", "--dev",
                                               "{dev_jsonl}", "--out", "{holder}"),
      ("--out {holder}", "contains the input"), holds("train_jsonl", "ft")),
    C("pretrain-out-holds-the-corpus", ("pretrain", "--corpus", "{own}", "--tokenizer", "{tok}", "--out", "{holder}"),
      ("--out {holder}", "contains the input"), holds("corpus", "run")),
    C("data-prepare-out-inside-the-tokenizer", ("data", "prepare", "--corpus", "{corpus}", "--tokenizer", "{own}",
                                                "--out", "{own}/data"), ("--out {own}/data", "inside"),
      own_copy("tok")),
    C("tokenizer-train-out-is-a-symlink", ("tokenizer", "train", "--input", "{corpus}", "--vocab-size", "60",
                                           "--out", "{link}"), ("--out {link}", "symbolic link"), dir_link),
    C("tokenizer-train-out-unwritable", ("tokenizer", "train", "--input", "{corpus}", "--vocab-size", "60",
                                         "--out", "/sys/bertforge-nothing-lost"),
      ("/sys/bertforge-nothing-lost: ",), read_only_sysfs, absent=(".bertforge-nothing-lost-", ".tmp")),
    # --- settings with upper bounds -------------------------------------------------------------------------
    C("pretrain-lr-1e30", (*PRETRAIN, "--out", "{tmp}/run", "--lr", "1e30"), ("--lr", "<= 1")),
    C("pretrain-max-steps-1e20", (*PRETRAIN[:-1], "--out", "{tmp}/run", "--max-steps", "100000000000000000000"),
      ("--max-steps", "<= 1e+09")),
    C("finetune-lr-2", (*FINETUNE, "--model", "{pt_model}", "--train", "{train_jsonl}", "--dev", "{dev_jsonl}",
                        "--out", "{tmp}/ft", "--lr", "2"), ("--lr", "<= 1")),
    # --- damaged model files ----------------------------------------------------------------------------------
    C("encode-weights-with-zeroed-bytes", ("encode", "--model", "{own}", "--input", "{lines_txt}", "--output",
                                           "{tmp}/vectors.jsonl"), ("{own}/model.safetensors", "changed"),
      zeroed_weights),
    C("fill-mask-tokenizer-json-truncated", ("fill-mask", "--model", "{own}", "the cat [MASK] ."),
      ("{own}/tokenizer.json", "malformed JSON"), truncated_tokenizer_json),
    C("predict-tokenizer-json-disagrees-with-vocab", ("predict", "--model", "{own}", "--input", "{lines_txt}",
                                                      "--output", "{tmp}/p.jsonl"),
      ("{own}/tokenizer.json", "differs from vocab.txt"), swapped_tokenizer_json),
    C("data-prepare-vocabulary-without-cls", ("data", "prepare", "--corpus", "{corpus}", "--tokenizer", "{own}",
                                              "--out", "{tmp}/data", "--seq-len", "32", "--workers", "1"),
      ("[CLS]",), vocab_without("[CLS]")),
    # --- errors found late: no half-made run directory, no prepared shards ----------------------------------
    C("pretrain-vocabulary-without-mask", (*PRETRAIN[:4], "{own}", *PRETRAIN[5:], "--out", "{tmp}/run"),
      ("{own}", "[MASK]"), vocab_without("[MASK]")),
    C("pretrain-init-from-damaged-weights", (*PRETRAIN, "--init-from", "{own}", "--out", "{tmp}/run"),
      ("{own}/model.safetensors",), zeroed_weights, slow=True, progress=True),
    C("pretrain-batch-larger-than-the-corpus", (*PRETRAIN, "--batch-size", "4096", "--out", "{tmp}/run"),
      ("fewer than one global batch",), slow=True, progress=True),
    C("pretrain-resume-below-the-steps-done", (*PRETRAIN, "--max-steps", "1", "--out", "{own}"),
      ("--max-steps 1 is below the 2 steps already done",), finished_run, slow=True),
]


# --------------------------------------------------------------------------------------------------------
# Running every selected case once, two at a time


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (not following links): regular files by SHA-256, links by target, FIFOs,
    devices and sockets by kind (and device numbers); never opens anything but regular files."""
    tree = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                tree[rel] = f"link -> {os.readlink(p)}"
            elif stat.S_ISDIR(st.st_mode):
                tree[rel] = "dir"
            elif stat.S_ISREG(st.st_mode):
                tree[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                tree[rel] = f"special {stat.S_IFMT(st.st_mode):o} {st.st_rdev}"
    return tree


@dataclass
class Run:
    case: Case
    cwd: Path
    ctx: dict[str, str]
    before: dict[str, str]
    argv: list[str] = field(default_factory=list)
    result: object = None
    after: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def finished(cli_inputs, bertforge_cli, tmp_path_factory) -> Path:
    """A finished 2-step pre-training run (the resume case copies it)."""
    home = tmp_path_factory.mktemp("finished")
    ctx = {k: str(v) for k, v in cli_inputs.items()}
    r = bertforge_cli([a.format(**ctx, tmp=home) for a in (*PRETRAIN, "--out", str(home / "run"))], home)
    assert r.returncode == 0, r.describe()
    return home / "run"


@pytest.fixture(scope="module")
def runs(request, cli_inputs, bertforge_cli, tmp_path_factory) -> dict[str, Run | str]:
    """Each case selected in this session, run once; a case whose setup skips maps to the reason."""
    wanted = {item.callspec.params["case"].id for item in request.session.items
              if item.module is request.module and hasattr(item, "callspec") and "case" in item.callspec.params}
    inputs = dict(cli_inputs)
    if "pretrain-resume-below-the-steps-done" in wanted:
        inputs["run"] = request.getfixturevalue("finished")
    root = tmp_path_factory.mktemp("nothing-lost")
    planned: dict[str, Run | str] = {}
    for case in CASES:
        if case.id not in wanted:
            continue
        cwd = root / case.id
        cwd.mkdir()
        made: dict[str, Path] = {}
        try:
            made = case.setup(cwd, inputs) if case.setup else {}
        except pytest.skip.Exception as e:
            planned[case.id] = str(e)
            continue
        ctx = {k: str(v) for k, v in {**inputs, **made}.items()} | {"tmp": str(cwd)}
        run = Run(case, cwd, ctx, snapshot(cwd))
        run.argv = [a.format(**ctx) for a in case.argv]
        planned[case.id] = run

    def execute(run: Run) -> None:
        run.result = bertforge_cli(run.argv, run.cwd)
        run.after = snapshot(run.cwd)

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(execute, [r for r in planned.values() if isinstance(r, Run)]))
    return planned


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c.slow else c for c in CASES],
                         ids=[c.id for c in CASES])
def test_refused_in_one_line_and_nothing_lost(case: Case, runs):
    run = runs[case.id]
    if isinstance(run, str):
        pytest.skip(run)
    r = run.result
    where = r.describe()
    assert not r.timed_out and r.returncode == 2, f"expected exit status 2\n{where}"
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bertforge"), f"expected exactly one stderr line\n{where}"
    line = lines[0]
    missing = [e.format(**run.ctx) for e in case.expect if e.format(**run.ctx) not in line]
    assert not missing, f"the error line does not name {missing}:\n  {line}\n{where}"
    present = [a.format(**run.ctx) for a in case.absent if a.format(**run.ctx) in line]
    assert not present, f"the error line names an internal path {present}:\n  {line}\n{where}"
    assert case.progress or not r.stdout.strip(), f"a failing command printed results\n{where}"
    added = sorted(set(run.after) - set(run.before))
    removed = sorted(set(run.before) - set(run.after))
    changed = sorted(k for k in set(run.before) & set(run.after) if run.before[k] != run.after[k])
    assert not (added or removed or changed), (f"{run.cwd} changed: added {added[:8]}, removed {removed[:8]}, "
                                               f"changed {[(k, run.before[k], run.after[k]) for k in changed[:4]]}"
                                               f"\n{where}")


def test_an_edited_weight_file_loads_when_the_check_is_skipped(cli_inputs, bertforge_cli, tmp_path):
    """The documented way past the check for a file edited on purpose: BERTFORGE_SKIP_CHECKSUM=1."""
    made = zeroed_weights(tmp_path, cli_inputs)
    argv = ["encode", "--model", made["own"], "--input", cli_inputs["lines_txt"], "--output", tmp_path / "v.jsonl"]
    r = bertforge_cli(argv, tmp_path, extra_env={"BERTFORGE_SKIP_CHECKSUM": "1"})
    assert r.returncode == 0, r.describe()
    assert len((tmp_path / "v.jsonl").read_text().splitlines()) == 3


@pytest.mark.slow
def test_a_diverging_run_ends_in_one_line_and_keeps_its_checkpoints(cli_inputs, bertforge_cli, tmp_path):
    """--lr 1 (the largest allowed) explodes the masked-LM loss: exit 2, one line naming the checkpoint left."""
    ctx = {k: str(v) for k, v in cli_inputs.items()}
    argv = [a.format(**ctx) for a in PRETRAIN] + ["--out", str(tmp_path / "run"), "--lr", "1", "--warmup-steps",
                                                  "0", "--max-steps", "40", "--log-every", "1", "--save-every", "1"]
    r = bertforge_cli(argv, tmp_path)
    assert r.returncode == 2, r.describe()
    errors = [line for line in r.stderr.splitlines() if line.startswith("bertforge pretrain: error:")]
    assert len(errors) == 1 and "training diverged" in errors[0] and "Traceback" not in r.stderr, r.describe()
    from bertforge.train.checkpoint import latest_checkpoint, load_checkpoint

    latest = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert latest is not None and str(latest) in errors[0], r.describe()
    assert load_checkpoint(latest)["step"] >= 1
    assert not (tmp_path / "run" / "model").exists()
