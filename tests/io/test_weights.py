"""Checkpoints travel both ways between bertforge and transformers, and bad ones fail clearly."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from bertforge.config import BertConfig
from bertforge.errors import CheckpointError
from bertforge.model import BertForPreTraining, BertModel


def tiny_hf(hf):
    return hf.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=128, max_position_embeddings=40)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (3, 12), generator=g)
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    mask = torch.ones_like(ids)
    mask[2, 8:] = 0
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]
    labels[1, 7] = ids[1, 7]
    return ids, types, mask, labels, torch.tensor([0, 1, 0])


def compare_pretraining(ours, theirs):
    ids, types, mask, labels, nsp = batch()
    ours.eval(), theirs.eval()
    with torch.no_grad():
        a = ours(ids, types, mask)
        b = theirs(input_ids=ids, token_type_ids=types, attention_mask=mask)
        real = mask.bool()
        assert (a.prediction_logits - b.prediction_logits)[real].abs().max() < 1e-5
        assert (a.seq_relationship_logits - b.seq_relationship_logits).abs().max() < 1e-5
        la = ours(ids, types, mask, labels=labels, next_sentence_label=nsp)
        lb = theirs(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels,
                    next_sentence_label=nsp)
    assert abs(la.loss.item() - lb.loss.item()) < 1e-5
    assert (la.prediction_logits - b.prediction_logits[labels != -100]).abs().max() < 1e-5
    mlm_ref = torch.nn.functional.cross_entropy(b.prediction_logits[labels != -100], labels[labels != -100])
    assert abs(la.mlm_loss.item() - mlm_ref.item()) < 1e-5


def test_random_transformers_pretraining_model_loads_with_same_logits_and_losses(tmp_path, hf):
    torch.manual_seed(0)
    theirs = hf.BertForPreTraining(tiny_hf(hf))
    with torch.no_grad():  # non-trivial biases and LayerNorms, so a mis-mapped tensor shows
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    theirs.save_pretrained(tmp_path)
    ours = BertForPreTraining.from_pretrained(tmp_path)
    compare_pretraining(ours, theirs)


def test_bertforge_checkpoint_loads_in_transformers(tmp_path, hf):
    torch.manual_seed(1)
    ours = BertForPreTraining(BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, intermediate_size=128,
                                         max_position_embeddings=40))
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ours.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["BertForPreTraining"]
    theirs = hf.BertForPreTraining.from_pretrained(tmp_path)
    compare_pretraining(ours, theirs)
    again = BertForPreTraining.from_pretrained(tmp_path)  # and back: bit-identical
    for (n, p), (_, q) in zip(ours.state_dict().items(), again.state_dict().items()):
        assert torch.equal(p, q), n


def test_encoder_only_checkpoint_into_pretraining_model_warns_once_listing_heads(minilm_dir):
    with pytest.warns(UserWarning) as record:
        m = BertForPreTraining.from_pretrained(minilm_dir)
    messages = [str(w.message) for w in record if "newly initialised" in str(w.message)]
    assert len(messages) == 1
    assert "cls.predictions.transform.dense.weight" in messages[0] and "cls.seq_relationship.weight" in messages[0]
    enc = BertModel.from_pretrained(minilm_dir)
    assert torch.equal(m.bert.encoder.layer[5].output.dense.weight, enc.encoder.layer[5].output.dense.weight)


def test_prefixed_and_unprefixed_names_and_pytorch_bin(tmp_path, minilm_dir):
    ref = BertModel.from_pretrained(minilm_dir)
    state = {("bert." + k): v for k, v in load_file(minilm_dir / "model.safetensors").items()}
    (tmp_path / "config.json").write_text((minilm_dir / "config.json").read_text())
    torch.save(state, tmp_path / "pytorch_model.bin")
    m = BertModel.from_pretrained(tmp_path)
    for (n, p), (_, q) in zip(ref.state_dict().items(), m.state_dict().items()):
        assert torch.equal(p, q), n


def test_shape_mismatch_names_tensor_and_both_shapes(tmp_path, minilm_dir):
    state = load_file(minilm_dir / "model.safetensors")
    state["encoder.layer.3.intermediate.dense.weight"] = torch.zeros(10, 384)
    save_file(state, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((minilm_dir / "config.json").read_text())
    with pytest.raises(CheckpointError, match=r"'encoder.layer.3.intermediate.dense.weight' has shape "
                                              r"\(10, 384\) in the checkpoint but \(1536, 384\) in the model"):
        BertModel.from_pretrained(tmp_path)


def test_unexpected_and_missing_encoder_tensors(tmp_path, minilm_dir):
    state = load_file(minilm_dir / "model.safetensors")
    state["encoder.layer.9.extra.weight"] = torch.zeros(2)
    (tmp_path / "config.json").write_text((minilm_dir / "config.json").read_text())
    save_file(state, tmp_path / "model.safetensors")
    with pytest.warns(UserWarning, match=r"ignored 1 checkpoint tensors.*encoder.layer.9.extra.weight"):
        BertModel.from_pretrained(tmp_path)
    del state["encoder.layer.2.attention.self.key.bias"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="lacks encoder weights: encoder.layer.2.attention.self.key.bias"):
        BertModel.from_pretrained(tmp_path)


def test_missing_paths_and_damaged_files(tmp_path, minilm_dir):
    with pytest.raises(FileNotFoundError, match="nope: no such model directory"):
        BertModel.from_pretrained(tmp_path / "nope")
    (tmp_path / "config.json").write_text((minilm_dir / "config.json").read_text())
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin"):
        BertModel.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="model.safetensors: cannot read"):
        BertModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"vocab_size": 5}')
    with pytest.raises(ValueError, match="missing required field"):
        BertModel.from_pretrained(tmp_path)


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    m = BertModel(BertConfig.preset("tiny", vocab_size=50))
    m.save_pretrained(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("bertforge.io.weights.save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        BertModel(BertConfig.preset("tiny", vocab_size=50)).save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors", "weights.sha256"]
    BertModel.from_pretrained(tmp_path)  # the old file and its record still agree
