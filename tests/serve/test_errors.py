"""Bad requests get the right status and a JSON error naming the field: 422 for what cannot be read, 413
past a limit (or truncation when asked), 401 without the key, 429 when the queue is full (and /health
still answers), 504 past the deadline; a client that goes away is dropped from the queue."""

from __future__ import annotations

import asyncio
import json

import pytest


def error(r, status: int, field: str | None) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "field"} and body["field"] == field, body
    return body["error"]


@pytest.mark.parametrize("route, body, field, words", [
    ("embed", {"inputs": ""}, "inputs", "empty"),
    ("embed", {"inputs": "   "}, "inputs", "whitespace"),
    ("embed", {"inputs": []}, "inputs", "empty list"),
    ("embed", {"inputs": ["a cat", 42]}, "inputs[1]", "got a number"),
    ("embed", {"inputs": None}, "inputs", "got null"),
    ("embed", {"inputs": [["the cat", "a dog"]]}, "inputs[0]", "expected text"),
    ("embed", {"input": "the cat"}, "input", "unknown field 'input'"),
    ("embed", {}, "inputs", "missing field 'inputs'"),
    ("embed", {"inputs": "the cat", "normalize": "yes"}, "normalize", "boolean"),
    ("embed", {"inputs": "the cat", "pooling": "max"}, "pooling", "mean, cls, pooler"),
    ("classify", {"inputs": [["the cat"]]}, "inputs[0]", "a pair is [text, text_pair]"),
    ("classify", {"inputs": [["the cat", ""]]}, "inputs[0][1]", "empty"),
    ("classify", {"inputs": {"text_pair": "a dog"}}, "inputs.text", "missing field 'text'"),
    ("classify", {"inputs": {"text": "a", "pair": "b"}}, "inputs.pair", "unknown field 'pair'"),
    ("classify", {"inputs": [{"text": "a", "text_pair": 3}]}, "inputs[0].text_pair", "got a number"),
    ("qa", {"inputs": {"question": "who lives in paris ?"}}, "inputs.context", "missing field 'context'"),
    ("qa", {"inputs": [{"question": "who ?", "context": ""}]}, "inputs[0].context", "empty"),
    ("qa", {"inputs": "who lives in paris ?"}, "inputs", "a question and a context"),
    ("fill-mask", {"inputs": "the cat runs ."}, "inputs", "no [MASK]"),
    ("fill-mask", {"inputs": ["the [MASK] runs", "the cat runs"]}, "inputs[1]", "no [MASK]"),
    ("fill-mask", {"inputs": "the [MASK]", "top_k": 0}, "top_k", "at least 1"),
    ("fill-mask", {"inputs": "the [MASK]", "top_k": True}, "top_k", "integer"),
    ("attention", {"inputs": "the cat", "head": -1}, "head", "at least 0"),
])
def test_422_names_the_field(served, make_client, route, body, field, words):
    name = {"classify": "clf", "qa": "qa", "tag": "tag"}.get(route, "mlm")
    with make_client(served(name)) as c:
        message = error(c.post(f"/{route}", json=body), 422, field)
    assert words in message


@pytest.mark.parametrize("content, words", [
    (b"", "empty"),
    (b'{"inputs": "the cat"', "malformed JSON"),
    (b'{"inputs": "caf\xe9"}', "not UTF-8"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b'["the cat"]', "expected a JSON object, got an array"),
    (b"42", "got a number"),
])

def test_422_for_a_body_that_cannot_be_read(served, make_client, content, words):
    with make_client(served("encoder")) as c:
        message = error(c.post("/embed", content=content, headers={"Content-Type": "application/json"}), 422, "body")
    assert words in message


def test_422_for_an_unpaired_surrogate(served, make_client):
    with make_client(served("encoder")) as c:  # JSON may escape one; UTF-8 cannot hold it
        r = c.post("/embed", content=b'{"inputs": ["a", "cat \\ud800 dog"]}',
                   headers={"Content-Type": "application/json"})
    assert "unpaired surrogate (U+D800)" in error(r, 422, "inputs[1]")


def test_413_past_the_limits_and_truncation(served, make_client):
    model = served("clf")
    long_text = " ".join(["the cat sees a dog"] * 10)  # 50 words: 52 pieces with [CLS] and [SEP]
    with make_client(model, max_input_tokens=16, max_inputs=100) as c:
        message = error(c.post("/classify", json={"inputs": ["a dog", long_text]}), 413, "inputs[1]")
        assert "has 52 tokens" in message and "limit of 16" in message and "truncate" in message
        error(c.post("/attention", json={"inputs": [["a dog", long_text]]}), 413, "inputs[0]")
        error(c.post("/tokenize", json={"inputs": long_text}), 413, "inputs")
        cut = c.post("/tokenize", json={"inputs": long_text, "truncate": True}).json()
        assert len(cut["tokens"]) == 16 and cut["tokens"][-1] == "[SEP]"
        assert c.post("/classify", json={"inputs": long_text, "truncate": True}).status_code == 200
        message = error(c.post("/embed", json={"inputs": ["a dog"] * 101}), 413, "inputs")
        assert "101 inputs" in message and "100" in message
    longer = " ".join(["alice lives in paris , bob in london"] * 30)  # read only as far as needed
    with make_client(model, max_input_tokens=16) as c:
        for inputs, a, b in ((longer, longer, None), ([[longer, "a dog"]], longer, "a dog"),
                             ([["a dog", longer]], "a dog", longer), ([[longer, longer]], longer, longer)):
            got = c.post("/tokenize", json={"inputs": inputs, "truncate": True}).json()
            got = got[0] if isinstance(inputs, list) else got
            assert got["ids"] == model.tokenizer.encode(a, b, max_length=16)
            assert "at least" in error(c.post("/tokenize", json={"inputs": inputs}), 413,
                                       "inputs" if isinstance(inputs, str) else "inputs[0]")
    with make_client(model, max_input_tokens=16, truncate=True) as c:  # the server's --truncate
        vectors = c.post("/embed", json={"inputs": [long_text, " ".join(long_text.split()[:14])]}).json()
        assert vectors[0] == pytest.approx(vectors[1], abs=1e-5)  # the same first 14 words
        error(c.post("/embed", json={"inputs": long_text, "truncate": False}), 413, "inputs")


def test_bad_inputs_of_extreme_size(served, make_client):
    with make_client(served("encoder")) as c:
        message = error(c.post("/embed", json={"inputs": ["a cat"] * 10_000}), 413, "inputs")
        assert "10000 inputs" in message
        megabyte = "the cat sees the dog . " * 45_000  # ~1 MB
        assert len(megabyte) > 1_000_000
        message = error(c.post("/embed", json={"inputs": megabyte}), 413, "inputs")
        assert "at least" in message and "more than the limit of 512" in message
        assert len(c.post("/embed", json={"inputs": megabyte, "truncate": True}).json()) == 1
        assert c.get("/health").status_code == 200
    with make_client(served("tag")) as c:
        error(c.post("/tag", json={"inputs": megabyte}), 413, "inputs")
    with make_client(served("qa")) as c:
        error(c.post("/qa", json={"inputs": {"question": "who ?", "context": megabyte}}), 413, "inputs.context")
        answer = c.post("/qa", json={"inputs": {"question": "who ?", "context": megabyte}, "truncate": True}).json()
        assert megabyte[answer["start"]:answer["end"]] == answer["answer"]


def test_401_without_the_api_key(served, make_client):
    with make_client(served("encoder"), api_key="s3cret") as c:
        error(c.post("/embed", json={"inputs": "a"}), 401, "Authorization")
        r = c.post("/embed", json={"inputs": "a"}, headers={"Authorization": "Bearer wrong"})
        assert error(r, 401, "Authorization").startswith("missing or wrong API key")
        assert r.headers["WWW-Authenticate"] == "Bearer"
        error(c.get("/info"), 401, "Authorization")
        error(c.get("/metrics", headers={"Authorization": "s3cret"}), 401, "Authorization")
        assert c.get("/health").status_code == 200
        ok = {"Authorization": "Bearer s3cret"}
        assert c.post("/embed", json={"inputs": "a"}, headers=ok).status_code == 200
        assert c.get("/info", headers=ok).status_code == 200
        assert 'status="401"' in c.get("/metrics", headers=ok).text


def test_504_past_the_deadline(served, make_client):
    with make_client(served("encoder"), max_wait_ms=300) as c:  # the first row of a batch waits 300 ms
        message = error(c.post("/embed", json={"inputs": "a cat"}, headers={"X-Timeout-Ms": "20"}), 504, None)
        assert "0.02 s" in message
        error(c.post("/embed", json={"inputs": "a"}, headers={"X-Timeout-Ms": "soon"}), 422, "X-Timeout-Ms")
        assert c.app.state.batcher.stats.dropped == 1 and c.app.state.batcher.depth == 0
        assert c.post("/embed", json={"inputs": "a cat"}).status_code == 200
    with make_client(served("encoder"), max_wait_ms=300, timeout=0.05) as c:  # the server's --timeout
        error(c.post("/embed", json={"inputs": "a cat"}), 504, None)


def test_429_when_the_queue_is_full_and_health_still_answers(served, make_async_client):
    async def main():
        async with make_async_client(served("encoder"), max_concurrent=4, max_wait_ms=200) as c:
            replies = await asyncio.gather(*(c.post("/embed", json={"inputs": f"the cat {i}"}) for i in range(40)))
            health = await c.get("/health")
            after = await c.post("/embed", json={"inputs": "a dog"})
            return replies, health, after

    replies, health, after = asyncio.run(main())
    statuses = [r.status_code for r in replies]
    assert set(statuses) == {200, 429} and statuses.count(200) >= 4
    busy = next(r for r in replies if r.status_code == 429)
    assert busy.headers["Retry-After"] == "1" and "busy" in error(busy, 429, None)
    assert health.status_code == 200 and after.status_code == 200


def test_a_client_that_goes_away_is_dropped_from_the_queue(served, make_async_client):
    async def main():
        async with make_async_client(served("encoder"), max_wait_ms=300) as c:
            batcher = c.app.state.batcher
            gone = asyncio.ensure_future(c.post("/embed", json={"inputs": ["the cat", "a dog"]}))
            await asyncio.sleep(0.1)
            assert batcher.depth == 1
            gone.cancel()  # the client hangs up while its request waits in the queue
            await asyncio.sleep(0.05)
            depth, dropped = batcher.depth, batcher.stats.dropped
            ok = await c.post("/embed", json={"inputs": "a bird"})
            return depth, dropped, ok, batcher.stats

    depth, dropped, ok, stats = asyncio.run(main())
    assert depth == 0 and dropped == 1
    assert ok.status_code == 200 and stats.rows == 1  # the dropped rows never ran


def test_internal_errors_are_json_500(served, make_client, monkeypatch):
    model = served("encoder")
    with make_client(model) as c:
        def broken(op, rows):
            raise RuntimeError("the model fell over")

        monkeypatch.setattr(c.app.state.batcher, "_run", broken)
        r = c.post("/embed", json={"inputs": "a cat"})
        assert "the model fell over" in error(r, 500, None)
        monkeypatch.undo()
        assert c.post("/embed", json={"inputs": "a cat"}).status_code == 200
        assert json.loads(c.get("/health").text)["queue_depth"] == 0
