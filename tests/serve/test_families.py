"""Every family and task that `bertforge predict` reads is served, with predict's answers: BERT, XLNet and ELMo
models of every task family (classify, regress, tag, qa, choice), an ELECTRA classifier, a BERT +BiLSTM tagger and
a classifier on static word vectors.
Each answer holds predict's JSON line for the same input (labels, tags and answers equal, scores within 1e-5),
with its detail consistent with it. A route the model's family cannot serve is a 400 naming the route and the
family; a pre-trained model that would serve nothing but tokenize is refused at start-up."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

LONG = " ".join(["alice lives in paris , bob lives in london and carol lives in rome ."] * 12)  # ~170 words
CONTEXT = "alice lives in paris . bob lives in london . carol lives in rome ."
INPUTS = {  # route -> request inputs, each also one line of predict's input file
    "classify": ["a good movie", {"text": "the plot was bad", "text_pair": "it is a film"}, "alice lives in paris",
                 {"text": "who is bob ?", "text_pair": "bob lives in london"}],
    "tag": ["alice lives in paris .", "bob   lives in\tlondon and carol lives in rome .", LONG],  # LONG: windows
    "qa": [{"question": "where does bob live ?", "context": CONTEXT},
           {"question": "who lives in rome ?", "context": " ".join([CONTEXT] * 30)}],  # ~500 pieces: windows
    "choice": [{"context": "alice lives in paris .", "endings": ["she likes it .", "the river runs .", "bob sings ."]},
               {"context": "the cat sees a dog", "endings": ["it runs", "it sings very well"]}],
}
MODELS = {  # served model -> its route
    "clf": "classify", "regress": "classify", "tag": "tag", "qa": "qa", "choice": "choice",
    "xlnet-classify": "classify", "xlnet-tag": "tag", "xlnet-qa": "qa", "xlnet-choice": "choice",
    "elmo-classify": "classify", "elmo-tag": "tag", "elmo-qa": "qa", "elmo-choice": "choice",
    "electra-classify": "classify", "bilstm-tag": "tag", "static-classify": "classify",
    "modernbert-classify": "classify", "modernbert-tag": "tag", "modernbert-qa": "qa", "modernbert-choice": "choice",
}


def predict_lines(model_dir, inputs, tmp_path) -> list[dict]:
    """What `bertforge predict` writes for ``inputs`` (texts as plain lines, records as JSON lines)."""
    from bertforge.cli import main

    source = tmp_path / "inputs.txt"
    source.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in inputs), encoding="utf-8")
    main(["predict", "--model", str(model_dir), "--input", str(source), "--output", str(tmp_path / "out.jsonl")])
    return [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]


def assert_contains(answer: dict, line: dict, where: str) -> None:
    """``answer`` holds every field of ``line`` (predict's): numbers within 1e-5, everything else equal."""
    for key, expected in line.items():
        assert key in answer, f"{where}: no {key!r} in {answer}"
        assert_close(answer[key], expected, f"{where}.{key}")


def assert_close(got, expected, where: str) -> None:
    if isinstance(expected, dict):
        assert got.keys() == expected.keys(), where
        for key in expected:
            assert_close(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_close(g, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, abs=1e-5), where
    else:
        assert got == expected, where


@pytest.mark.parametrize("name", list(MODELS))
def test_served_answers_equal_predict(name, serve_models, served, make_client, tmp_path):
    from bertforge.inference.answers import answer_inputs

    route, model = MODELS[name], served(name)
    inputs = INPUTS[route]
    assert route in model.routes
    with make_client(model) as c:
        together = c.post(f"/{route}", json={"inputs": inputs})
        alone = [c.post(f"/{route}", json={"inputs": x}) for x in inputs]
    assert together.status_code == 200, together.text
    answers = together.json()
    lines = predict_lines(serve_models[name], inputs, tmp_path)
    assert len(answers) == len(lines) == len(inputs)
    library = answer_inputs(model.predictor, inputs)  # the same call without the server: the same answers
    for k, (answer, line, one, same) in enumerate(zip(answers, lines, alone, library)):
        assert_contains(answer, line, f"{name}[{k}]")
        assert_contains(one.json(), line, f"{name}[{k}] alone")
        assert_contains(answer, same, f"{name}[{k}] answer_inputs")
        assert answer.keys() == same.keys()
        check_detail(route, model, inputs[k], answer)
    # The varied heads (conftest.varied) give more than one label; ELECTRA's reads [CLS] alone, which a random
    # encoder hardly changes from input to input (its scores still do).
    if model.task.has_labels and name not in ("clf", "tag", "electra-classify"):
        assert len({tag for line in lines for tag in line.get("tags", [line.get("label")])}) > 1, lines


def check_detail(route: str, model, given, answer: dict) -> None:
    """The detail beside predict's line agrees with it."""
    if route == "classify" and model.task.has_labels:
        scores = {s["label"]: s["score"] for s in answer["scores"]}
        assert list(scores) == sorted(scores, key=lambda n: -scores[n]) and set(scores) == set(model.labels)
        assert answer["score"] == scores[answer["label"]] == max(scores.values())
        assert math.isclose(sum(scores.values()), 1.0, rel_tol=1e-6)
    elif route == "choice":
        assert len(answer["scores"]) == len(given["endings"]) and math.isclose(sum(answer["scores"]), 1.0,
                                                                                rel_tol=1e-6)
        assert answer["score"] == max(answer["scores"]) == answer["scores"][answer["label"]]
        assert answer["ending"] == given["endings"][answer["label"]]
    elif route == "tag":
        assert [w["tag"] for w in answer["words"]] == answer["tags"]
        assert [w["word"] for w in answer["words"]] == given.split()
        for item in answer["words"] + answer["entities"]:
            assert given[item["start"]:item["end"]] == item.get("word", item.get("text"))
            assert 0 < item["score"] <= 1
    elif route == "qa":
        if answer["answer"]:
            assert given["context"][answer["start"]:answer["end"]] == answer["answer"]
        assert 0 <= answer["score"] <= 1


def test_every_task_family_and_model_family_is_covered(served):
    """The table above serves every task of predict's table, on BERT, XLNet, ELMo and ModernBERT alike."""
    from bertforge.tasks import TASKS

    assert {served(name).task.name for name in MODELS} == set(TASKS)
    assert {served(name).family for name in MODELS} == {"bert", "xlnet", "elmo", "electra", "static", "modernbert"}
    for family in ("bert", "xlnet", "elmo", "modernbert"):
        tasks = {served(name).task.name for name in MODELS if served(name).family == family}
        assert tasks >= {"classify", "tag", "qa", "choice"}, family


@pytest.mark.parametrize("name, route, words", [
    ("elmo-classify", "fill-mask", "needs a pre-trained BERT model"),
    ("elmo-tag", "embed", "encoder, which this elmo model does not have"),
    ("xlnet-qa", "attention", "encoder, which this xlnet model does not have"),
    ("xlnet-choice", "fill-mask", "needs a pre-trained BERT model"),
    ("xlnet-classify", "tag", "/tag answers a model fine-tuned for a task that reads words"),
])
def test_a_route_the_family_cannot_serve_is_400_naming_route_and_family(served, make_client, name, route, words):
    model = served(name)
    body = {"inputs": {"question": "who ?", "context": "alice"}} if route == "qa" else {"inputs": "the [MASK] cat"}
    with make_client(model) as c:
        r = c.post(f"/{route}", json=body)
        info = c.get("/info").json()
    assert r.status_code == 400 and r.json()["field"] is None
    message = r.json()["error"]
    assert message.startswith(f"/{route} is not served by this model (family {model.family}, its task is "
                              f"{model.task.name})") and words in message
    assert f"it serves {', '.join('/' + r for r in model.routes)}" in message
    assert info["family"] == model.family and route not in info["routes"]


def test_the_served_routes_of_each_family(served):
    assert served("xlnet-classify").routes == ("classify", "tokenize")
    assert served("elmo-qa").routes == ("qa", "tokenize")
    assert served("elmo-choice").routes == ("choice", "tokenize")
    assert served("choice").routes == ("embed", "choice", "attention", "tokenize")
    assert served("electra-classify").routes == ("embed", "classify", "attention", "tokenize")  # a BERT encoder
    assert served("bilstm-tag").routes == ("embed", "tag", "attention", "tokenize")
    assert served("modernbert-classify").routes == ("embed", "classify", "attention", "tokenize")  # its ModernBERT


@pytest.mark.parametrize("name", ["bilstm-tag", "electra-classify", "modernbert-classify"])
def test_embed_and_attention_of_a_task_model_read_its_encoder(served, make_client, name):
    from bertforge.inference import encode

    model = served(name)  # BERT's features under a BiLSTM, ELECTRA's or ModernBERT's encoder under its head
    texts = ["alice lives in paris", "the cat"]
    with make_client(model) as c:
        vectors = c.post("/embed", json={"inputs": texts, "normalize": False}).json()
        pooler = c.post("/embed", json={"inputs": texts, "pooling": "pooler"})
        attention = c.post("/attention", json={"inputs": "the cat"}).json()
    np.testing.assert_allclose(vectors, encode(model.encoder, model.tokenizer, texts).numpy(), atol=1e-5)
    assert pooler.status_code == 422 and "no pooler" in pooler.json()["error"]
    assert np.array(attention["attention"]).shape == (2, 2, 4, 4)


@pytest.mark.parametrize("name", ["elmo", "xlnet", "electra", "static"])
def test_a_pretrained_model_that_would_serve_only_tokenize_is_refused_at_start(serve_models, name):
    from bertforge.errors import UsageError
    from bertforge.serve.models import ServedModel

    with pytest.raises(UsageError, match=f"is a pre-trained {name} model .* would serve tokenize alone") as e:
        ServedModel.load(serve_models[name])
    assert e.value.flag == "--model"


def test_choice_body_errors(served, make_client):
    with make_client(served("choice"), max_input_tokens=16) as c:
        cases = [({"inputs": {"context": "a cat"}}, 422, "inputs.endings", "missing field 'endings'"),
                 ({"inputs": {"context": "a cat", "endings": []}}, 422, "inputs.endings", "empty list"),
                 ({"inputs": {"context": "a cat", "endings": "runs"}}, 422, "inputs.endings", "array of texts"),
                 ({"inputs": [{"context": "a cat", "endings": ["runs", 3]}]}, 422, "inputs[0].endings[1]",
                  "got a number"),
                 ({"inputs": {"context": "a cat", "endings": ["runs"] * 65}}, 413, "inputs.endings", "65 endings"),
                 ({"inputs": {"context": " ".join(["the cat"] * 10), "endings": ["runs"]}}, 413, "inputs",
                  "limit of 16")]
        for body, status, field, words in cases:
            r = c.post("/choice", json=body)
            assert r.status_code == status and r.json()["field"] == field and words in r.json()["error"], r.text
        cut = c.post("/choice", json={"inputs": {"context": " ".join(["the cat"] * 10), "endings": ["runs"]},
                                      "truncate": True})
        assert cut.status_code == 200 and cut.json()["label"] == 0 and cut.json()["score"] == 1.0
