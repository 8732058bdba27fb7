"""Nothing silent, nothing vague (issue 27): inputs that used to be accepted without a word, or refused with a
message about something else, through the real command line and a real server.

Each case of ``CASES`` must end with exit status 2 and ONE stderr line that names the cause (the file and
line, the field, the setting and its limit, the model family...), print nothing on stdout, write nothing
(its working directory, where every output goes, is byte-for-byte as before) and leave every input it was
given unchanged (each existing path in its argv is hashed before and after). ``BASELINES`` are the same
commands without the one bad thing: they must succeed, so each case fails for that thing only. Inputs that
are legal but lose something (``WARNED``) must succeed with one warning line that says what and how much.
A 40 MB body sent to a real ``bertforge serve`` must be answered 413 naming the limit, and the server must
keep serving.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.conftest import VOCAB

# About a minute on two shared cores: every case starts python and imports torch; the finetune ones read a
# model; the serve case starts a server.
pytestmark = pytest.mark.slow

LONG_WORDS = 600  # > 512 positions: a [MASK] after them is cut away, a prefix of them is cut
MASK_PAST_LIMIT = " ".join(["the"] * LONG_WORDS) + " [MASK] ."
SERVER_START_S = 90


@dataclass(frozen=True)
class AtLine:
    """``PATH:n``: the file ``{name}`` and its 1-based line ``n``."""

    path: str
    n: int

    def render(self, ctx: dict[str, str]) -> str:
        return f"{self.path.format(**ctx)}:{self.n}"


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    expect: tuple  # substrings (templates) or AtLine: each must be in the error line
    match: str | None = None  # and this regular expression


def _rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")  # float("nan") -> NaN
    return path


@pytest.fixture(scope="session")
def silent_inputs(cli_inputs, tmp_path_factory) -> dict[str, Path]:
    """``cli_inputs`` and the inputs of this module's cases (see the comments for what each one is)."""
    import warnings

    import torch

    from bertforge.config import BertConfig
    from bertforge.model import BertLMHeadModel, BertModel
    from bertforge.model.elmo import ElmoConfig, ElmoLanguageModel, WordVocab
    from bertforge.tokenization import BertTokenizer

    d = tmp_path_factory.mktemp("silent-inputs")
    x = dict(cli_inputs)
    tokenizer = BertTokenizer({t: i for i, t in enumerate(VOCAB)})
    config = BertConfig.preset("tiny", vocab_size=len(VOCAB))
    texts = ["a good movie", "the plot was awful", "a lovely film", "a sad story", "fine actor", "poor plot"]

    # regression targets; line 3 of the broken one holds JSON's NaN
    x["regress_dev"] = _rows(d / "regress-dev.jsonl", [{"text": t, "label": float(i)} for i, t in enumerate(texts)])
    x["regress_nan"] = _rows(d / "regress-nan.jsonl", [{"text": t, "label": float("nan") if i == 2 else float(i)}
                                                       for i, t in enumerate(texts)])
    # every training (and dev) example has the same label
    x["one_class"] = _rows(d / "one-class.jsonl", [{"text": t, "label": "pos"} for t in texts])
    # a fine-tuned classifier whose config.json lost its label names
    x["no_id2label"] = d / "classifier-without-id2label"
    shutil.copytree(cli_inputs["clf"], x["no_id2label"])
    data = json.loads((x["no_id2label"] / "config.json").read_text())
    assert "id2label" in data  # the fixture's classifier has them: removing them is the one change
    data = {k: v for k, v in data.items() if k not in ("id2label", "label2id")}
    (x["no_id2label"] / "config.json").write_text(json.dumps(data, indent=2))
    # SQuAD whose second question's answer_start lies past the end of its context
    context = "alice lives in paris ."
    x["squad_past"] = d / "squad-answer-past-context.json"
    x["squad_past"].write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [{
        "context": context, "qas": [
            {"id": "q0", "question": "where does alice live ?", "answers": [{"text": "paris", "answer_start": 15}]},
            {"id": "q1", "question": "who lives in paris ?", "answers": [{"text": "alice", "answer_start": 90}]}]}]}]}))
    # a corpus with Latin-1 bytes (0xe9, "é"): undecodable as UTF-8
    x["latin1_corpus"] = d / "latin1-corpus.txt"
    x["latin1_corpus"].write_bytes(cli_inputs["corpus"].read_bytes() + "the caf\u00e9 and the r\u00e9sum\u00e9 .\n"
                                   .encode("latin-1"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        # a left-to-right model, for generate
        x["ltr"] = d / "ltr"
        BertLMHeadModel(BertConfig.preset("tiny", vocab_size=len(VOCAB), is_decoder=True)).save_pretrained(x["ltr"])
        tokenizer.save_pretrained(x["ltr"])
        # an encoder saved without its pooler (as a token-level head's encoder is)
        x["no_pooler"] = d / "encoder-without-pooler"
        BertModel(config, add_pooling_layer=False).save_pretrained(x["no_pooler"])
        tokenizer.save_pretrained(x["no_pooler"])
        # an ELMo language model: config.json (model_type elmo), model.safetensors and its word vocab.txt
        x["elmo"] = d / "elmo"
        vocab = WordVocab.build(t.split() for t in texts)
        ElmoLanguageModel(ElmoConfig(char_embedding_dim=4, filters=[[1, 8], [2, 8]], max_characters_per_token=12,
                                     n_highway=1, lstm_dim=16, n_layers=1, projection_dim=8), vocab
                          ).save_pretrained(x["elmo"])
    pooler_keys = [k for k in _safetensor_keys(x["no_pooler"] / "model.safetensors") if "pooler" in k]
    assert not pooler_keys, pooler_keys
    return x


def _safetensor_keys(path: Path) -> list[str]:
    raw = path.read_bytes()
    return list(json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")]))


FT = ("--epochs", "1", "--batch-size", "4", "--max-length", "32", "--out", "{tmp}/ft", "--no-progress")
LINES = ("--input", "{lines_txt}", "--output", "{tmp}/out.jsonl")

C = Case
CASES = [
    C("finetune-regress-nan-label",
      ("finetune", "--task", "regress", "--model", "{pt_model}", "--train", "{regress_nan}", "--dev", "{regress_dev}",
       *FT), (AtLine("{regress_nan}", 3), "label", "finite")),
    C("finetune-single-class",
      ("finetune", "--task", "classify", "--model", "{pt_model}", "--train", "{one_class}", "--dev", "{one_class}",
       *FT), ("{one_class}", "'pos'", "at least two")),
    C("finetune-choice-on-a-classify-file",
      ("finetune", "--task", "choice", "--model", "{pt_model}", "--train", "{train_jsonl}", "--dev", "{dev_jsonl}",
       *FT), (AtLine("{train_jsonl}", 1), "sent1", "sent2", "ending0", "ending3", "text, label")),
    C("finetune-qa-answer-past-context",
      ("finetune", "--task", "qa", "--model", "{pt_model}", "--train", "{squad_past}", "--dev", "{squad_past}",
       "--doc-stride", "8", "--max-query-length", "8", *FT),
      ("{squad_past}", "question q1", "answer_start 90", "past its context", "22 characters")),
    C("encode-max-length-beyond-positions", ("encode", "--model", "{pt_model}", *LINES, "--max-length", "100000"),
      ("--max-length", "100000", "512", "max_position_embeddings")),
    C("encode-pooler-never-trained", ("encode", "--model", "{no_pooler}", *LINES, "--pooling", "pooler"),
      ("pooler", "never trained", "random"), r"mean or cls"),
    C("encode-elmo", ("encode", "--model", "{elmo}", *LINES), ("--model", "{elmo}", "needs a BERT-family model",
                                                               "this is elmo")),
    C("attention-elmo", ("attention", "--model", "{elmo}", "the cat", "--out", "{tmp}/att.png"),
      ("--model", "{elmo}", "needs a BERT-family model", "this is elmo")),
    C("export-onnx-elmo", ("export", "onnx", "--model", "{elmo}", "--out", "{tmp}/onnx"),
      ("--model", "{elmo}", "needs a BERT-family model", "this is elmo")),
    C("predict-model-without-id2label", ("predict", "--model", "{no_id2label}", *LINES),
      ("{no_id2label}/config.json", "id2label", "LABEL_0")),
    C("evaluate-model-without-id2label", ("evaluate", "--model", "{no_id2label}", "--data", "{dev_jsonl}",
                                          "--max-length", "32"), ("{no_id2label}/config.json", "id2label")),
    C("generate-max-new-tokens-beyond-positions",
      ("generate", "--model", "{ltr}", "--max-new-tokens", "1000000", "the cat"),
      ("--max-new-tokens", "1000000", "at most 510", "512 positions", "max_position_embeddings")),
    C("fill-mask-mask-past-the-position-limit", ("fill-mask", "--model", "{pt_model}", MASK_PAST_LIMIT),
      ("[MASK]", f"piece {LONG_WORDS + 1}", "512-position limit", "max_position_embeddings", "truncated")),
]

# The same commands without the one bad thing: each must succeed (exit 0).
BASELINES = {
    "finetune-regress": ("finetune", "--task", "regress", "--model", "{pt_model}", "--train", "{regress_dev}",
                         "--dev", "{regress_dev}", *FT),
    "encode-max-length-512": ("encode", "--model", "{pt_model}", *LINES, "--max-length", "512"),
    "encode-no-pooler-mean": ("encode", "--model", "{no_pooler}", *LINES, "--pooling", "mean"),
    "predict-with-id2label": ("predict", "--model", "{clf}", *LINES),
    "generate-within-positions": ("generate", "--model", "{ltr}", "--max-new-tokens", "3", "the cat"),
    "fill-mask-mask-within-limit": ("fill-mask", "--model", "{pt_model}", "the [MASK] runs ."),
}

# Legal inputs that lose something: exit 0 and one warning line saying what (the test checks how much).
WARNED = {
    "tokenizer-train-undecodable-bytes": ("tokenizer", "train", "--input", "{latin1_corpus}", "--vocab-size", "60",
                                          "--out", "{tmp}/vocab"),
    "generate-prefix-past-positions": ("generate", "--model", "{ltr}", "--max-new-tokens", "5",
                                       " ".join(["the"] * LONG_WORDS)),
    "generate-new-tokens-past-positions": ("generate", "--model", "{ltr}", "--max-new-tokens", "505",
                                           " ".join(["the"] * 10)),
}


WARNED_TESTS = {"test_tokenizer_train_counts_undecodable_bytes": "tokenizer-train-undecodable-bytes",
                "test_generate_says_when_the_position_limit_cuts_the_prefix": "generate-prefix-past-positions",
                "test_generate_says_when_the_position_limit_stops_it": "generate-new-tokens-past-positions"}


def snapshot(path: Path) -> dict[str, str] | None:
    """Contents of a file or directory tree (relative path -> sha256, or "dir"); None if absent."""
    if not path.exists():
        return None
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*"))}


@dataclass
class Run:
    argv: list[str]
    cwd: Path
    ctx: dict[str, str]
    before: dict[str, dict | None]
    result: object = None
    after: dict[str, dict | None] | None = None


def _run_key(item) -> str | None:
    """Which planned command a collected test of this module checks."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return {"test_case_is_refused_with_one_line_naming_the_cause": lambda: params["case"].id,
            "test_baseline_succeeds": lambda: f"baseline-{params['name']}",
            **{test: (lambda key=key: f"warned-{key}") for test, key in WARNED_TESTS.items()},
            }.get(getattr(item, "originalname", ""), lambda: None)()


@pytest.fixture(scope="module")
def runs(request, silent_inputs, bertforge_cli, tmp_path_factory) -> dict[str, Run]:
    """Every selected case, baseline and warned command, run once, two at a time, each in its own directory
    (``-k`` selects what runs, not just what is checked)."""
    wanted = {_run_key(item) for item in request.session.items if item.module is request.module}
    root = tmp_path_factory.mktemp("silent-cases")
    planned: dict[str, Run] = {}
    for key, argv in [*((c.id, c.argv) for c in CASES), *((f"baseline-{k}", a) for k, a in BASELINES.items()),
                      *((f"warned-{k}", a) for k, a in WARNED.items())]:
        if key not in wanted:
            continue
        cwd = root / key
        cwd.mkdir()
        ctx = {k: str(v) for k, v in silent_inputs.items()} | {"tmp": str(cwd)}
        rendered = [a.format(**ctx) for a in argv]
        inputs = {a for a in rendered if a.startswith("/") and Path(a).exists()}
        planned[key] = Run(rendered, cwd, ctx, {p: snapshot(Path(p)) for p in {str(cwd), *inputs}})

    def execute(run: Run) -> None:
        run.result = bertforge_cli(run.argv, run.cwd)
        run.after = {p: snapshot(Path(p)) for p in run.before}

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(execute, planned.values()))
    return planned


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case_is_refused_with_one_line_naming_the_cause(case: Case, runs):
    run = runs[case.id]
    r = run.result
    where = r.describe()
    assert not r.timed_out and r.returncode == 2, f"expected exit status 2\n{where}"
    assert "Traceback" not in r.stderr, where
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bertforge "), f"expected one stderr line\n{where}"
    expected = [e.render(run.ctx) if isinstance(e, AtLine) else e.format(**run.ctx) for e in case.expect]
    missing = [e for e in expected if e not in lines[0]]
    assert not missing, f"the error line does not name {missing}:\n  {lines[0]}"
    assert case.match is None or re.search(case.match, lines[0]), f"/{case.match}/ not in {lines[0]}"
    assert not r.stdout.strip(), f"a refused command printed results\n{where}"
    changed = [p for p in run.before if run.before[p] != run.after[p]]
    assert not changed, f"changed or written by a refused command: {changed}\n{where}"


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_succeeds(name, runs):
    r = runs[f"baseline-{name}"].result
    assert r.returncode == 0, r.describe()


def _warnings(r) -> list[str]:
    return [line for line in r.stderr.splitlines() if line.startswith("bertforge: warning:")]


def test_tokenizer_train_counts_undecodable_bytes(runs, silent_inputs):
    """The count is the corpus's invalid UTF-8 bytes, each 0xe9 of Latin-1 "é" here (an independent count)."""
    run = runs["warned-tokenizer-train-undecodable-bytes"]
    r = run.result
    assert r.returncode == 0, r.describe()
    expected = silent_inputs["latin1_corpus"].read_bytes().count(b"\xe9")
    assert expected == 3
    said = _warnings(r)
    assert len(said) == 1 and re.search(rf"\b{expected} undecodable byte", said[0]) and "U+FFFD" in said[0], \
        r.describe()
    assert (Path(run.ctx["tmp"]) / "vocab" / "vocab.txt").is_file()


def test_generate_says_when_the_position_limit_cuts_the_prefix(runs):
    r = runs["warned-generate-prefix-past-positions"].result
    assert r.returncode == 0, r.describe()
    said = _warnings(r)
    # [CLS] and one new piece take 2 of the 512 positions: 510 of the 600 prefix pieces are kept
    assert any(f"{LONG_WORDS} pieces" in w and "first 510" in w and "max_position_embeddings" in w
               for w in said), r.describe()


def test_generate_says_when_the_position_limit_stops_it(runs):
    r = runs["warned-generate-new-tokens-past-positions"].result
    assert r.returncode == 0, r.describe()
    said = _warnings(r)
    # 512 positions - [CLS] - 10 prefix pieces leave 501 of the 505 asked
    assert len(said) == 1 and "max_new_tokens 505" in said[0] and "at most 501" in said[0], r.describe()


# --------------------------------------------------------------------------------------------
# The server: a 40 MB body


def _start_server(model: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "bertforge", "serve", "--model", str(model), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(SERVER_START_S)
    if not first or " at http://" not in first[0]:
        proc.kill()
        raise AssertionError(f"the server did not start: {first!r}\n{proc.communicate(timeout=10)[1][-3000:]}")
    return proc, first[0].split(" at ", 1)[1].split()[0]


def _post(host: str, port: int, body, chunked: bool = False) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request("POST", "/embed", body=body, headers={"content-type": "application/json"},
                     encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_a_40_mb_body_is_answered_413_naming_the_limit(silent_inputs, cli_env):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    body = b'{"inputs": "' + b"the " * (10 << 20) + b'"}'  # 40 MiB of valid JSON
    proc, url = _start_server(silent_inputs["pt_model"], cli_env)
    try:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        start = time.monotonic()
        status, answer = _post(host, int(port), body)  # Content-Length declared: refused before the body is read
        assert status == 413, answer
        assert answer["field"] == "body" and f"{len(body):,} bytes" in answer["error"], answer
        assert "limit of 33,554,432 bytes (32 MiB)" in answer["error"], answer
        chunks = (body[i:i + (1 << 20)] for i in range(0, len(body), 1 << 20))
        status, answer = _post(host, int(port), chunks, chunked=True)  # no length: refused once past the limit
        assert status == 413 and "limit of 33,554,432 bytes" in answer["error"], answer
        assert time.monotonic() - start < 60
        status, answer = _post(host, int(port), json.dumps({"inputs": "the cat runs ."}).encode())
        assert status == 200 and [len(v) for v in answer] == [128], answer  # still serving: one 128-wide vector
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_server_refuses_pooling_with_an_untrained_pooler(silent_inputs):
    """The server's /embed says what encode says (422 on the pooling field); mean pooling still runs, and
    /info tells clients there is no usable pooler."""
    pytest.importorskip("fastapi")
    from bertforge.serve.bodies import BODIES, RequestError
    from bertforge.serve.models import ServedModel

    model = ServedModel.load(silent_inputs["no_pooler"])
    limits = model.limits(512, truncate=False)
    with pytest.raises(RequestError) as refused:
        model.prepare("embed", BODIES["embed"].parse({"inputs": "the cat", "pooling": "pooler"}, 8), limits)
    assert refused.value.status == 422 and refused.value.field == "pooling", refused.value.message
    assert "never trained" in refused.value.message
    work = model.prepare("embed", BODIES["embed"].parse({"inputs": "the cat", "pooling": "mean"}, 8), limits)
    assert [len(v) for v in work.finish(model.run(work.op, list(work.rows)))] == [128]
    assert model.info()["config"]["pooler"] is False
    assert ServedModel.load(silent_inputs["pt_model"]).info()["config"]["pooler"] is True
