"""Dynamic batching: many simultaneous requests of different lengths are answered as each would be
alone (1e-5), for BERT, XLNet and ELMo models; forward passes stay under the token budget, and with batching
off each request runs alone."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

WORDS = "the a cat dog bird runs sees big small red house tree river alice bob lives in paris london where".split()


def sentence(rng: random.Random, lo: int = 1, hi: int = 40) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def bodies(route: str, rng: random.Random, n: int) -> list[dict]:
    """``n`` request bodies of 1 to 3 inputs of 1 to 40 words each."""
    out = []
    for _ in range(n):
        k = rng.randint(1, 3)
        if route == "embed":
            out.append({"inputs": [sentence(rng) for _ in range(k)], "normalize": rng.random() < 0.5})
        elif route == "fill-mask":
            out.append({"inputs": [sentence(rng) + " [MASK] " + sentence(rng, 0, 10) for _ in range(k)], "top_k": 3})
        elif route == "attention":
            out.append({"inputs": [[sentence(rng, 1, 12), sentence(rng, 1, 12)] for _ in range(k)]})
        elif route == "classify":
            out.append({"inputs": [sentence(rng) if rng.random() < 0.5 else [sentence(rng), sentence(rng)]
                                   for _ in range(k)]})
        elif route == "tag":
            out.append({"inputs": [sentence(rng, 1, 120) for _ in range(k)]})  # long ones: several windows
        elif route == "qa":
            out.append({"inputs": [{"question": sentence(rng, 2, 8), "context": sentence(rng, 5, 150)}
                                   for _ in range(k)]})
        elif route == "choice":  # 2 to 4 endings: features of different numbers of rows share a batch
            out.append({"inputs": [{"context": sentence(rng), "endings": [sentence(rng, 1, 12)
                                                                          for _ in range(rng.randint(2, 4))]}
                                   for _ in range(k)]})
    return out


def assert_same(batched, alone, path: str = "") -> None:
    """Equal answers: the same strings and structure, numbers within 1e-5."""
    if isinstance(alone, dict):
        assert batched.keys() == alone.keys(), path
        for key in alone:
            assert_same(batched[key], alone[key], f"{path}.{key}")
    elif isinstance(alone, list):
        assert len(batched) == len(alone), path
        if alone and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in alone):
            np.testing.assert_allclose(batched, alone, atol=1e-5, err_msg=path)
        else:
            for i, (b, a) in enumerate(zip(batched, alone)):
                assert_same(b, a, f"{path}[{i}]")
    elif isinstance(alone, float):
        assert batched == pytest.approx(alone, abs=1e-5), path
    else:
        assert batched == alone, path


async def concurrently_and_alone(make_async_client, model, requests: list[tuple[str, dict]], **settings):
    async with make_async_client(model, **settings) as c:
        together = await asyncio.gather(*(c.post(f"/{route}", json=body) for route, body in requests))
        stats_together = c.app.state.batcher.stats.__dict__.copy()
        alone = [await c.post(f"/{route}", json=body) for route, body in requests]
        return together, alone, stats_together, c.app.state.batcher.stats


@pytest.mark.parametrize("name, routes", [
    ("mlm", ("embed", "fill-mask", "attention")),  # three operations sharing one queue
    ("clf", ("classify", "embed")),
    ("tag", ("tag",)),
    ("qa", ("qa",)),
    ("choice", ("choice", "embed")),
    ("xlnet-tag", ("tag",)),  # XLNet and ELMo: padding and batch-mates change nothing either
    ("xlnet-choice", ("choice",)),
    ("elmo-classify", ("classify",)),
    ("elmo-qa", ("qa",)),
])
def test_batched_answers_equal_answers_alone(served, make_async_client, name, routes):
    rng = random.Random(len(name))
    requests = [(route, body) for route in routes for body in bodies(route, rng, 48 // len(routes))]
    rng.shuffle(requests)
    together, alone, stats, _ = asyncio.run(concurrently_and_alone(make_async_client, served(name), requests,
                                                                   max_wait_ms=20, max_batch_tokens=2048))
    for (route, body), t, a in zip(requests, together, alone):
        assert t.status_code == a.status_code == 200, (route, t.text)
        assert_same(t.json(), a.json(), route)
    assert stats["max_rows"] > 3  # requests were batched together
    assert stats["batches"] < sum(len(b["inputs"]) for _, b in requests)


def test_forward_passes_stay_under_the_token_budget(served, make_async_client):
    rng = random.Random(1)
    budget, seen = 256, []
    model = served("encoder")
    run = model.run

    def spy(op, rows):
        seen.append((len(rows), max(r.length for r in rows)))
        return run(op, rows)

    requests = [("embed", b) for b in bodies("embed", rng, 40)]

    async def main():
        async with make_async_client(model, max_wait_ms=20, max_batch_tokens=budget) as c:
            c.app.state.batcher._run = spy
            return await asyncio.gather(*(c.post("/embed", json=body) for _, body in requests))

    replies = asyncio.run(main())
    assert all(r.status_code == 200 for r in replies)
    assert sum(n for n, _ in seen) == sum(len(b["inputs"]) for _, b in requests)
    assert all(n * longest <= budget or n == 1 for n, longest in seen)
    assert max(n for n, _ in seen) > 1


def test_batching_off_runs_one_request_per_forward_pass(served, make_async_client):
    rng = random.Random(2)
    requests = [("embed", b) for b in bodies("embed", rng, 12)]
    together, alone, stats, _ = asyncio.run(concurrently_and_alone(make_async_client, served("encoder"), requests,
                                                                   max_batch_tokens=0))
    assert stats["batches"] == len(requests)  # one forward pass per request, its inputs together
    for t, a in zip(together, alone):
        assert_same(t.json(), a.json())


def test_the_model_thread_hands_freed_memory_back_when_it_is_time(served, make_async_client, monkeypatch):
    import threading

    from bertforge.serve import batcher as batcher_module

    model = served("encoder")
    trims: list[str] = []

    async def main(rounds: int):
        async with make_async_client(model, max_wait_ms=1) as c:
            b = c.app.state.batcher
            assert b._trim is not None  # glibc: this machine's C library has malloc_trim
            b._trim = lambda: trims.append(threading.current_thread().name)
            for _ in range(rounds):
                assert (await c.post("/embed", json={"inputs": "the cat"})).status_code == 200

    monkeypatch.setattr(batcher_module, "TRIM_EVERY_S", 3600.0)
    asyncio.run(main(5))
    assert trims == []  # not yet time
    monkeypatch.setattr(batcher_module, "TRIM_EVERY_S", 0.0)
    asyncio.run(main(3))
    assert len(trims) == 3 and all(name.startswith("bertforge-model") for name in trims)


def test_an_idle_server_trims_once_more_when_it_is_time(served, make_async_client, monkeypatch):
    """The freed blocks of a load's last second go back too: the worker trims once the server is idle."""
    import threading
    import time

    from bertforge.serve import batcher as batcher_module

    model = served("encoder")
    trims: list[str] = []

    async def main():
        async with make_async_client(model, max_wait_ms=1) as c:
            b = c.app.state.batcher
            b._trim = lambda: trims.append(threading.current_thread().name)
            b._trimmed = time.monotonic()
            for _ in range(3):
                assert (await c.post("/embed", json={"inputs": "the cat"})).status_code == 200
            assert trims == []  # under load: not yet time
            await asyncio.sleep(0.6)  # idle past TRIM_EVERY_S: one trim, in the model thread
            assert len(trims) == 1 and trims[0].startswith("bertforge-model")
            await asyncio.sleep(0.6)  # nothing ran since: no more
            assert len(trims) == 1

    monkeypatch.setattr(batcher_module, "TRIM_EVERY_S", 0.4)
    asyncio.run(main())
