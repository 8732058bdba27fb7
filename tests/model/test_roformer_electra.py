"""ELECTRA's objective on RoFormer (`--objective electra --arch roformer`): the pair saves a discriminator whose
encoder transformers' RoFormerModel loads and a generator that is transformers' RoFormerForMaskedLM, equal to
them; the two share the word and segment embeddings; a RoFormer without a generator grows one; a width the family
cannot build names generator_size; the command line trains it and the result fine-tunes as RoFormer."""

import json
import random
import warnings

import pytest
import torch

from bertforge.cli import main as cli
from bertforge.errors import ConfigError
from bertforge.model.registry import REPLACED_TOKEN, SEQUENCE, get_family
from bertforge.model.roformer import RoFormerConfig, RoFormerElectraPair, RoFormerForReplacedTokenDetection
from parity import perturb

TOL = 1e-5
TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=24)
SIZES = {"narrow-embeddings": dict(embedding_size=16), "equal": {}}


def batch(B=3, T=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 8:] = 0
    mask[2, 5:] = 0
    return {"input_ids": torch.randint(5, 100, (B, T), generator=g) * mask,
            "token_type_ids": torch.zeros(B, T, dtype=torch.long), "attention_mask": mask}


def close(a, b, mask):
    m = mask.bool()
    return (a[m] - b[m]).abs().max().item()


@pytest.mark.parametrize("size", SIZES)
def test_the_pair_saves_models_transformers_roformer_loads(hf, tmp_path, size):
    pair = perturb(RoFormerElectraPair(RoFormerConfig(**TINY, **SIZES[size]), generator_size=0.5), 0)
    pair.save_pretrained(tmp_path)
    encoder, info = hf.RoFormerModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"], info
    assert sorted(info["unexpected_keys"]) == [f"discriminator_predictions.{n}" for n in
                                               ("dense.bias", "dense.weight", "dense_prediction.bias",
                                                "dense_prediction.weight")]
    gen, info = hf.RoFormerForMaskedLM.from_pretrained(tmp_path / "generator", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert gen.config.hidden_size == 16 and gen.config.embedding_size == pair.config.embedding_size
    assert torch.equal(gen.roformer.embeddings.word_embeddings.weight, encoder.embeddings.word_embeddings.weight)
    x = batch()
    with torch.no_grad():
        ours = pair.discriminator(**x, output_hidden_states=True)
        assert close(encoder.eval()(**x).last_hidden_state, ours.hidden_states[-1], x["attention_mask"]) < TOL
        assert close(gen.eval()(**x).logits, pair.generator(**x).logits, x["attention_mask"]) < TOL
    again = RoFormerElectraPair.from_pretrained(tmp_path)
    for name in ("word_embeddings", "token_type_embeddings", "LayerNorm"):
        assert getattr(again.generator.roformer.embeddings, name) is getattr(again.discriminator.roformer.embeddings,
                                                                             name)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), pair.state_dict().values()))


def test_the_discriminator_is_electras_head_on_roformer_and_its_loss_electras():
    torch.manual_seed(0)
    disc = RoFormerForReplacedTokenDetection(RoFormerConfig(**TINY)).eval()
    x = batch()
    labels = torch.randint(0, 2, x["input_ids"].shape)
    with torch.no_grad():
        out = disc(**x, labels=labels)
        hidden = disc.roformer(**x).last_hidden_state
        p = disc.discriminator_predictions
        logits = p.dense_prediction(torch.nn.functional.gelu(p.dense(hidden))).squeeze(-1)
    m = x["attention_mask"].bool()
    assert torch.allclose(out.logits, logits, atol=1e-6)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[m], labels[m].float())
    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-6)  # over the real tokens only


def test_a_roformer_without_a_generator_grows_one_and_a_bad_width_names_generator_size(hf, tmp_path):
    torch.manual_seed(0)
    theirs = perturb(hf.RoFormerModel(hf.RoFormerConfig(**TINY)), 0)
    theirs.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="no generator/ directory"):
        pair = RoFormerElectraPair.from_pretrained(tmp_path, 0.25).eval()
    assert pair.generator.config.hidden_size == 8
    assert pair.discriminator.newly_initialized == ["discriminator_predictions.dense.bias",
                                                    "discriminator_predictions.dense.weight",
                                                    "discriminator_predictions.dense_prediction.bias",
                                                    "discriminator_predictions.dense_prediction.weight"]
    x = batch()
    with torch.no_grad():
        assert close(theirs(**x).last_hidden_state, pair.discriminator.roformer(**x).last_hidden_state,
                     x["attention_mask"]) < TOL
    with pytest.raises(ConfigError, match=r"generator_size.*0\.375.*must be even"):  # 15 dims, one head: odd
        RoFormerElectraPair(RoFormerConfig(**{**TINY, "hidden_size": 40, "num_attention_heads": 4}), 0.375)
    with pytest.raises(ConfigError, match="generator_size"):
        RoFormerElectraPair(RoFormerConfig(**TINY), 1.5)


def test_the_registry_trains_electra_on_roformer():
    from bertforge.train.settings import OBJECTIVE_FAMILIES

    assert get_family("roformer").heads[REPLACED_TOKEN] is RoFormerElectraPair
    assert OBJECTIVE_FAMILIES["electra"] == ("electra", "roformer")  # ELECTRA's own model unless --arch says


@pytest.mark.slow
def test_the_command_line_trains_it_and_the_discriminator_fine_tunes_as_roformer(tmp_path, hf):
    rng = random.Random(0)
    words = "the a cat dog runs sees big small red house tree river bird sings".split()
    docs = ["\n".join(" ".join(rng.choice(words) for _ in range(8)).capitalize() + "." for _ in range(5))
            for _ in range(60)]
    (tmp_path / "corpus.txt").write_text("\n\n".join(docs) + "\n")
    out = tmp_path / "run"
    cli(["pretrain", "--objective", "electra", "--arch", "roformer", "--corpus", str(tmp_path / "corpus.txt"),
         "--vocab-size", "80", "--preset", "tiny", "--seq-len", "32", "--batch-size", "4", "--max-steps", "3",
         "--no-progress", "--workers", "1", "--eval-fraction", "0.2", "--eval-every", "3", "--out", str(out)])
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["model_type"] == "roformer" and config["architectures"] == ["RoFormerForReplacedTokenDetection"]
    assert json.loads((out / "model" / "generator" / "config.json").read_text())["architectures"] == [
        "RoFormerForMaskedLM"]
    last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert {"eval_rtd_loss", "eval_rtd_accuracy", "eval_perplexity_vs_unigram"} <= last.keys()
    run_config = json.loads((out / "run_config.json").read_text())
    assert (run_config["arch"], run_config["masked_lm_prob"]) == ("roformer", 0.4)  # the small-budget recipe's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = get_family("roformer").heads[SEQUENCE].from_pretrained(out / "model", num_labels=2)
    assert clf.newly_initialized == ["classifier.dense.bias", "classifier.dense.weight", "classifier.out_proj.bias",
                                     "classifier.out_proj.weight"], [str(w.message) for w in caught]
    hf.RoFormerForSequenceClassification.from_pretrained(out / "model", num_labels=2)  # transformers too
