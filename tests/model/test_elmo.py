"""ElmoBiLM vs bilm-tf on bilm-tf's own test model: same character ids, same activations; and its invariants."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.errors import ConfigError, DataFormatError, UsageError
from bertforge.model.elmo import (ElmoBiLM, ElmoConfig, add_sentence_boundaries, batch_to_char_ids,
                                  remove_sentence_boundaries, word_to_char_ids)

TOL = 1e-5
TINY = dict(char_embedding_dim=4, filters=[[1, 8], [2, 8], [3, 16]], max_characters_per_token=12, n_highway=1,
            lstm_dim=24, n_layers=2, projection_dim=8, dropout=0.0)


@pytest.fixture(scope="session")
def elmo_dir(fetched) -> Path:
    """bilm-tf's test biLM and the activations bilm-tf computed with it (from the allennlp 0.9.0 wheel)."""
    return fetched("allennlp-fixtures") / "elmo"


@pytest.fixture
def bilm(elmo_dir) -> ElmoBiLM:
    return ElmoBiLM.from_bilm_tf(elmo_dir / "options.json", elmo_dir / "lm_weights.hdf5")


def load_expected(elmo_dir: Path) -> tuple[list[list[str]], list[list[np.ndarray]]]:
    """sentences[k][i] and its top layer, [forward; backward] (T, 32), from lm_embeddings_k.hdf5 dataset i."""
    import h5py

    sentences = json.loads((elmo_dir / "sentences.json").read_text())
    expected = []
    for k in range(len(sentences)):
        with h5py.File(elmo_dir / f"lm_embeddings_{k}.hdf5", "r") as f:
            expected.append([np.concatenate([f[str(i)][0], f[str(i)][1]], axis=-1) for i in range(len(sentences[k]))])
    return sentences, expected


def run_batches(bilm: ElmoBiLM, sentences, expected, reset_each_batch: bool = False) -> list[float]:
    """bilm-tf's test_bilm: batch i holds sentences[k][i] in row k (k = 0, 1, 2), states carried across batches."""
    worst = [0.0] * len(sentences)
    for i in range(len(sentences[0])):
        if reset_each_batch:
            bilm.reset_states()
        batch = [sentences[k][i].split() for k in range(len(sentences))]
        top = bilm.embed(batch)[:, 2]  # (3, T, 32)
        for k, words in enumerate(batch):
            assert expected[k][i].shape == (len(words), 32)
            assert not top[k, len(words):].any()  # zero past the sentence
            worst[k] = max(worst[k], float(np.abs(top[k, : len(words)].numpy() - expected[k][i]).max()))
    return worst


def test_activations_match_bilm_tf(bilm, elmo_dir):
    sentences, expected = load_expected(elmo_dir)
    assert [len(s) for s in sentences] == [10, 10, 10]
    worst = run_batches(bilm, sentences, expected)
    print("max abs diff per file:", {f"lm_embeddings_{k}.hdf5": f"{d:.2e}" for k, d in enumerate(worst)})
    assert max(worst) < TOL
    # The check is sensitive to the carried state: starting each batch from zeros is far off.
    bilm.reset_states()
    assert max(run_batches(bilm, sentences, expected, reset_each_batch=True)) > 100 * TOL


def test_smaller_batch_keeps_the_other_rows_state(bilm):
    bilm.embed([["a", "b"], ["c"], ["d", "e", "f"]])
    h, c = (s.clone() for s in bilm._states)
    bilm.embed([["x", "y"], ["z"]])  # as bilm-tf's test: row 2 is not touched
    assert torch.equal(bilm._states[0][:, :, 2], h[:, :, 2]) and torch.equal(bilm._states[1][:, :, 2], c[:, :, 2])
    assert not torch.equal(bilm._states[0][:, :, :2], h[:, :, :2])
    bilm.reset_states()
    assert bilm._states is None


def test_token_embeddings_match_bilm_tf(bilm, elmo_dir):
    import h5py

    words = (elmo_dir / "vocab_test.txt").read_text().strip().split("\n")  # includes <S>, </S>, <UNK>
    with torch.no_grad():
        ours = bilm.char_cnn(batch_to_char_ids([words]))[0].numpy()
    with h5py.File(elmo_dir / "elmo_token_embeddings.hdf5", "r") as f:
        theirs = f["embedding"][...]
    assert ours.shape == theirs.shape == (458, 16)
    assert np.abs(ours - theirs).max() < TOL


# --- character ids -----------------------------------------------------------------------------------


def test_char_ids_follow_bilm_tf():
    pad, bow, eow = 261, 259, 260  # bilm-tf's 260, 258, 259 shifted by +1
    assert word_to_char_ids("<S>", 6) == (bow, 257, eow, pad, pad, pad)
    assert word_to_char_ids("</S>", 6) == (bow, 258, eow, pad, pad, pad)
    assert word_to_char_ids("é", 6) == (bow, 0xC3 + 1, 0xA9 + 1, eow, pad, pad)  # UTF-8 bytes
    long = word_to_char_ids("x" * 60, 50)
    assert long[0] == bow and long[1:49] == (ord("x") + 1,) * 48 and long[49] == eow  # cut to 48 bytes
    ids = batch_to_char_ids([["a", "bc"], ["d"], []], max_chars=5)
    assert ids.shape == (3, 2, 5) and ids.dtype == torch.long
    assert ids[0, 1].tolist() == [bow, ord("b") + 1, ord("c") + 1, eow, pad]
    assert not ids[1, 1].any() and not ids[2].any()  # 0 = no token
    with pytest.raises(UsageError, match="sentence 0"):
        batch_to_char_ids(["not a token list"])


def test_sentence_boundaries_round_trip():
    ids = batch_to_char_ids([["a", "b", "c"], ["d"]], max_chars=6)
    mask = (ids > 0).any(-1)
    wrapped, wrapped_mask = add_sentence_boundaries(ids, mask)
    assert torch.equal(wrapped, batch_to_char_ids([["<S>", "a", "b", "c", "</S>"], ["<S>", "d", "</S>"]], 6))
    assert wrapped_mask.sum(1).tolist() == [5, 3]
    x = wrapped.float()[:, None]  # (B, 1, T + 2, C): a layer axis, as the biLM's output has
    stripped, stripped_mask = remove_sentence_boundaries(x, wrapped_mask)
    assert torch.equal(stripped[:, 0], ids.float()) and torch.equal(stripped_mask, mask)


# --- config --------------------------------------------------------------------------------------------


def test_config_from_options_json(elmo_dir, tmp_path):
    config = ElmoConfig.from_options_json(elmo_dir / "options.json")
    assert (config.filters, config.n_highway, config.lstm_dim, config.projection_dim, config.n_layers) == (
        [[1, 4], [2, 8], [3, 16], [4, 32], [5, 64]], 2, 64, 16, 2)
    assert (config.cell_clip, config.proj_clip, config.use_skip_connections) == (3, 3, True)
    assert ElmoConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.to_dict()["model_type"] == "elmo"

    options = json.loads((elmo_dir / "options.json").read_text())
    del options["lstm"]["projection_dim"]
    bad = tmp_path / "options.json"
    bad.write_text(json.dumps(options))
    with pytest.raises(ConfigError, match=r"options\.json: missing key 'lstm\.projection_dim'"):
        ElmoConfig.from_options_json(bad)
    with pytest.raises(ConfigError, match="model_type"):
        ElmoConfig.from_dict({"model_type": "bert"})
    with pytest.raises(ConfigError, match="activation"):
        ElmoConfig(**{**TINY, "activation": "gelu"})


def test_loader_names_missing_and_misshapen_datasets(elmo_dir, tmp_path):
    import h5py

    options = elmo_dir / "options.json"
    missing = tmp_path / "missing.hdf5"
    shutil.copy(elmo_dir / "lm_weights.hdf5", missing)
    with h5py.File(missing, "a") as f:
        del f["CNN_high_1/W_carry"]
    with pytest.raises(DataFormatError, match=r"missing\.hdf5: no dataset 'CNN_high_1/W_carry'"):
        ElmoBiLM.from_bilm_tf(options, missing)

    misshapen = tmp_path / "misshapen.hdf5"
    shutil.copy(elmo_dir / "lm_weights.hdf5", misshapen)
    with h5py.File(misshapen, "a") as f:
        del f["CNN_proj/b_proj"]
        f["CNN_proj/b_proj"] = np.zeros(17, dtype=np.float32)
    with pytest.raises(DataFormatError, match=r"misshapen\.hdf5: dataset 'CNN_proj/b_proj' has shape \(17,\), "
                                              r"the options need \(16,\)"):
        ElmoBiLM.from_bilm_tf(options, misshapen)


def test_import_does_not_need_h5py():
    code = "import sys, bertforge.model.elmo; assert 'h5py' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


# --- stateless forward -----------------------------------------------------------------------------------


def wrapped_ids(sentences, max_chars=50):
    return batch_to_char_ids([["<S>", *s, "</S>"] for s in sentences], max_chars)


def test_each_direction_reads_only_its_side(bilm):
    words = "the cat sat on the mat today".split()
    t = 4  # position in the wrapped sentence ("the")
    base = bilm(wrapped_ids([words]))  # (1, 3, T, 32)
    later = bilm(wrapped_ids([words[:t] + ["a", "dog", "ran"]]))  # tokens after t differ
    earlier = bilm(wrapped_ids([["one", "big", "dog"] + words[3:]]))  # tokens before t differ
    P = 16
    assert torch.equal(base[:, 0, t], later[:, 0, t]) and torch.equal(base[:, 0, t], earlier[:, 0, t])
    torch.testing.assert_close(base[:, 1:, : t + 1, :P], later[:, 1:, : t + 1, :P], atol=1e-6, rtol=0)
    torch.testing.assert_close(base[:, 1:, t:, P:], earlier[:, 1:, t:, P:], atol=1e-6, rtol=0)
    assert (base[:, 1:, : t + 1, P:] - later[:, 1:, : t + 1, P:]).abs().max() > 1e-3  # the other side did change
    assert (base[:, 1:, t:, :P] - earlier[:, 1:, t:, :P]).abs().max() > 1e-3


def test_padding_does_not_change_real_positions(bilm):
    short, long = "a short one".split(), "a much longer sentence with many more words in it".split()
    alone = bilm(wrapped_ids([short]))
    batched = bilm(wrapped_ids([long, short, []]))
    n = len(short) + 2
    torch.testing.assert_close(batched[1, :, :n], alone[0], atol=1e-6, rtol=0)
    assert not batched[1, :, n:].any() and not batched[2, :, 2:].any()


def test_first_embed_is_forward_without_the_markers(bilm):
    sentences = [["Hello", "world", "!"], ["Hi"]]
    layers = bilm(wrapped_ids(sentences))
    mask = (wrapped_ids(sentences) > 0).any(-1)
    expected, _ = remove_sentence_boundaries(layers, mask)
    torch.testing.assert_close(bilm.embed(sentences), expected, atol=1e-6, rtol=0)


def test_save_load_round_trip(bilm, tmp_path):
    bilm.save_pretrained(tmp_path / "elmo")
    assert json.loads((tmp_path / "elmo" / "config.json").read_text())["model_type"] == "elmo"
    loaded = ElmoBiLM.from_pretrained(tmp_path / "elmo")
    ids = wrapped_ids([["Round", "trip", "."], ["ok"]])
    assert torch.equal(loaded(ids), bilm(ids))
    assert not loaded.training


def test_tiny_model_trains_end_to_end_through_every_parameter():
    torch.manual_seed(0)
    model = ElmoBiLM(ElmoConfig(**TINY)).train()
    out = model(wrapped_ids([["some", "words"], ["more"]], 12))
    assert out.shape == (2, 3, 4, 16)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(UsageError, match=r"char_ids must be \(batch, tokens, 12\), got \(2, 3, 50\)"):
        model(torch.zeros(2, 3, 50, dtype=torch.long))


def test_each_distinct_token_is_embedded_once_with_the_same_values_and_gradients(monkeypatch):
    """CharCNN embeds the distinct tokens of a batch once; outputs and gradients equal embedding every position."""
    from bertforge.model.elmo.char_cnn import CharCNN

    torch.manual_seed(0)
    cnn = CharCNN(ElmoConfig(**TINY))
    cnn.reset_parameters()
    char_ids = wrapped_ids([["the", "cat", "the", "mat"], ["the", "cat"], ["a", "mat", "mat"]], 12)  # repeats, padding
    B, T, C = char_ids.shape

    def every_position():
        return cnn.embed_tokens(char_ids.reshape(B * T, C)).view(B, T, -1)

    expected = every_position()
    embedded, embed_tokens = [], CharCNN.embed_tokens
    monkeypatch.setattr(CharCNN, "embed_tokens", lambda self, ids: embedded.append(len(ids)) or embed_tokens(self, ids))
    out = cnn(char_ids)
    assert embedded == [len({tuple(row) for row in char_ids.reshape(B * T, C).tolist()})] and embedded[0] < B * T
    assert (out - expected).abs().max() <= 1e-6
    weights = torch.randn(B, T, out.shape[-1])
    grads = [torch.autograd.grad((x * weights).sum(), list(cnn.parameters()))
             for x in (cnn(char_ids), every_position())]
    for a, b in zip(*grads):
        assert (a - b).abs().max() <= 1e-5 * max(1.0, b.abs().max().item())
