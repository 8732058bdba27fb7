"""Fixtures of the serving tests: tiny random models of every kind a server reads, in-process clients,
and real `bertforge serve` processes on free loopback ports.

``serve_models`` saves, once per session, a tokenizer over a small vocabulary and tiny (2 layers, H=128)
random models in the transformers layout: a pre-trained BERT with its masked-LM head (``mlm``), a plain
encoder (``encoder``), fine-tuned-looking BERT task models (``clf``: classify neg/pos, ``regress``, ``tag``:
BIO over PER/LOC, ``qa``, ``choice``), pre-trained XLNet and ELMo models (``xlnet``, ``elmo``) and task models
built on them as ``finetune`` builds them (``xlnet-classify``, ``elmo-tag``... for every task family; ELMo's
frozen under a BiLSTM), an ELECTRA classifier (``electra-classify``), a BERT +BiLSTM tagger (``bilstm-tag``) and a
classifier on static word vectors (``static-classify``). ``served(name)`` loads one for serving (cached).
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

import numpy as np
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
    from bertforge.model.electra import ElectraForPreTraining
    from bertforge.model.elmo import ElmoBiLM, ElmoConfig
    from bertforge.model.families import preset_config
    from bertforge.model.modernbert import ModernBertForMaskedLM
    from bertforge.model.static import StaticConfig, StaticEmbeddings
    from bertforge.model.xlnet import XLNetLMHeadModel
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
        save("choice", varied(fine_tuned("choice", paths["mlm"]), tokenizer, "choice"))
        save("xlnet", XLNetLMHeadModel(preset_config("xlnet", "tiny", vocab_size=len(VOCAB))))
        save("elmo", ElmoBiLM(ElmoConfig(char_embedding_dim=4, filters=[[1, 8], [2, 8], [3, 16]],
                                         max_characters_per_token=12, n_highway=1, lstm_dim=24, n_layers=2,
                                         projection_dim=8, dropout=0.0)))
        save("electra", ElectraForPreTraining(preset_config("electra", "tiny", vocab_size=len(VOCAB))))
        save("static", StaticEmbeddings(StaticConfig(vocab_size=len(VOCAB), hidden_size=16)))
        for task in TASK_LABELS:
            save(f"xlnet-{task}", varied(fine_tuned(task, paths["xlnet"]), tokenizer, task))
            save(f"elmo-{task}", varied(fine_tuned(task, paths["elmo"]), tokenizer, task))
        save("electra-classify", varied(fine_tuned("classify", paths["electra"]), tokenizer, "classify", sharpen=1))
        save("bilstm-tag", varied(fine_tuned("tag", paths["mlm"], bilstm=True), tokenizer, "tag"))
        save("static-classify", varied(fine_tuned("classify", paths["static"]), tokenizer, "classify"))
        # last, so that the models above draw the same random weights as before ModernBERT joined
        save("modernbert", ModernBertForMaskedLM(preset_config("modernbert", "tiny", vocab_size=len(VOCAB),
                                                               pad_token_id=tokenizer.pad_token_id)))
        for task in TASK_LABELS:
            save(f"modernbert-{task}", varied(fine_tuned(task, paths["modernbert"]), tokenizer, task))
    return paths


TASK_LABELS = {"classify": ["neg", "pos"], "tag": TAGS, "qa": [], "choice": []}


def varied(model, tokenizer, task_name: str, scale: float = 0.1, sharpen: float = 10.0):
    """``model`` with noise on every weight, its output layers (the Linear ones with at most 8 outputs: labels,
    choices, span ends) ``sharpen`` times steeper, and a classifier's or tagger's output centred on a few texts:
    a fresh head's near-uniform outputs would make every answer alike (every word one tag), and equal answers
    would prove little."""
    import torch

    from bertforge.data.options import DataOptions
    from bertforge.inference.predictor import run_model
    from bertforge.tasks import get_task

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * scale)
        outputs = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features <= 8]
        for m in outputs:
            m.weight.mul_(sharpen)
    task = get_task(task_name)
    if task.has_labels:  # the mean output over probe texts becomes 0: every label is someone's argmax
        texts = [" ".join(WORDS[i::7]) for i in range(7)]
        examples = [task.input_example(None, t, str(k), "probe", k, DataOptions()) for k, t in enumerate(texts)]
        feats = task.encode(tokenizer, examples, None, DataOptions())
        logits = run_model(model, task, feats, 16, tokenizer.pad_token_id, torch.device("cpu"))
        mean = torch.from_numpy(np.concatenate([x.reshape(-1, x.shape[-1]) for x in logits]).mean(0))
        with torch.no_grad():
            outputs[-1].bias.sub_(mean)
    return model


def fine_tuned(task_name: str, base: Path, **variant):
    """The task's model on the pre-trained model at ``base``, as ``finetune`` makes it before training (a family's
    head, or a task model: ELMo's frozen under a BiLSTM, ``bilstm=True`` for BERT's +BiLSTM)."""
    from bertforge.tasks import get_task
    from bertforge.train.finetune import load_model

    return load_model(get_task(task_name), base, TASK_LABELS[task_name], **variant)


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
