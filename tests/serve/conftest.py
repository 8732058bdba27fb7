"""Fixtures of the serving tests: tiny random models of every kind a server reads, in-process clients,
and real `bertforge serve` processes on free loopback ports.

``serve_models`` saves, once per session, a tokenizer over a small vocabulary and tiny (2 layers, H=128)
random models in the transformers layout: a pre-trained BERT with its masked-LM head (``mlm``), a plain
encoder (``encoder``), and fine-tuned-looking task models (``clf``: classify neg/pos, ``regress``,
``tag``: BIO over PER/LOC, ``qa``). ``served(name)`` loads one for serving (cached).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from unavailable import require

require("fastapi")
require("httpx")
require("prometheus_client")

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ("the a an cat dog bird runs sees sings big small red green house tree river over under near far "
         "alice bob carol lives live in paris london rome where does who is what was very good bad movie "
         "film plot story and but it this").split()
VOCAB = list(dict.fromkeys(SPECIALS + list(".,!?'\"-:;()") + list("0123456789") + WORDS
                           + ["##s", "##ed", "##ing", "##ly", "##e"]))
TAGS = ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"]
SERVER_START_S = 60


@pytest.fixture(scope="session")
def serve_models(tmp_path_factory) -> dict[str, Path]:
    import torch

    from bertforge.config import BertConfig
    from bertforge.model import (BertForPreTraining, BertForQuestionAnswering, BertForSequenceClassification,
                                 BertForTokenClassification, BertModel)
    from bertforge.tokenization import BertTokenizer

    d = tmp_path_factory.mktemp("serve-models")
    tokenizer = BertTokenizer({t: i for i, t in enumerate(VOCAB)})
    config = BertConfig.preset("tiny", vocab_size=len(VOCAB))
    paths: dict[str, Path] = {}

    def save(name: str, model) -> None:
        paths[name] = d / name
        model.save_pretrained(paths[name])
        tokenizer.save_pretrained(paths[name])

    torch.manual_seed(0)
    save("mlm", BertForPreTraining(config))
    save("encoder", BertModel(config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the task heads are new weights on the pre-trained encoder
        labels = {"id2label": {"0": "neg", "1": "pos"}, "label2id": {"neg": 0, "pos": 1}}
        save("clf", BertForSequenceClassification.from_pretrained(paths["mlm"], num_labels=2, bertforge_task="classify",
                                                                 **labels))
        save("regress", BertForSequenceClassification.from_pretrained(
            paths["mlm"], num_labels=1, problem_type="regression", id2label={"0": "score"}, bertforge_task="regress"))
        save("tag", BertForTokenClassification.from_pretrained(
            paths["mlm"], num_labels=len(TAGS), id2label={str(i): t for i, t in enumerate(TAGS)},
            label2id={t: i for i, t in enumerate(TAGS)}, bertforge_task="tag"))
        save("qa", BertForQuestionAnswering.from_pretrained(paths["mlm"], bertforge_task="qa"))
    return paths


@pytest.fixture(scope="session")
def served(serve_models):
    """``served(name) -> ServedModel``, loaded once per session."""
    from bertforge.serve.models import ServedModel

    cache = {}

    def load(name: str):
        if name not in cache:
            cache[name] = ServedModel.load(serve_models[name])
        return cache[name]

    return load


def settings(**overrides):
    from bertforge.serve.settings import ServeSettings

    return ServeSettings(**{"model": "unused", **overrides})


@pytest.fixture(scope="session")
def make_client():
    """``make_client(model, **settings)``: a context manager giving a TestClient of a fresh app."""
    return client


@pytest.fixture(scope="session")
def make_async_client():
    """``make_async_client(model, **settings)``: an async context manager giving an httpx.AsyncClient
    (``.app`` is the app) that sends many requests at once in one event loop."""
    return async_client


@contextlib.contextmanager
def client(model, **overrides):
    """A TestClient of an app over ``model`` (its batching queue running)."""
    from fastapi.testclient import TestClient

    from bertforge.serve.app import create_app

    with TestClient(create_app(model, settings(**overrides)), raise_server_exceptions=False) as c:
        yield c


@contextlib.asynccontextmanager
async def async_client(model, **overrides):
    """An httpx.AsyncClient straight onto the app, for many simultaneous requests in one event loop."""
    import httpx

    from bertforge.serve.app import create_app

    app = create_app(model, settings(**overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve.test", timeout=60) as c:
            c.app = app
            yield c


class Server:
    """A `bertforge serve` process on a free loopback port; ``url`` once it listens."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.argv = argv
        self.proc = subprocess.Popen([sys.executable, "-m", "bertforge", "serve", *argv, "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        first = _readline(self.proc, SERVER_START_S)
        if " at http://" not in first:
            self.stop()
            raise AssertionError(f"the server did not start: {first!r}\n{self.proc.stderr.read()}")
        self.url = first.split(" at ", 1)[1].split()[0]
        self._drain = threading.Thread(target=self._collect, daemon=True)
        self._drain.start()

    def _collect(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else ""


@pytest.fixture(scope="session")
def server_env(tmp_path_factory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "BERTFORGE_DEBUG")}
    env.update(OMP_NUM_THREADS="1", BERTFORGE_CACHE=str(tmp_path_factory.mktemp("empty-cache")))
    return env


@pytest.fixture
def start_server(server_env):
    """``start_server(argv) -> Server``; every server started is stopped at the end of the test."""
    started: list[Server] = []

    def start(argv: list[str]) -> Server:
        started.append(Server([str(a) for a in argv], server_env))
        return started[-1]

    yield start
    for server in started:
        server.stop(signal.SIGKILL if server.proc.poll() is None else signal.SIGTERM)
