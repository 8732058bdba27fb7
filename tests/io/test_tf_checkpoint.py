"""TensorFlow checkpoints without TensorFlow: the format against files TensorFlow wrote (tests/io/fixtures, made by
make_tf_bert.py, which also had TensorFlow read this writer's files), Google's BERT names against the outputs
TensorFlow computed with Google's equations, the way back, and the bad inputs."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.config import BertConfig
from bertforge.errors import CheckpointError, ConfigError, PathError
from bertforge.io import google_bert, tf_checkpoint as tfc
from bertforge.io.google_bert import bert_from_tf, convert_from_tf, convert_to_tf
from bertforge.io.tf_checkpoint import (TFCheckpoint, crc32c, mask_crc, read_tf_checkpoint, unmask_crc,
                                        write_tf_checkpoint)
from bertforge.io.weights import read_state_dict
from bertforge.model import (BertForPreTraining, BertForQuestionAnswering, BertForSequenceClassification,
                             BertModel)
from in_process import cli

FIXTURES = Path(__file__).parent / "fixtures"
TF_BERT = FIXTURES / "tf_bert"
PREFIX = TF_BERT / "bert_model.ckpt"
TF_CONFIG = TF_BERT / "bert_config.json"
TF_VOCAB = TF_BERT / "vocab.txt"
HEAD_CLASSES = {"pretraining": BertForPreTraining, "classify": BertForSequenceClassification,
                "qa": BertForQuestionAnswering, "encoder": BertModel}
HEADS = {  # the variables each head adds to the encoder
    "pretraining": ["cls/predictions/output_bias", "cls/predictions/transform/LayerNorm/beta",
                    "cls/predictions/transform/LayerNorm/gamma", "cls/predictions/transform/dense/bias",
                    "cls/predictions/transform/dense/kernel", "cls/seq_relationship/output_bias",
                    "cls/seq_relationship/output_weights"],
    "classify": ["output_bias", "output_weights"],
    "qa": ["cls/squad/output_bias", "cls/squad/output_weights"],
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(TF_BERT / "expected.npz") as data:
        return dict(data)


def copy_checkpoint(tmp_path: Path) -> Path:
    target = tmp_path / "ckpt"
    shutil.copytree(TF_BERT, target)
    return target / "bert_model.ckpt"


def bitwise_crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C one bit at a time, straight from the polynomial: the independent reference."""
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


# --- the format ---------------------------------------------------------------------------------

def test_crc32c_is_castagnoli_and_extends():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c(b"") == 0 and crc32c(b"", 1234) == 1234
    rng = np.random.default_rng(0)
    for n in (1, 3, 63, 64, 65, 1000, 4099, 70001):  # below, at and above one chunk; ragged ends
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc32c(data) == bitwise_crc32c(data), n
        assert crc32c(data[n // 3:], crc32c(data[:n // 3])) == bitwise_crc32c(data), n
    for crc in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert unmask_crc(mask_crc(crc)) == crc and (crc == 0 or mask_crc(crc) != crc)


def test_crc32c_across_segments(monkeypatch):
    data = np.random.default_rng(1).integers(0, 256, 30001, dtype=np.uint8).tobytes()
    monkeypatch.setattr(tfc, "_SEGMENT", 1000)  # 4 MiB passes in real use; 31 here
    assert crc32c(data) == bitwise_crc32c(data)
    assert crc32c(np.frombuffer(data[:30000], np.float32)) == bitwise_crc32c(data[:30000])  # any array's bytes


def test_reads_every_variable_tensorflow_wrote():
    checkpoint = TFCheckpoint(PREFIX)
    assert checkpoint.num_shards == 1 and not checkpoint.big_endian
    names = set(checkpoint)
    assert {"global_step", "bert/pooler/dense/kernel/adam_m", "output_weights/adam_v"} <= names
    assert checkpoint.entries["bert/encoder/layer_1/intermediate/dense/kernel"].shape == (32, 48)
    assert checkpoint.entries["output_weights"].shape == (3, 32)
    tensors = read_tf_checkpoint(PREFIX)
    assert tensors["global_step"].dtype == np.int64 and tensors["global_step"] == 1000
    # the encoder, all three heads, four Adam slots, the step: 2 layers x 16 + 5 + 2 + 7 + 2 + 2 + 4 + 1
    assert len(tensors) == 55 and all(a.dtype == np.float32 for n, a in tensors.items() if n != "global_step")


def test_reads_tensorflows_other_dtypes():
    tensors = read_tf_checkpoint(FIXTURES / "tf_dtypes" / "dtypes.ckpt")
    with np.load(FIXTURES / "tf_dtypes" / "expected.npz") as data:
        expected = dict(data)
    assert [s.decode("utf-8") for s in tensors.pop("strings").reshape(-1)] == list(expected.pop("strings"))
    assert tensors["bfloat16"].dtype == np.float32  # numpy has no bfloat16: widened exactly
    assert set(tensors) == set(expected)
    for name, value in expected.items():
        assert tensors[name].shape == value.shape, name
        np.testing.assert_array_equal(tensors[name], value, err_msg=name)


def test_writer_round_trip_several_blocks_and_dtypes(tmp_path):
    rng = np.random.default_rng(1)
    tensors = {f"group_{i % 7}/t{i:04d}/{'v' * (i % 50)}": rng.standard_normal((i % 4, 3)).astype(np.float32)
               for i in range(5000)}
    tensors.update({"i64": np.array([-(2 ** 40), 2 ** 62]), "f16": np.array([0.5, 6e-5], np.float16),
                    "bool": np.array([True, False]), "scalar": np.float64(2.5), "u8": np.arange(5, dtype=np.uint8)})
    paths = write_tf_checkpoint(tmp_path / "x.ckpt", tensors)
    assert [p.name for p in paths] == ["x.ckpt.index", "x.ckpt.data-00000-of-00001"]
    assert paths[0].stat().st_size > 262144  # several 256 KiB data blocks in the index
    back = read_tf_checkpoint(tmp_path / "x.ckpt")
    assert list(back) == sorted(tensors)  # the table is in key order
    for name, value in tensors.items():
        assert back[name].dtype == np.asarray(value).dtype and back[name].shape == np.shape(value), name
        np.testing.assert_array_equal(back[name], value, err_msg=name)


def test_the_fixture_script_still_finds_what_it_imports():
    """make_tf_bert.py runs by hand under TensorFlow's own environment; its bertforge imports must keep resolving."""
    import ast

    tree = ast.parse((FIXTURES / "make_tf_bert.py").read_text(encoding="utf-8"))
    imported = [(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("bertforge") for alias in node.names]
    assert imported == [("bertforge.io.tf_checkpoint", "read_tf_checkpoint"),
                        ("bertforge.io.tf_checkpoint", "write_tf_checkpoint")]
    assert all(callable(getattr(tfc, name)) for _, name in imported)


def test_checkpoint_named_by_prefix_index_data_file_or_folder():
    for name in (PREFIX, TF_BERT / "bert_model.ckpt.index", TF_BERT / "bert_model.ckpt.data-00000-of-00001", TF_BERT):
        assert TFCheckpoint(name).prefix == PREFIX


# --- Google's BERT against TensorFlow's outputs --------------------------------------------------

def run(model, expected: dict[str, np.ndarray]):
    model.eval()
    with torch.no_grad():
        return model(*(torch.from_numpy(expected[k]).long() for k in ("input_ids", "token_type_ids", "attention_mask")))


def assert_close(ours: torch.Tensor, theirs: np.ndarray, mask: np.ndarray | None = None) -> None:
    ours = ours.numpy()
    assert ours.shape == theirs.shape
    if mask is not None:  # padded positions: TensorFlow computes them too, but nothing reads them
        ours, theirs = ours[mask.astype(bool)], theirs[mask.astype(bool)]
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("task", ["pretraining", "classify", "qa", "encoder"])
def test_converted_model_computes_what_tensorflow_computed(tmp_path, expected, task):
    with pytest.warns(UserWarning, match="has no place for"):  # the fixture carries every head
        report = convert_from_tf(PREFIX, TF_CONFIG, TF_VOCAB, tmp_path / "model", task=task)
    assert report.architecture == HEAD_CLASSES[task].__name__ and not report.unknown
    assert sorted(report.skipped) == sorted(["global_step", "bert/pooler/dense/kernel/adam_m",
                                             "bert/pooler/dense/kernel/adam_v", "output_weights/adam_m",
                                             "output_weights/adam_v"])
    model = HEAD_CLASSES[task].from_pretrained(tmp_path / "model")
    out, mask = run(model, expected), expected["attention_mask"]
    if task == "encoder":
        assert_close(out.last_hidden_state, expected["sequence_output"], mask)
        assert_close(out.pooler_output, expected["pooled_output"])
    elif task == "pretraining":
        assert_close(out.prediction_logits, expected["mlm_logits"], mask)
        assert_close(out.seq_relationship_logits, expected["nsp_logits"])
        assert_close(run(model.bert, expected).last_hidden_state, expected["sequence_output"], mask)
    elif task == "classify":
        assert_close(out.logits, expected["classifier_logits"])
    else:
        assert_close(out.start_logits, expected["start_logits"], mask)
        assert_close(out.end_logits, expected["end_logits"], mask)


def test_the_head_is_found_from_the_variables(tmp_path):
    tensors = read_tf_checkpoint(PREFIX)
    for task, drop in (("qa", []), ("classify", HEADS["qa"]), ("pretraining", HEADS["qa"] + HEADS["classify"]),
                       ("encoder", HEADS["qa"] + HEADS["classify"] + HEADS["pretraining"])):
        write_tf_checkpoint(tmp_path / task, {k: v for k, v in tensors.items() if k not in drop})
        assert google_bert.detect_task(set(TFCheckpoint(tmp_path / task))) == task
    config = BertConfig.from_json_file(TF_CONFIG)
    _, report = bert_from_tf(TFCheckpoint(tmp_path / "encoder"), config)  # no head: nothing unused, no warning
    assert report.architecture == "BertModel" and not report.unused


# --- the way back --------------------------------------------------------------------------------

@pytest.mark.parametrize("task", ["pretraining", "classify", "qa"])
def test_round_trip_tf_to_ours_to_tf_to_ours(tmp_path, task):
    with pytest.warns(UserWarning):
        convert_from_tf(PREFIX, TF_CONFIG, TF_VOCAB, tmp_path / "a", task=task)
    summary = convert_to_tf(tmp_path / "a", tmp_path / "tf" / "bert_model.ckpt")
    written = read_tf_checkpoint(tmp_path / "tf" / "bert_model.ckpt")
    original = read_tf_checkpoint(PREFIX)
    kept = {n for n in original if not google_bert.is_training_state(n)
            and not any(n in HEADS[h] for h in HEADS if h != task)}
    if task == "qa":
        kept -= {"bert/pooler/dense/kernel", "bert/pooler/dense/bias"}  # a span head has no pooler
    assert set(written) == kept and summary["tensors"] == len(kept)
    for name in kept:
        np.testing.assert_array_equal(written[name], original[name], err_msg=name)  # bit for bit
    assert json.loads((tmp_path / "tf" / "bert_config.json").read_text()) == json.loads(TF_CONFIG.read_text())
    assert (tmp_path / "tf" / "vocab.txt").read_bytes() == TF_VOCAB.read_bytes()

    convert_from_tf(tmp_path / "tf" / "bert_model.ckpt", tmp_path / "tf" / "bert_config.json",
                    tmp_path / "tf" / "vocab.txt", tmp_path / "b", task=task)
    first, second = read_state_dict(tmp_path / "a"), read_state_dict(tmp_path / "b")
    assert set(first) == set(second)
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_real_minilm_goes_to_tensorflow_and_back(tmp_path, minilm_dir):
    """A real sentence-transformers checkpoint (BertModel, keys without the bert. prefix, 22M parameters)."""
    convert_to_tf(minilm_dir, tmp_path / "tf" / "model.ckpt")
    config = BertConfig.from_json_file(tmp_path / "tf" / "bert_config.json")
    model, report = bert_from_tf(TFCheckpoint(tmp_path / "tf" / "model.ckpt"), config)
    assert report.task == "encoder" and not report.unknown and not report.unused
    original = read_state_dict(minilm_dir)
    ours = model.state_dict()
    compared = [k for k in original if k.removeprefix("bert.") in ours]
    assert len(compared) == len(ours) == report.tensors
    for name in compared:
        assert torch.equal(ours[name.removeprefix("bert.")], original[name].float()), name


def test_the_way_back_names_every_weight_or_refuses(tmp_path):
    config = BertConfig.from_json_file(TF_CONFIG)
    state = BertModel(config).state_dict()  # no bert. prefix, as a bare encoder saves it
    tensors = google_bert.bert_to_tf(state, config.num_hidden_layers)
    assert np.array_equal(tensors["bert/encoder/layer_1/intermediate/dense/kernel"],
                          state["encoder.layer.1.intermediate.dense.weight"].numpy().T)
    assert set(tensors) == {n for n in read_tf_checkpoint(PREFIX) if n.startswith("bert/")
                            and not google_bert.is_training_state(n)}
    head = {"bert.embeddings.position_ids": torch.arange(40), "cls.predictions.decoder.bias": torch.ones(99)}
    assert np.array_equal(google_bert.bert_to_tf({**state, **head}, 2)["cls/predictions/output_bias"], np.ones(99))
    with pytest.raises(CheckpointError, match="2 weights have no name in Google's BERT code: adapter.bias, "
                                              "adapter.weight"):
        google_bert.bert_to_tf({**state, "adapter.weight": torch.ones(2), "adapter.bias": torch.ones(2)}, 2)

    config.is_decoder = True
    BertModel(config).save_pretrained(tmp_path / "ltr")
    with pytest.raises(ConfigError, match="is a left-to-right model"):
        convert_to_tf(tmp_path / "ltr", tmp_path / "tf" / "x.ckpt")
    assert not (tmp_path / "tf").exists()


# --- bad inputs ----------------------------------------------------------------------------------

def test_truncated_data_file(tmp_path):
    prefix = copy_checkpoint(tmp_path)
    data = prefix.with_name("bert_model.ckpt.data-00000-of-00001")
    data.write_bytes(data.read_bytes()[:-100])
    last = max(TFCheckpoint(prefix).entries.values(), key=lambda e: e.offset)
    with pytest.raises(CheckpointError, match=rf"truncated: tensor '{last.name}' needs bytes"):
        TFCheckpoint(prefix).read(last.name)
    with pytest.raises(CheckpointError, match="truncated"):
        read_tf_checkpoint(prefix)


def test_checksum_mismatch_names_the_tensor(tmp_path):
    prefix = copy_checkpoint(tmp_path)
    entry = TFCheckpoint(prefix).entries["bert/encoder/layer_1/attention/self/key/kernel"]
    data = prefix.with_name("bert_model.ckpt.data-00000-of-00001")
    raw = bytearray(data.read_bytes())
    raw[entry.offset + entry.size // 2] ^= 0x01
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"checksum mismatch for tensor 'bert/encoder/layer_1/attention/self/"
                                              r"key/kernel'"):
        convert_from_tf(prefix, TF_CONFIG, TF_VOCAB, tmp_path / "out", task="encoder")
    assert not (tmp_path / "out").exists()  # nothing half-written
    TFCheckpoint(prefix).read("bert/encoder/layer_1/attention/self/query/kernel")  # the others still read


def test_damaged_index(tmp_path):
    prefix = copy_checkpoint(tmp_path)
    index = prefix.with_name("bert_model.ckpt.index")
    good = index.read_bytes()
    index.write_bytes(good[:10] + bytes([good[10] ^ 0x40]) + good[11:])
    with pytest.raises(CheckpointError, match="checksum mismatch in the block at byte 0"):
        TFCheckpoint(prefix)
    index.write_bytes(good[:-20])
    with pytest.raises(CheckpointError, match="bad magic number"):
        TFCheckpoint(prefix)
    index.write_bytes(good[:30])
    with pytest.raises(CheckpointError, match="too short"):
        TFCheckpoint(prefix)


def test_compressed_block_is_refused_by_name(tmp_path):
    """TensorFlow writes checkpoint indexes uncompressed; a LevelDB table with a snappy block is refused."""
    block = tfc._build_block([(b"", b"\x08\x01")], 16)
    body = block + b"\x01" + mask_crc(crc32c(block + b"\x01")).to_bytes(4, "little")  # type 1: snappy
    handle = tfc._put_varint(0) + tfc._put_varint(len(block))
    meta = tfc._build_block([], 16)
    meta_at = len(body)
    body += meta + b"\x00" + mask_crc(crc32c(meta + b"\x00")).to_bytes(4, "little")
    index = tfc._build_block([(b"\xff", handle)], 1)
    index_at = len(body)
    body += index + b"\x00" + mask_crc(crc32c(index + b"\x00")).to_bytes(4, "little")
    footer = tfc._put_varint(meta_at) + tfc._put_varint(len(meta)) + tfc._put_varint(index_at) + \
        tfc._put_varint(len(index))
    (tmp_path / "c.index").write_bytes(body + footer + bytes(40 - len(footer)) + tfc._TABLE_MAGIC.to_bytes(8, "little"))
    with pytest.raises(CheckpointError, match="is snappy-compressed; bertforge reads uncompressed tables only"):
        TFCheckpoint(tmp_path / "c")


def test_config_sizes_disagree_names_the_variable_and_both_shapes(tmp_path):
    config = json.loads(TF_CONFIG.read_text())
    (tmp_path / "wide.json").write_text(json.dumps({**config, "hidden_size": 48}))
    with pytest.raises(CheckpointError) as caught:
        convert_from_tf(PREFIX, tmp_path / "wide.json", TF_VOCAB, tmp_path / "out", task="pretraining")
    message = str(caught.value)
    assert "\n" not in message
    assert "bert/embeddings/word_embeddings has shape [99, 32] in the checkpoint but [99, 48] by the config" in message
    assert message.startswith(f"{tmp_path / 'wide.json'}: sizes disagree")
    assert caught.value.mismatched["bert/encoder/layer_0/intermediate/dense/kernel"] == ((32, 48), (48, 48))

    (tmp_path / "ffn.json").write_text(json.dumps({**config, "intermediate_size": 64}))
    with pytest.raises(CheckpointError, match=r"bert/encoder/layer_0/intermediate/dense/kernel has shape \[32, 48\] "
                                              r"in the checkpoint but \[32, 64\] by the config \(5 more"):
        convert_from_tf(PREFIX, tmp_path / "ffn.json", TF_VOCAB, tmp_path / "out", task="encoder")
    (tmp_path / "deep.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(CheckpointError, match=r"has 2 encoder layers \(layer_0..layer_1\) but .*deep.json says "
                                              r"num_hidden_layers 3"):
        convert_from_tf(PREFIX, tmp_path / "deep.json", TF_VOCAB, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_variables_are_listed_and_missing_ones_refused(tmp_path):
    tensors = read_tf_checkpoint(PREFIX)
    extra = {"bert/encoder/layer_0/adapter/dense/kernel": np.ones((2, 2), np.float32), "my_head/w": np.ones(3)}
    write_tf_checkpoint(tmp_path / "extra.ckpt", {**tensors, **extra})
    config = BertConfig.from_json_file(TF_CONFIG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, report = bert_from_tf(TFCheckpoint(tmp_path / "extra.ckpt"), config, task="pretraining")
    assert [str(w.message) for w in caught if "not Google's" in str(w.message)] == [
        f"{tmp_path / 'extra.ckpt'}: ignored 2 variables that are not Google's BERT names: "
        "bert/encoder/layer_0/adapter/dense/kernel, my_head/w"]
    assert report.unknown == sorted(extra)

    gone = "bert/encoder/layer_1/output/dense/kernel"
    write_tf_checkpoint(tmp_path / "gone.ckpt", {k: v for k, v in tensors.items() if k != gone} | extra)
    with pytest.raises(CheckpointError, match=rf"lacks 1 variables of a BertModel: {gone}; it has variables that "
                                              r"are not Google's BERT names: bert/encoder/layer_0/adapter"):
        bert_from_tf(TFCheckpoint(tmp_path / "gone.ckpt"), config, task="encoder")
    write_tf_checkpoint(tmp_path / "headless.ckpt", {k: v for k, v in tensors.items() if k not in HEADS["classify"]})
    with pytest.raises(CheckpointError, match=r"no classifier in the checkpoint \(output_weights\)"):
        bert_from_tf(TFCheckpoint(tmp_path / "headless.ckpt"), config, task="classify")


def test_missing_index(tmp_path):
    (tmp_path / "bert_model.ckpt.data-00000-of-00001").write_bytes(b"")
    with pytest.raises(PathError, match=r"no such TensorFlow checkpoint \(bert_model.ckpt.index is missing\)"):
        TFCheckpoint(tmp_path / "bert_model.ckpt")
    with pytest.raises(PathError, match="found none"):
        TFCheckpoint(tmp_path)


# --- the command line ----------------------------------------------------------------------------


def test_cli_converts_both_ways(tmp_path, capsys, expected):
    code, out, err = cli(capsys, "convert", "tf", str(TF_BERT), "--out", str(tmp_path / "model"),
                         "--task", "pretraining")
    assert code == 0 and "46 variables (21,925 parameters) -> BertForPreTraining (uncased tokenizer)" in out, err
    assert "skipped 5 optimizer slots and step counters" in out
    assert "bertforge: warning:" in err and "cls/squad/output_weights" in err  # unused heads, one line
    model = BertForPreTraining.from_pretrained(tmp_path / "model")
    assert_close(run(model, expected).seq_relationship_logits, expected["nsp_logits"])

    code, out, err = cli(capsys, "convert", "--to", "tf", str(tmp_path / "model"), "--out",
                         str(tmp_path / "tf" / "bert_model.ckpt"))
    assert code == 0 and "46 tensors (21,925 parameters)" in out, err
    assert set(read_tf_checkpoint(tmp_path / "tf" / "bert_model.ckpt")) == set(HEADS["pretraining"]) | {
        n for n in read_tf_checkpoint(PREFIX) if n.startswith("bert/") and not google_bert.is_training_state(n)}

    # and again, into files that now exist: refused, one line, exit 2
    code, out, err = cli(capsys, "convert", "--to", "tf", str(tmp_path / "model"), "--out",
                         str(tmp_path / "tf" / "bert_model.ckpt"))
    assert code == 2 and err.count("\n") == 1 and "bert_model.ckpt.index exists; bertforge will not overwrite" in err


@pytest.mark.parametrize("argv, message", [
    (["convert", "tf", "{tmp}/nothing.ckpt", "--out", "{tmp}/o"], "no such TensorFlow checkpoint (nothing.ckpt.index "
                                                                    "is missing)"),
    (["convert", "{bert}", "--out", "{tmp}/o"], "expected `bertforge convert tf CKPT_PREFIX --out DIR`"),
    (["convert", "tf", "{bert}", "--out", "{tmp}/o", "--config", "{tmp}/none.json"], "--config {tmp}/none.json: no "
                                                                                      "such file"),
    (["convert", "tf", "{bert}", "--out", "{tmp}/o", "--config", "{tmp}/wide.json"],
     "bert/embeddings/word_embeddings has shape [99, 32] in the checkpoint but [99, 48] by the config"),
    (["convert", "tf", "{bert}", "--out", "{tmp}/o", "--vocab", "{tmp}/big_vocab.txt"], "vocab_size is 99 but"),
    (["convert", "--to", "tf", "{bert}", "--out", "{tmp}/x.ckpt"], "is not a model directory (no config.json)"),
    (["convert", "--to", "tf", "{tmp}", "{tmp}", "--out", "{tmp}/x.ckpt"], "--to tf takes one model directory"),
    (["convert", "--to", "tf", "{tmp}", "--out", "{tmp}/x.ckpt", "--config", "{tmp}/wide.json"],
     "--config: only applies when reading a TensorFlow checkpoint"),
])
def test_cli_bad_inputs_are_one_line(tmp_path, capsys, argv, message):
    config = json.loads(TF_CONFIG.read_text())
    (tmp_path / "wide.json").write_text(json.dumps({**config, "hidden_size": 48}))
    (tmp_path / "big_vocab.txt").write_text(TF_VOCAB.read_text() + "extra\n")
    argv = [a.format(tmp=tmp_path, bert=TF_BERT) for a in argv]
    code, _, err = cli(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and err.startswith("bertforge convert: error: "), err
    assert message.format(tmp=tmp_path) in err
    assert not (tmp_path / "o").exists()


def test_cli_config_vocab_and_case_flags(tmp_path, capsys):
    """--config and --vocab default to the files beside the checkpoint; the tokenizer's case follows Google's
    folder names (cased_..., uncased_...) unless --cased or --uncased says otherwise."""
    folder = tmp_path / "cased_L-2_H-32_A-4"
    folder.mkdir()
    for path in TF_BERT.glob("bert_model.ckpt.*"):
        shutil.copy(path, folder)
    code, _, err = cli(capsys, "convert", "tf", str(folder / "bert_model.ckpt"), "--out", str(tmp_path / "m"))
    assert code == 2 and "no bert_config.json beside the checkpoint" in err and "pass --config PATH" in err

    def lowercase(*flags: str) -> bool:
        out = tmp_path / "m"
        code, printed, err = cli(capsys, "convert", "tf", str(folder), "--config", str(TF_CONFIG), "--vocab",
                                 str(TF_VOCAB), "--out", str(out), "--task", "encoder", *flags)
        assert code == 0, err
        settings = json.loads((out / "tokenizer_config.json").read_text())
        assert ("uncased tokenizer" in printed) == settings["do_lower_case"]
        assert (out / "vocab.txt").read_text() == TF_VOCAB.read_text()
        return settings["do_lower_case"]

    assert lowercase() is False  # the folder says cased
    assert lowercase("--uncased") is True
    uncased = folder.rename(tmp_path / "uncased_L-2_H-32_A-4")
    folder = uncased
    assert lowercase() is True
    assert lowercase("--cased") is False


def test_cli_never_writes_over_the_checkpoint(tmp_path, capsys):
    prefix = copy_checkpoint(tmp_path)
    before = sorted(p.name for p in prefix.parent.iterdir())
    code, _, err = cli(capsys, "convert", "tf", str(prefix), "--out", str(prefix.parent))
    assert code == 2 and "holds a TensorFlow checkpoint; the model directory would replace it" in err
    assert sorted(p.name for p in prefix.parent.iterdir()) == before
