"""`--backend onnx`: a fine-tuned model's graph (``bertforge export onnx``) serves its task route and
tokenize, with the torch model's answers; a model with no export is refused at load with one clear error."""

from __future__ import annotations

import pytest

from unavailable import require

require("onnx")
require("onnxruntime")


def test_onnx_backend_serves_the_task_route(served, serve_models, make_client, tmp_path):
    from bertforge.errors import PathError
    from bertforge.export.onnx import export_onnx
    from bertforge.serve.models import ServedModel

    export_onnx(serve_models["clf"], tmp_path / "clf-onnx")
    model = ServedModel.load(tmp_path / "clf-onnx", backend="onnx")
    assert model.routes == ("classify", "tokenize") and model.task_name == "classify"
    inputs = ["a good movie", ["the plot was bad", "it is a film"]]
    with make_client(model) as c:
        info = c.get("/info").json()
        onnx = c.post("/classify", json={"inputs": inputs}).json()
        refused = c.post("/embed", json={"inputs": "a cat"})
    with make_client(served("clf")) as c:
        reference = c.post("/classify", json={"inputs": inputs}).json()
    assert info["backend"] == "onnx" and info["labels"] == ["neg", "pos"]
    assert [a["label"] for a in onnx] == [a["label"] for a in reference]
    assert [a["score"] for a in onnx] == pytest.approx([a["score"] for a in reference], abs=1e-4)
    assert refused.status_code == 400 and "its task is classify" in refused.json()["error"]
    with pytest.raises(PathError, match="has no model.onnx"):
        ServedModel.load(serve_models["clf"], backend="onnx")
