"""The real all-MiniLM-L6-v2 through the server: /embed under concurrency equals in-process
``inference.encode`` (the sentence vectors MiniLM is trained to produce), and its attention is readable."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

SENTENCES = [
    "A man is playing a guitar.", "Someone is making music on stage in front of a large and cheering crowd.",
    "A dog runs.", "Two children are building a sandcastle on the beach while their parents watch from the shade.",
    "The cat sleeps.", "A woman is slicing an onion.", "Nobody is cooking.",
    "An old man with a long white beard sits on a park bench and feeds the pigeons that gather around his feet.",
]


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    from bertforge.serve.models import ServedModel

    return ServedModel.load(minilm_dir)


def test_minilm_embed_equals_inference_encode(minilm, make_async_client):
    from bertforge.inference import encode

    async def main():
        async with make_async_client(minilm, max_wait_ms=20) as c:
            singles = await asyncio.gather(*(c.post("/embed", json={"inputs": s}) for s in SENTENCES * 4))
            batch = await c.post("/embed", json={"inputs": SENTENCES, "normalize": False})
            info = (await c.get("/info")).json()
            return singles, batch, info, c.app.state.batcher.stats

    singles, batch, info, stats = asyncio.run(main())
    assert info["task"] == "embed" and info["routes"] == ["embed", "attention", "tokenize"]
    raw = encode(minilm.encoder, minilm.tokenizer, SENTENCES, pooling="mean").numpy()
    normalized = encode(minilm.encoder, minilm.tokenizer, SENTENCES, pooling="mean", normalize=True).numpy()
    np.testing.assert_allclose(np.array(batch.json()), raw, atol=1e-5)
    got = np.array([r.json()[0] for r in singles])
    np.testing.assert_allclose(got, np.concatenate([normalized] * 4), atol=1e-5)
    assert stats.max_rows > 1
    similar = float(got[0] @ got[1]), float(got[0] @ got[6])
    assert similar[0] > similar[1]  # guitar ~ music more than guitar ~ cooking
