"""benchmarks/serve.py's load generator against a real `bertforge serve`: every request is answered (200),
each answer read whole from its Content-Length on kept-alive connections, with a vector per sentence."""

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

import httpx

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "serve.py"


def bench_module():
    spec = importlib.util.spec_from_file_location("serve_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_load_generator_reads_every_answer(serve_models, start_server):
    bench = bench_module()
    server = start_server(["--model", serve_models["encoder"]])
    sentences = [" ".join(["the cat sees the dog"] * (1 + i % 5)) for i in range(40)]
    result = asyncio.run(bench.load(server.url, sentences, 4, "test"))
    assert result.statuses == {200: 40} and result.errors == 0 and len(result.latencies) == 40

    async def one() -> list:
        connection = await bench.Connection.open(server.url)
        try:
            replies = [await connection.post(bench.embed_request(text)) for text in ("the cat", "a dog runs")]
        finally:
            connection.close()
        return replies

    replies = asyncio.run(one())  # two answers on one connection: each read exactly, nothing left over
    hidden = httpx.get(f"{server.url}/info").json()["config"]["hidden_size"]
    assert [status for status, _ in replies] == [200, 200]
    assert all(len(json.loads(body)[0]) == hidden for _, body in replies)
