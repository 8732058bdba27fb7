"""`bertforge serve` and `bertforge attention` as a user runs them: refusals are one line and exit 2, a
real server drains its requests on SIGTERM and drops a client that hangs up, pictures are written."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest


def bertforge(argv: list, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bertforge", *map(str, argv)], env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def one_line_error(p: subprocess.CompletedProcess, command: str) -> str:
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bertforge {command}: error: "), p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""
    return lines[0]


@pytest.mark.parametrize("argv, words", [
    (["--model", "{tmp}/no-such-model"], "--model {tmp}/no-such-model: no such model directory"),
    (["--model", "{tmp}"], "is not a model directory (no config.json)"),
    (["--model", "{encoder}", "--port", "70000"], "--port: must be <= 65535"),
    (["--model", "{encoder}", "--max-concurrent", "0"], "--max-concurrent: must be >= 1"),
    (["--model", "{encoder}", "--backend", "onnx"], "has no model.onnx"),
    (["--model", "{encoder}", "--api-key", " "], "--api-key: must be a non-empty string"),
    (["--model", "{elmo}"], "--model: {elmo} is a pre-trained elmo model (config.json model_type): it would serve "
                            "tokenize alone"),
])
def test_serve_refuses_to_start_with_one_line(serve_models, server_env, tmp_path, argv, words):
    ctx = {"tmp": tmp_path, "encoder": serve_models["encoder"], "elmo": serve_models["elmo"]}
    line = one_line_error(bertforge(["serve", *(a.format(**ctx) for a in argv)], server_env), "serve")
    assert words.format(**ctx) in line


def test_serve_on_a_port_in_use(serve_models, server_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        start = time.monotonic()
        line = one_line_error(bertforge(["serve", "--model", serve_models["encoder"], "--port", port], server_env),
                              "serve")
    assert f"127.0.0.1:{port} is already in use" in line and "--port" in line
    assert time.monotonic() - start < 20  # refused before the model is loaded


def post_and_hang_up(url: str, body: dict) -> None:
    """Send a request on a raw connection and close it without reading the answer."""
    host, port = url.removeprefix("http://").split(":")
    data = json.dumps(body).encode()
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        time.sleep(0.2)


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def metrics_when(url: str, name: str, value: float, timeout: float = 20) -> str:
    """The server's /metrics once ``name`` reaches ``value`` (polled)."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        text = httpx.get(f"{url}/metrics").text
        if metric(text, name) == value or time.monotonic() > deadline:
            assert metric(text, name) == value, f"{name} is {metric(text, name)}, not {value}"
            return text
        time.sleep(0.05)


def test_a_real_server_drops_clients_that_leave_and_drains_on_sigterm(serve_models, start_server):
    import httpx

    server = start_server(["--model", serve_models["encoder"], "--max-wait-ms", "3000"])
    url = server.url
    assert httpx.get(f"{url}/health").json()["status"] == "ok"

    post_and_hang_up(url, {"inputs": "the cat"})  # would wait 3 s in the queue; its client leaves at 0.2 s
    text = metrics_when(url, 'bertforge_requests_total{route="/embed",status="499"}', 1)
    assert metric(text, "bertforge_queue_depth") == 0
    assert metric(text, 'bertforge_batch_rows_count{op="embed"}') == 0  # it never ran

    replies: list = []
    client = httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=6))

    def ask(i: int) -> None:
        replies.append(client.post("/embed", json={"inputs": ["a dog"] * (i + 1)}))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    metrics_when(url, "bertforge_queue_depth", 6)  # all six wait for their batch (3 s after the first)
    server.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    client.close()
    assert sorted(len(r.json()) for r in replies) == [1, 2, 3, 4, 5, 6]
    assert all(r.status_code == 200 for r in replies)
    assert server.proc.wait(30) == 0
    time.sleep(0.2)
    assert "bertforge serve: stopped" in "".join(server.lines)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/health", timeout=2)


def test_attention_pictures(serve_models, tmp_path, capsys):
    from bertforge.cli import main  # in this process: torch is loaded already

    model = serve_models["mlm"]
    main(["attention", "--model", str(model), "the cat sees the dog", "--pair", "a bird sings",
          "--out", str(tmp_path / "grid.png")])
    assert "2 layers x 2 heads" in capsys.readouterr().out
    main(["attention", "--model", str(model), "the cat sees the dog", "--out", str(tmp_path / "head.png"),
          "--layer", "1", "--head", "0"])
    for name in ("grid.png", "head.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    main(["attention", "--model", str(serve_models["clf"]), "alice lives in paris", "--out",
          str(tmp_path / "view.html"), "--layer", "1"])
    text = (tmp_path / "view.html").read_text()
    assert "BertforgeAttention.render" in text and '"tokens":["[CLS]","alice","lives","in","paris","[SEP]"]' in text
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", text)  # nothing fetched: it works from disk


@pytest.mark.parametrize("argv, words", [
    (["the cat", "--out", "{tmp}/a.jpg"], "--out: {tmp}/a.jpg must end in .png or .html"),
    (["the cat", "--out", "{tmp}/a.png", "--head", "0"], "--head: needs --layer too"),
    (["the cat", "--out", "{tmp}/a.png", "--layer", "2"], "--layer: the model has 2"),
    (["the cat", "--out", "{tmp}/missing/a.png"], "does not exist"),
    (["  ", "--out", "{tmp}/a.png"], "text: is empty"),
])
def test_attention_refusals(serve_models, server_env, tmp_path, argv, words):
    ctx = {"tmp": tmp_path}
    p = bertforge(["attention", "--model", serve_models["mlm"], *(a.format(**ctx) for a in argv)], server_env)
    assert words.format(**ctx) in one_line_error(p, "attention")


def test_serving_never_imports_training_code(serve_models, server_env):
    code = f"""
import sys
from fastapi.testclient import TestClient
from bertforge.serve.app import create_app
from bertforge.serve.models import ServedModel
from bertforge.serve.settings import ServeSettings
model = ServedModel.load({str(serve_models['clf'])!r})
with TestClient(create_app(model, ServeSettings(model="x"))) as c:
    assert c.post("/classify", json={{"inputs": "a good movie"}}).status_code == 200
print(sorted(m for m in sys.modules if m.startswith("bertforge.train")))
"""
    p = subprocess.run([sys.executable, "-c", code], env=server_env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_kept_alive_connections_answer_without_the_nagle_delay():
    """Without TCP_NODELAY an answer written in two parts on a kept-alive connection waited ~40 ms for the
    client's delayed ACK: asyncio sets it only on sockets whose protocol says TCP, so ``bind`` must say so."""
    import asyncio

    from bertforge.cli.serve import bind

    async def accepted_nodelay() -> int:
        sock = bind("127.0.0.1", 0)
        seen: asyncio.Future = asyncio.get_running_loop().create_future()

        async def on_connect(reader, writer) -> None:
            seen.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connect, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            value = await asyncio.wait_for(seen, 10)
            writer.close()
        return value

    assert asyncio.run(accepted_nodelay()) != 0


def test_the_model_loads_and_runs_in_the_one_model_thread(serve_models, monkeypatch):
    """Torch runs in one thread of the server (two OpenMP teams on the same cores slow every batch)."""
    import httpx
    import numpy as np
    import uvicorn

    from bertforge.cli import main
    from bertforge.inference import encode
    from bertforge.serve import app as app_module
    from bertforge.serve.models import ServedModel

    loaded_in, given = [], []
    load = ServedModel.load.__func__
    monkeypatch.setattr(ServedModel, "load", classmethod(
        lambda cls, *a, **k: loaded_in.append(threading.current_thread()) or load(cls, *a, **k)))
    create_app = app_module.create_app
    monkeypatch.setattr(app_module, "create_app", lambda model, settings, executor=None:
                        given.append(executor) or create_app(model, settings, executor))
    run, answers, batches_in = uvicorn.Server.run, [], []

    def serve_one_request(server, sockets=None):
        """The real server, stopped once it has answered one /embed request (sent from another thread)."""
        def client():
            while not server.started:
                time.sleep(0.01)
            host, port = sockets[0].getsockname()[:2]
            answers.append(httpx.post(f"http://{host}:{port}/embed", json={"inputs": "the cat"}, timeout=60))
            server.should_exit = True

        helper = threading.Thread(target=client, daemon=True)
        helper.start()
        run(server, sockets=sockets)
        helper.join(60)

    monkeypatch.setattr(uvicorn.Server, "run", serve_one_request)
    forward = ServedModel.run
    monkeypatch.setattr(ServedModel, "run", lambda self, *a, **k: batches_in.append(threading.current_thread())
                        or forward(self, *a, **k))
    main(["serve", "--model", str(serve_models["encoder"]), "--port", "0", "--loop-nice", "0"])
    (ran_in,) = set(batches_in)  # every forward pass ran in one thread: the one that loaded the model
    assert len(given) == 1 and loaded_in == [ran_in] and ran_in is not threading.main_thread()
    assert ran_in.name.startswith("bertforge-model")
    # the answer is the text's vector: the encoder's mean pooling, L2-normalised (computed here with the library)
    (answer,) = answers
    model = ServedModel.load(serve_models["encoder"])
    expected = encode(model.encoder, model.tokenizer, ["the cat"], pooling="mean", normalize=True).numpy()
    assert answer.status_code == 200
    np.testing.assert_allclose(answer.json(), expected, atol=1e-5)


def thread_nice_values(pid: int) -> dict[int, int]:
    """{thread id: nice value} of every thread of process ``pid`` (field 19 of /proc/PID/task/TID/stat)."""
    values = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        values[int(task.name)] = int((task / "stat").read_text().rsplit(")", 1)[1].split()[16])
    return values


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's")
def test_the_event_loop_yields_the_cores_to_the_model_threads(serve_models, start_server):
    import httpx

    base = os.getpriority(os.PRIO_PROCESS, 0)
    for argv, loop_nice in (([], min(19, base + 10)), (["--loop-nice", "0"], base)):
        server = start_server(["--model", serve_models["encoder"], *argv])
        assert httpx.post(f"{server.url}/embed", json={"inputs": "a cat"}).status_code == 200  # the loop runs
        nice = thread_nice_values(server.proc.pid)
        assert nice.pop(server.proc.pid) == loop_nice  # the main thread runs the event loop
        assert base in nice.values(), nice  # the model thread (and its OpenMP team) keep the process's own
        server.stop()
