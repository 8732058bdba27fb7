"""Integrity on load: weight files whose bytes changed after saving are one error naming the file (model
directories through ``weights.sha256``, checkpoints through their manifest); files saved without a record
still load; ``BERTFORGE_SKIP_CHECKSUM=1`` loads an edited file; a ``tokenizer.json`` that is not JSON or
disagrees with ``vocab.txt`` is an error naming it."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from bertforge.config import BertConfig
from bertforge.errors import CheckpointError, ConfigError
from bertforge.io.checksums import RECORD_FILE, SKIP_ENV
from bertforge.model import BertModel
from bertforge.tokenization import BertTokenizer
from bertforge.train.checkpoint import load_checkpoint, save_checkpoint

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "##s"]


def _zero_middle(path, n=4000) -> None:
    """Zero ``n`` bytes in the middle of the tensor data (the safetensors header stays valid)."""
    data = bytearray(path.read_bytes())
    start = len(data) // 2
    data[start:start + n] = bytes(n)
    path.write_bytes(bytes(data))


@pytest.fixture
def model_dir(tmp_path):
    torch.manual_seed(0)
    model = BertModel(BertConfig.preset("tiny", vocab_size=len(VOCAB)))
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_the_record_is_sha256sum_format_of_the_saved_file(model_dir):
    weights = model_dir / "model.safetensors"
    expected = hashlib.sha256(weights.read_bytes()).hexdigest()  # an independent computation
    assert (model_dir / RECORD_FILE).read_text() == f"{expected}  model.safetensors\n"


def test_zeroed_bytes_are_one_error_naming_the_file(model_dir, monkeypatch):
    monkeypatch.delenv(SKIP_ENV, raising=False)
    reference = BertModel.from_pretrained(model_dir).state_dict()
    _zero_middle(model_dir / "model.safetensors")
    with pytest.raises(CheckpointError, match=rf"{model_dir / 'model.safetensors'}: contents changed") as e:
        BertModel.from_pretrained(model_dir)
    assert "\n" not in str(e.value) and SKIP_ENV in str(e.value)
    monkeypatch.setenv(SKIP_ENV, "1")  # edited on purpose: loads, and the zeroed bytes are really in it
    edited = BertModel.from_pretrained(model_dir).state_dict()
    assert any(not torch.equal(edited[k], reference[k]) for k in reference)


def test_a_model_saved_without_a_record_still_loads(model_dir):
    (model_dir / RECORD_FILE).unlink()
    _zero_middle(model_dir / "model.safetensors")  # unchecked: nothing records what it was
    assert isinstance(BertModel.from_pretrained(model_dir), BertModel)


def test_saving_again_replaces_the_record(model_dir):
    torch.manual_seed(1)
    BertModel(BertConfig.preset("tiny", vocab_size=len(VOCAB))).save_pretrained(model_dir)
    digest = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    assert (model_dir / RECORD_FILE).read_text().split() == [digest, "model.safetensors"]
    BertModel.from_pretrained(model_dir)


def test_a_damaged_checkpoint_names_its_file(tmp_path, monkeypatch):
    monkeypatch.delenv(SKIP_ENV, raising=False)
    model = BertModel(BertConfig.preset("tiny", vocab_size=len(VOCAB)))
    path = save_checkpoint(tmp_path / "ckpt", 3, {"model": model, "note": "x"})
    manifest = json.loads((path / "checkpoint.json").read_text())
    digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    assert manifest["sha256"]["model.safetensors"] == digest
    assert load_checkpoint(path)["note"] == "x"
    _zero_middle(path / "model.safetensors", 2000)
    with pytest.raises(CheckpointError, match=r"step-00000003/model\.safetensors: contents changed"):
        load_checkpoint(path)
    monkeypatch.setenv(SKIP_ENV, "1")
    assert load_checkpoint(path)["step"] == 3


def test_a_checkpoint_without_digests_still_loads(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt", 1, {"model": {"w": torch.ones(3)}, "note": "old"})
    manifest = json.loads((path / "checkpoint.json").read_text())
    del manifest["sha256"]  # what bertforge wrote before digests were recorded
    (path / "checkpoint.json").write_text(json.dumps(manifest))
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))


def test_tokenizer_json_is_parsed_and_checked_against_vocab_txt(tmp_path):
    directory = BertTokenizer({t: i for i, t in enumerate(VOCAB)}).save_pretrained(tmp_path / "tok")
    assert BertTokenizer.from_pretrained(directory).vocab_size == len(VOCAB)
    original = (directory / "tokenizer.json").read_text()
    (directory / "tokenizer.json").write_text(original[: len(original) // 2])
    with pytest.raises(ConfigError, match=r"tokenizer\.json: malformed JSON"):
        BertTokenizer.from_pretrained(directory)
    data = json.loads(original)
    data["model"]["vocab"]["cat"], data["model"]["vocab"]["sat"] = 7, 6  # two ids swapped
    (directory / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"tokenizer\.json: its vocabulary differs from vocab\.txt \('cat' is id 6"):
        BertTokenizer.from_pretrained(directory)
    (directory / "tokenizer.json").unlink()  # vocab.txt alone is enough
    assert BertTokenizer.from_pretrained(directory).vocab_size == len(VOCAB)
