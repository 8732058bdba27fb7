"""Every route of the server, on the kinds of model directory it reads: answers agree with the library
(fill_mask, Predictor, the tokenizer), offsets point into the input, and a route the model cannot serve
is a 400 that names the model's task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch


def test_what_each_kind_of_model_serves(served):
    assert served("mlm").routes == ("embed", "fill-mask", "attention", "tokenize")
    assert served("encoder").routes == ("embed", "attention", "tokenize")
    assert served("clf").routes == ("embed", "classify", "attention", "tokenize")
    assert served("regress").routes == ("embed", "classify", "attention", "tokenize")
    assert served("tag").routes == ("embed", "tag", "attention", "tokenize")
    assert served("qa").routes == ("embed", "qa", "attention", "tokenize")
    assert served("choice").routes == ("embed", "choice", "attention", "tokenize")
    assert [served(n).task_name for n in ("mlm", "encoder", "clf", "regress", "tag", "qa", "choice")] == \
        ["fill-mask", "embed", "classify", "regress", "tag", "qa", "choice"]


@pytest.mark.parametrize("route, name, body", [
    ("classify", "encoder", {"inputs": "the cat"}),
    ("fill-mask", "clf", {"inputs": "the [MASK]"}),
    ("tag", "mlm", {"inputs": "alice lives in paris"}),
    ("qa", "tag", {"inputs": {"question": "who ?", "context": "alice"}}),
    ("choice", "clf", {"inputs": {"context": "alice", "endings": ["runs", "sings"]}}),
])
def test_a_route_the_model_cannot_serve_is_400_naming_its_task(served, make_client, route, name, body):
    with make_client(served(name)) as c:
        r = c.post(f"/{route}", json=body)
    assert r.status_code == 400
    task = served(name).task_name
    assert f"/{route}" in r.json()["error"] and f"its task is {task}" in r.json()["error"]
    assert r.json()["field"] is None


def test_server_routes(served, make_client):
    with make_client(served("clf")) as c:
        assert c.get("/health").json() == {"status": "ok", "queue_depth": 0}
        info = c.get("/info").json()
        assert info["task"] == "classify" and info["labels"] == ["neg", "pos"]
        assert info["routes"] == ["embed", "classify", "attention", "tokenize"]
        assert info["config"]["layers"] == 2 and info["limits"]["max_input_tokens"] == 512
        c.post("/classify", json={"inputs": ["the cat", "a dog"]})
        c.post("/classify", json={"inputs": ""})
        metrics = c.get("/metrics").text
        for name in ("bertforge_requests_total", "bertforge_request_seconds_bucket", "bertforge_queue_depth",
                     "bertforge_batch_rows_bucket", "bertforge_batch_tokens_bucket"):
            assert name in metrics
        assert 'bertforge_requests_total{route="/classify",status="200"} 1.0' in metrics
        assert 'bertforge_requests_total{route="/classify",status="422"} 1.0' in metrics
        assert 'bertforge_inputs_total{route="classify"} 2.0' in metrics
        spec = c.get("/openapi.json").json()
        assert {"/embed", "/classify", "/tag", "/qa", "/choice", "/fill-mask", "/attention", "/tokenize", "/health",
                "/info", "/metrics"} <= set(spec["paths"])
        body = spec["paths"]["/embed"]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"]["required"] == ["inputs"] and "normalize" in body["schema"]["properties"]
        docs = c.get("/docs")
        assert docs.status_code == 200 and "POST /embed" in docs.text and "http" not in docs.text.split("<body")[0]
        page = c.get("/")
        assert page.status_code == 200 and "static/app.js" in page.text
        for name in ("app.js", "style.css", "attention.js", "attention.css"):
            assert c.get(f"/static/{name}").status_code == 200
        assert c.get("/static/../app.py").status_code == 404
        r = c.get("/nothing-here")
        assert r.status_code == 404 and r.json() == {"error": "no route /nothing-here", "field": None}


def test_embed(served, make_client):
    from bertforge.inference import encode

    model = served("encoder")
    texts = ["the cat sees the dog .", "alice", "a big red house near the river and a small green tree"]
    with make_client(model) as c:
        vectors = np.array(c.post("/embed", json={"inputs": texts, "normalize": False}).json())
        one = c.post("/embed", json={"inputs": texts[1]}).json()  # one input: still a list of vectors
        cls = np.array(c.post("/embed", json={"inputs": texts, "pooling": "cls", "normalize": False}).json())
        pooler = np.array(c.post("/embed", json={"inputs": texts, "pooling": "pooler"}).json())
    expected = encode(model.encoder, model.tokenizer, texts, pooling="mean").numpy()
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert len(one) == 1 and math.isclose(np.linalg.norm(one[0]), 1.0, rel_tol=1e-6)  # normalize: true by default
    np.testing.assert_allclose(one[0], expected[1] / np.linalg.norm(expected[1]), atol=1e-5)
    np.testing.assert_allclose(cls, encode(model.encoder, model.tokenizer, texts, pooling="cls").numpy(), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(pooler, axis=1), 1.0, rtol=1e-6)


def test_embed_pooler_on_a_model_without_one(served, make_client):
    with make_client(served("tag")) as c:  # token classification: no pooler, as in transformers
        r = c.post("/embed", json={"inputs": "alice", "pooling": "pooler"})
    assert r.status_code == 422 and r.json()["field"] == "pooling"


def test_fill_mask_agrees_with_the_library(served, make_client):
    from bertforge.inference import fill_mask

    model = served("mlm")
    text = "the [MASK] sees a [MASK] ."
    with make_client(model) as c:
        answer = c.post("/fill-mask", json={"inputs": text, "top_k": 3}).json()
        pair = c.post("/fill-mask", json={"inputs": [["the [MASK] runs", "a dog ."]]}).json()
    expected = fill_mask(model.mlm, model.tokenizer, text, top_k=3)
    assert len(answer) == 2
    for guesses, reference in zip(answer, expected):
        assert [g["token"] for g in guesses] == [t for t, _ in reference]
        np.testing.assert_allclose([g["score"] for g in guesses], [p for _, p in reference], atol=1e-6)
    assert len(pair) == 1 and len(pair[0]) == 1 and len(pair[0][0]) == 5  # a list in: a list out; top_k 5


def test_classify_agrees_with_predictor(served, make_client):
    from bertforge.data.examples import TextExample
    from bertforge.data.options import DataOptions

    model = served("clf")
    long = " ".join(["the plot was bad but the actor was very good"] * 20)  # 200 words: not cut at 128
    inputs = ["a good movie", ["the plot was bad", "it is a film"], {"text": "alice", "text_pair": "bob"}, long]
    with make_client(model) as c:
        answers = c.post("/classify", json={"inputs": inputs}).json()
        single = c.post("/classify", json={"inputs": {"text": "alice", "text_pair": "bob"}}).json()
    examples = [TextExample("a good movie", None, None, "0"),
                TextExample("the plot was bad", "it is a film", None, "1"),
                TextExample("alice", "bob", None, "2"), TextExample(long, None, None, "3")]
    labels, outputs = model.predictor.predict(examples, DataOptions(max_length=512))
    assert [a["label"] for a in answers] == labels
    for answer, logits in zip(answers, outputs):
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert {s["label"]: s["score"] for s in answer["scores"]} == pytest.approx(dict(zip(["neg", "pos"], probs)),
                                                                                   abs=1e-5)
        assert answer["score"] == max(s["score"] for s in answer["scores"])
    assert single["label"] == answers[2]["label"] and single["score"] == pytest.approx(answers[2]["score"], abs=1e-6)
    with make_client(model) as c:
        cut = c.post("/classify", json={"inputs": long, "truncate": True}).json()  # it fits: nothing is cut
    assert cut["score"] == pytest.approx(answers[3]["score"], abs=1e-6)


def test_regress(served, serve_models, make_client, hf):
    texts = ["a good movie", "a bad film"]
    with make_client(served("regress")) as c:
        answer = c.post("/classify", json={"inputs": texts}).json()
    assert [set(a) for a in answer] == [{"score"}, {"score"}]
    # the score is the regression head's output, as transformers computes it from the same weights
    model = hf.BertForSequenceClassification.from_pretrained(serve_models["regress"]).eval()
    tokenizer = hf.BertTokenizer.from_pretrained(serve_models["regress"])
    with torch.no_grad():
        expected = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits[:, 0].tolist()
    assert [a["score"] for a in answer] == pytest.approx(expected, abs=1e-5)


def test_tag_entities_point_into_the_input(served, make_client):
    from bertforge.data.examples import TaggedSentence
    from bertforge.data.options import DataOptions
    from bertforge.tasks.tag import entity_spans

    model = served("tag")
    texts = ["alice   lives in\tparis .", "bob lives in london and carol lives in rome ."]
    with make_client(model) as c:
        answers = c.post("/tag", json={"inputs": texts}).json()
    examples = [TaggedSentence(t.split(), None, str(k)) for k, t in enumerate(texts)]
    expected, _ = model.predictor.predict(examples, DataOptions())
    for text, answer, tags in zip(texts, answers, expected):
        assert [w["tag"] for w in answer["words"]] == tags
        assert [w["word"] for w in answer["words"]] == text.split()
        for w in answer["words"]:
            assert text[w["start"]:w["end"]] == w["word"]
        spans = entity_spans(tags)  # (label, first word, last word): each entity's score is its words' mean
        assert [(e["entity"], e["start"], e["end"]) for e in answer["entities"]] == [
            (kind, answer["words"][a]["start"], answer["words"][b]["end"]) for kind, a, b in spans]
        for e, (_, a, b) in zip(answer["entities"], spans):
            assert text[e["start"]:e["end"]] == e["text"]
            assert e["score"] == pytest.approx(np.mean([w["score"] for w in answer["words"][a:b + 1]]), abs=1e-9)
        assert len(answer["entities"]) == sum(t.startswith("B-") or (t.startswith("I-") and (i == 0 or tags[i - 1][2:]
                                              != t[2:])) for i, t in enumerate(tags))


def test_entity_spans():
    from bertforge.tasks.tag import entity_spans, word_spans

    assert entity_spans(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-PER"]) == \
        [("PER", 0, 1), ("LOC", 3, 3), ("LOC", 4, 4), ("PER", 5, 5)]
    assert entity_spans(["I-ORG", "I-ORG", "O"]) == [("ORG", 0, 1)]  # IOB1
    assert entity_spans(["S-PER", "B-LOC", "I-LOC", "E-LOC", "O"]) == [("PER", 0, 0), ("LOC", 1, 3)]
    assert word_spans("  a  bc d ") == [(2, 3), (5, 7), (8, 9)]
    assert word_spans(" 北京欢迎你") == [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6)]


def test_qa_answer_and_offsets(served, make_client):
    from bertforge.data.examples import QAExample
    from bertforge.data.options import DataOptions

    model = served("qa")
    context = "alice lives in paris . bob lives in london . carol lives in rome ."
    long_context = " ".join([context] * 40)  # ~700 pieces: read in overlapping windows
    inputs = [{"question": "where does bob live ?", "context": context},
              {"question": "who lives in rome ?", "context": long_context}]
    with make_client(model) as c:
        answers = c.post("/qa", json={"inputs": inputs}).json()
    examples = [QAExample(str(k), i["question"], i["context"]) for k, i in enumerate(inputs)]
    expected, _ = model.predictor.predict(examples, DataOptions())
    assert [a["answer"] for a in answers] == expected
    for answer, item in zip(answers, inputs):
        assert item["context"][answer["start"]:answer["end"]] == answer["answer"]
        assert 0 < answer["score"] <= 1


def test_attention(served, make_client):
    import torch

    model = served("mlm")
    with make_client(model) as c:
        full = c.post("/attention", json={"inputs": {"text": "the cat", "text_pair": "a dog runs"}}).json()
        one = c.post("/attention", json={"inputs": "the cat", "layer": 1, "head": 0}).json()
        bad = c.post("/attention", json={"inputs": "the cat", "layer": 2})
    assert full["tokens"] == ["[CLS]", "the", "cat", "[SEP]", "a", "dog", "runs", "[SEP]"]
    assert full["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1, 1]
    att = np.array(full["attention"])
    assert att.shape == (2, 2, 8, 8) and full["layers"] == [0, 1] and full["heads"] == [0, 1]
    np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)
    enc = model.tokenizer("the cat")
    with torch.no_grad():
        reference = model.encoder(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"],
                                  output_attentions=True).attentions[1][0, 0].numpy()
    np.testing.assert_allclose(np.array(one["attention"])[0, 0], reference, atol=1e-5)
    assert bad.status_code == 422 and bad.json()["field"] == "layer" and "2 layers" in bad.json()["error"]


def test_tokenize(served, make_client):
    with make_client(served("encoder")) as c:
        one = c.post("/tokenize", json={"inputs": "the cats runs"}).json()
        pair = c.post("/tokenize", json={"inputs": [["alice lives", "in paris"]]}).json()
    assert one["tokens"] == ["[CLS]", "the", "cat", "##s", "runs", "[SEP]"]
    assert one["offsets"] == [None, [0, 3], [4, 7], [7, 8], [9, 13], None]
    assert one["ids"] == served("encoder").tokenizer.encode("the cats runs")
    assert pair[0]["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1] and pair[0]["offsets"][4] == [0, 2]
