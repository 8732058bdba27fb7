"""ONNX export: every head's graph equals the torch model (ONNX Runtime, 1e-4) on padded batches of
shapes the export never saw; the real MiniLM too, up to 512 tokens; INT8 stays close; Predictor's
onnx backend gives the torch backend's predictions for every task family."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from unavailable import require

ort = require("onnxruntime")

from bertforge.export.layout import MANIFEST  # noqa: E402
from bertforge.export.onnx import export_model, export_onnx, output_axes, quantize_int8, real_tokens
from bertforge.inference import Predictor
from bertforge.inference.onnx import OnnxModel
from bertforge.model import (BertForMultipleChoice, BertForPreTraining, BertForQuestionAnswering,
                             BertForSequenceClassification, BertForTokenClassification, BertModel)
from bertforge.model.task_model import TaskModel
from bertforge.tasks import DataOptions

from tests.export.models import batch, labelled, tiny_config

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
REGRESS = {"bertforge_task": "regress", "problem_type": "regression", "id2label": {"0": "score"}}
# name: (class, config extras, layers)
HEADS = {
    "encoder": (BertModel, {}, 2),
    "pretraining": (BertForPreTraining, {}, 2),
    "classify": (BertForSequenceClassification, labelled("classify"), 2),
    "regress": (BertForSequenceClassification, REGRESS, 2),
    "choice": (BertForMultipleChoice, {"bertforge_task": "choice"}, 2),
    "tag": (BertForTokenClassification, labelled("tag", TAGS), 2),
    "qa": (BertForQuestionAnswering, {"bertforge_task": "qa"}, 2),
    "task-model-tag-frozen-last": (TaskModel, {**labelled("tag", TAGS), "features": "last", "frozen": True}, 2),
    # TaskModel (task.json): BERT's features, frozen or fine-tuned, maybe through a BiLSTM, to a task layer
    "task-model-tag-frozen-concat-last-4": (TaskModel, {**labelled("tag", TAGS), "features": "concat-last-4",
                                                        "frozen": True}, 4),
    "task-model-classify-frozen-scalar-mix": (TaskModel, {**labelled("classify"), "features": "scalar-mix",
                                                          "frozen": True}, 2),
    "task-model-tag-bilstm": (TaskModel, {**labelled("tag", TAGS), "bilstm": True}, 2),
    "task-model-classify-bilstm": (TaskModel, {**labelled("classify"), "bilstm": True}, 2),
    "task-model-choice-bilstm": (TaskModel, {"bertforge_task": "choice", "bilstm": True}, 2),
    "task-model-qa": (TaskModel, {"bertforge_task": "qa"}, 2),
}
SHAPES = [(1, 1), (2, 5), (7, 33), (3, 128)]  # (batch, length), rows padded; 128 = max_position_embeddings
TOLERANCE = 1e-4


def max_diffs(model, onnx_model: OnnxModel, inputs: dict[str, torch.Tensor]) -> dict[str, float]:
    """The largest difference of each output, at real tokens (padded positions are nobody's output)."""
    with torch.no_grad():
        want = model(**inputs)
    axes, mask = output_axes(model), inputs["attention_mask"]
    return {name: float(np.abs(real_tokens(getattr(want, name).numpy(), axes[name], mask)
                               - real_tokens(value, axes[name], mask)).max())
            for name, value in onnx_model.run(**inputs).items()}


@pytest.mark.parametrize("name", list(HEADS))
def test_every_head_matches_torch(name, tiny_model_dir, tmp_path):
    cls, extra, layers = HEADS[name]
    config = tiny_config(layers, **({} if cls is TaskModel else extra))
    path = tiny_model_dir(name, cls, config, extra)
    manifest = export_onnx(path, tmp_path / "onnx")
    assert manifest["architecture"] == cls.__name__ and manifest["files"]["model.onnx"]["max_abs_diff"] < TOLERANCE
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == sorted(
        [MANIFEST, "config.json", "model.onnx", "special_tokens_map.json", "tokenizer.json",
         "tokenizer_config.json", "vocab.txt"] + (["task.json"] if cls is TaskModel else []))
    model, onnx_model = cls.from_pretrained(path).eval(), OnnxModel.load(tmp_path / "onnx", threads=1)
    assert onnx_model.output_names == list(manifest["outputs"])
    choices = 4 if cls is BertForMultipleChoice or extra.get("bertforge_task") == "choice" else None
    for b, t in SHAPES:
        diffs = max_diffs(model, onnx_model, batch(config, b, t, choices, seed=b * t))
        print(f"{name} {b} x {t}: {diffs}")
        assert max(diffs.values()) <= TOLERANCE, f"{b} x {t}: {diffs}"


def test_export_of_a_model_in_training_mode_has_no_dropout_and_keeps_its_mode(tmp_path):
    """The exporter restores the mode it found; the graph is the eval-mode model either way."""
    torch.manual_seed(0)
    config = tiny_config()
    model = BertModel(config, add_pooling_layer=False).train()
    info = export_model(model, tmp_path / "model.onnx")
    assert model.training and list(info["outputs"]) == ["last_hidden_state"]
    session = OnnxModel(ort.InferenceSession(str(tmp_path / "model.onnx")), config, tmp_path)
    assert max(max_diffs(model.eval(), session, batch(config, 4, 20)).values()) <= TOLERANCE


def test_onnx_model_checks_inputs_as_the_torch_model_does(tiny_model_dir, tmp_path):
    cls, extra, layers = HEADS["classify"]
    export_onnx(tiny_model_dir("classify", cls, tiny_config(layers, **extra)), tmp_path / "onnx")
    onnx_model = OnnxModel.load(tmp_path / "onnx", threads=1)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        onnx_model.run(np.array([[2, 10_000, 3]]))
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        onnx_model.run(np.full((1, 129), 5))
    with pytest.raises(ValueError, match="2 dimensions"):
        onnx_model.run(np.full((1, 2, 3), 5))
    defaults = onnx_model.run(np.array([[2, 10, 3]]))["logits"]  # token types 0 and no padding by default
    explicit = onnx_model.run(np.array([[2, 10, 3]]), np.zeros((1, 3)), np.ones((1, 3)))["logits"]
    np.testing.assert_array_equal(defaults, explicit)


# --- Predictor: the onnx backend gives the torch backend's predictions, for every task family ------

INPUTS = {
    "classify": ["a good movie", {"text": "the plot was awful", "text_pair": "it is a bad film"}, "fine"],
    "regress": ["a good movie", {"text": "alice lives in paris", "text_pair": "bob lives in london"}],
    "tag": [{"words": ["alice", "lives", "in", "paris", "."]}, {"words": ["who", "?"]}],
    "qa": [{"question": "where does alice live ?", "context": "alice lives in paris . bob lives in london ."}],
    "choice": [{"context": "alice lives in", "endings": ["paris .", "london .", "a good film"]}],
}


@pytest.mark.parametrize("name", [*INPUTS, "task-model-tag-bilstm", "task-model-choice-bilstm"])
def test_predictor_onnx_backend_predicts_as_torch(name, tiny_model_dir, tmp_path):
    cls, extra, layers = HEADS[name]
    task = extra["bertforge_task"]
    path = tiny_model_dir(name, cls, tiny_config(layers, **({} if cls is TaskModel else extra)), extra)
    model_dir = tmp_path / "model"
    shutil.copytree(path, model_dir)
    export_onnx(model_dir, model_dir / "onnx")  # MODEL/onnx: found from the model directory
    lines = tmp_path / "inputs.jsonl"
    lines.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in INPUTS[task]))
    opts = DataOptions(max_length=16, doc_stride=4, max_query_length=8)
    ours = Predictor.load(model_dir)
    examples = ours.task.read_inputs(lines, opts)
    want, want_raw = ours.predict(examples, opts, batch_size=2)
    onnx = Predictor.load(model_dir, backend="onnx")
    assert isinstance(onnx.model, OnnxModel) and onnx.task.name == task and onnx.labels == ours.labels
    got, got_raw = onnx.predict(examples, opts, batch_size=2)
    assert Predictor.load(model_dir / "onnx", backend="onnx").predict(examples, opts, 2)[0] == got  # self-contained
    assert len(got_raw) == len(want_raw)
    for a, b in zip(want_raw, got_raw):
        assert a.shape == b.shape and np.abs(a - b).max() <= TOLERANCE
    if task == "regress":
        np.testing.assert_allclose(got, want, atol=TOLERANCE)
    else:
        assert got == want


def test_predictor_rejects_an_unknown_backend_and_a_missing_export(tiny_model_dir):
    cls, extra, layers = HEADS["classify"]
    path = tiny_model_dir("classify", cls, tiny_config(layers, **extra))
    with pytest.raises(ValueError, match="--backend: unknown backend 'tensorrt'"):
        Predictor.load(path, backend="tensorrt")
    with pytest.raises(FileNotFoundError, match="has no model.onnx.*bertforge export onnx"):
        Predictor.load(path, backend="onnx")


# --- INT8 -----------------------------------------------------------------------------------------

def test_int8_graph_runs_and_stays_close(tiny_model_dir, tmp_path):
    cls, extra, layers = HEADS["classify"]
    config = tiny_config(layers, **extra)
    manifest = export_onnx(tiny_model_dir("classify", cls, config), tmp_path / "onnx", quantize="int8")
    int8 = manifest["files"]["model.int8.onnx"]
    assert int8["weight_type"] == "QInt8" and int8["per_channel"] is True
    fp32 = OnnxModel.load(tmp_path / "onnx", "onnx", threads=1)
    q = OnnxModel.load(tmp_path / "onnx", "onnx-int8", threads=1)
    x = batch(config, 16, 40)
    a, b = fp32.run(**x)["logits"], q.run(**x)["logits"]
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max() + 1e-3


@pytest.mark.slow
def test_int8_minilm_classifier_agrees_with_fp32_on_snli(minilm_dir, tmp_path):
    """MiniLM with a 3-way head that separates real sentence pairs (the top principal directions of
    their pooled vectors, so class margins are as wide as real ones): INT8 picks the fp32 class."""
    from bertforge.data.fetch import fetch
    from bertforge.data.readers import read_snli
    from bertforge.tokenization import BertTokenizer

    examples, _ = read_snli(fetch("snli", quiet=True) / "snli_1.0_test.jsonl")
    examples = examples[:128]
    tok = BertTokenizer.from_pretrained(minilm_dir)
    enc = tok([e.text for e in examples], [e.text_pair for e in examples], max_length=128)
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(minilm_dir, num_labels=3).eval()
    with torch.no_grad():
        pooled = model.bert(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]).pooler_output
        mean = pooled.mean(0)
        directions = torch.linalg.svd(pooled - mean, full_matrices=False).Vh[:3]  # (3, H)
        model.classifier.weight.copy_(directions)
        model.classifier.bias.copy_(-directions @ mean)
    export_model(model, tmp_path / "model.onnx")
    settings = quantize_int8(tmp_path / "model.onnx", tmp_path / "model.int8.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    feeds = {k: enc[k].numpy() for k in ("input_ids", "token_type_ids", "attention_mask")}
    fp32, int8 = (ort.InferenceSession(str(tmp_path / f), options).run(None, feeds)[0]
                  for f in ("model.onnx", "model.int8.onnx"))
    agreement = float((fp32.argmax(1) == int8.argmax(1)).mean())
    print(f"INT8 picks the fp32 class on {agreement:.1%} of {len(examples)} SNLI pairs ({settings})")
    assert agreement >= 0.95, (agreement, settings)
    # the encoder's matrices shrink 4x; the embedding tables (a third of MiniLM) stay fp32
    assert (tmp_path / "model.int8.onnx").stat().st_size < 0.7 * (tmp_path / "model.onnx").stat().st_size


# --- the real MiniLM, up to 512 tokens ------------------------------------------------------------

MINILM_SHAPES = [(1, 1), (2, 7), (32, 16), (4, 128), (1, 512), (8, 512)]


@pytest.fixture(scope="module")
def minilm_onnx(minilm_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm") / "onnx"
    export_onnx(minilm_dir, out)
    return BertModel.from_pretrained(minilm_dir).eval(), OnnxModel.load(out, threads=1)


@pytest.mark.slow
@pytest.mark.parametrize("b,t", MINILM_SHAPES)
def test_minilm_matches_torch_up_to_512_tokens(minilm_onnx, b, t):
    model, onnx_model = minilm_onnx
    diffs = max_diffs(model, onnx_model, batch(model.config, b, t, seed=b * t))
    print(f"MiniLM {b} x {t}: {diffs}")
    assert max(diffs.values()) <= TOLERANCE, diffs
