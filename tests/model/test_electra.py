"""ELECTRA: parity with transformers (encoder, discriminator, generator, every fine-tuning head; outputs and
losses; embedding size equal to and narrower than the hidden size; padded batches; both load directions), the
generator config, and bad configs."""

import json

import pytest
import torch

from bertforge.errors import ConfigError
from bertforge.model import electra
from bertforge.model.electra import ElectraConfig, ElectraForPreTraining, ElectraModel, ElectraPair, generator_config
from parity import perturb

TOL = 1e-5
TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=40)
SIZES = {"narrow-embeddings": dict(embedding_size=16), "equal": dict(embedding_size=32)}
DIRECTIONS = ["hf->ours", "ours->hf"]


def twins(hf, tmp_path, direction, name, fields, **extra):
    """(transformers model, bertforge model) of class ``name`` holding the same weights, loaded ``direction``."""
    ours_cls = getattr(electra, name)  # the same class name as transformers
    if direction == "hf->ours":
        theirs = perturb(getattr(hf, name)(hf.ElectraConfig(**TINY, **fields, **extra)), 0)
        theirs.save_pretrained(tmp_path)
        ours = ours_cls.from_pretrained(tmp_path).eval()
    else:
        ours = perturb(ours_cls(ElectraConfig(**TINY, **fields, extra=dict(extra))), 1)
        ours.save_pretrained(tmp_path)
        theirs = getattr(hf, name).from_pretrained(tmp_path).eval()
    return theirs, ours


def batch(B=3, T=12, seed=0):
    """input_ids, token_type_ids, attention_mask (B, T): two segments; row 1 padded after 7, row 2 after 10."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (B, T), generator=g)
    types = torch.zeros_like(ids)
    types[:, T // 2:] = 1
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 10:] = 0
    ids[mask == 0] = 0
    return dict(input_ids=ids, token_type_ids=types, attention_mask=mask)


def close(a, b, mask=None):
    """Max difference of two tensors (at the real tokens of a (B, T, ...) pair when ``mask`` is given)."""
    if mask is not None:
        a, b = a[mask.bool()], b[mask.bool()]
    assert a.shape == b.shape
    return (a - b).abs().max().item()


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("size", SIZES)
def test_encoder_matches_transformers(hf, tmp_path, direction, size):
    theirs, ours = twins(hf, tmp_path, direction, "ElectraModel", SIZES[size])
    x = batch()
    with torch.no_grad():
        ref = theirs(**x, output_hidden_states=True)
        out = ours(**x)  # the real-token path
        full = ours(**x, output_hidden_states=True)  # the padded path
    assert close(ref.last_hidden_state, out.last_hidden_state, x["attention_mask"]) < TOL
    assert len(full.hidden_states) == len(ref.hidden_states) == 3
    for a, b in zip(ref.hidden_states, full.hidden_states):  # the first is the projected embedding
        assert close(a, b, x["attention_mask"]) < TOL
    assert (ours.embeddings.word_embeddings.weight.shape[1] == SIZES[size]["embedding_size"])
    assert hasattr(ours, "embeddings_project") == (size == "narrow-embeddings")


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("size", SIZES)
def test_discriminator_matches_transformers(hf, tmp_path, direction, size):
    theirs, ours = twins(hf, tmp_path, direction, "ElectraForPreTraining", SIZES[size])
    x = batch()
    labels = (torch.rand(x["input_ids"].shape, generator=torch.Generator().manual_seed(3)) < 0.3).long()
    with torch.no_grad():
        ref, out = theirs(**x, labels=labels), ours(**x, labels=labels)
    assert close(ref.logits, out.logits, x["attention_mask"]) < TOL
    assert abs(ref.loss.item() - out.loss.item()) < TOL
    with torch.no_grad():  # no attention mask: every token counts
        full = {k: v[:1] for k, v in x.items() if k != "attention_mask"}
        assert abs(theirs(**full, labels=labels[:1]).loss.item() - ours(**full, labels=labels[:1]).loss.item()) < TOL


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("size", SIZES)
def test_generator_matches_transformers(hf, tmp_path, direction, size):
    theirs, ours = twins(hf, tmp_path, direction, "ElectraForMaskedLM", SIZES[size])
    assert ours.generator_lm_head.weight is ours.electra.embeddings.word_embeddings.weight  # tied, as theirs
    x = batch()
    labels = torch.full_like(x["input_ids"], -100)
    for r, c in [(0, 2), (0, 5), (1, 3), (2, 9), (2, 1)]:
        labels[r, c] = x["input_ids"][r, c]
        x["input_ids"][r, c] = 4  # [MASK]
    with torch.no_grad():
        ref, out = theirs(**x, labels=labels), ours(**x, labels=labels)
        logits = ours(**x).logits  # (B, T, V) without labels
    assert close(ref.logits, logits, x["attention_mask"]) < TOL
    assert close(ref.logits[labels != -100], out.logits) < TOL  # with labels: (N, V) at the masked positions
    assert abs(ref.loss.item() - out.loss.item()) < TOL


def test_untied_generator_loads_its_own_output_matrix(hf, tmp_path):
    theirs, ours = twins(hf, tmp_path, "hf->ours", "ElectraForMaskedLM", SIZES["narrow-embeddings"],
                         tie_word_embeddings=False)
    assert ours.generator_lm_head.weight is not ours.electra.embeddings.word_embeddings.weight
    assert close(theirs.generator_lm_head.weight, ours.generator_lm_head.weight) == 0


HEADS = {  # class -> (config extra, forward kwargs besides the inputs)
    "ElectraForSequenceClassification": (dict(num_labels=3), dict(labels=torch.tensor([0, 2, 1]))),
    "ElectraForTokenClassification": (dict(num_labels=5),
                                      dict(labels=torch.randint(0, 5, (3, 12), generator=torch.Generator().manual_seed(5)))),
    "ElectraForQuestionAnswering": ({}, dict(start_positions=torch.tensor([1, 3, 20]),
                                             end_positions=torch.tensor([2, 6, 4]))),
}


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("name", HEADS)
def test_heads_match_transformers(hf, tmp_path, direction, name):
    extra, kwargs = HEADS[name]
    theirs, ours = twins(hf, tmp_path, direction, name, SIZES["narrow-embeddings"], **extra)
    x = batch()
    if name == "ElectraForTokenClassification":
        kwargs = {"labels": kwargs["labels"].masked_fill(x["attention_mask"] == 0, -100)}
    if name == "ElectraForQuestionAnswering":
        # The span loss is a softmax over every position, padding included (transformers' rule), so the padding's
        # logits count: take the padded path, which computes them as transformers does.
        ours.electra.unpad_threshold = 2.0
    with torch.no_grad():
        ref, out = theirs(**x, **kwargs), ours(**x, **kwargs)
    assert abs(ref.loss.item() - out.loss.item()) < TOL
    if name == "ElectraForQuestionAnswering":
        assert close(ref.start_logits, out.start_logits, x["attention_mask"]) < TOL
        assert close(ref.end_logits, out.end_logits, x["attention_mask"]) < TOL
    elif name == "ElectraForTokenClassification":
        assert close(ref.logits, out.logits, x["attention_mask"]) < TOL
    else:
        assert close(ref.logits, out.logits) < TOL


def test_sequence_classification_regression_and_multi_label_losses(hf, tmp_path):
    theirs, ours = twins(hf, tmp_path, "ours->hf", "ElectraForSequenceClassification", SIZES["equal"], num_labels=1)
    x = batch()
    labels = torch.tensor([0.5, -1.0, 2.0])
    with torch.no_grad():
        assert abs(theirs(**x, labels=labels).loss.item() - ours(**x, labels=labels).loss.item()) < TOL
    theirs, ours = twins(hf, tmp_path / "multi", "hf->ours", "ElectraForSequenceClassification", SIZES["equal"],
                         num_labels=2)
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    with torch.no_grad():
        assert abs(theirs(**x, labels=labels).loss.item() - ours(**x, labels=labels).loss.item()) < TOL


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_multiple_choice_matches_transformers(hf, tmp_path, direction):
    theirs, ours = twins(hf, tmp_path, direction, "ElectraForMultipleChoice", SIZES["narrow-embeddings"])
    x = {k: v.view(1, 3, 12).expand(2, 3, 12).clone() for k, v in batch().items()}  # (B=2, C=3, T)
    x["input_ids"][1] = x["input_ids"][1].flip(0)
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        ref, out = theirs(**x, labels=labels), ours(**x, labels=labels)
    assert close(ref.logits, out.logits) < TOL
    assert abs(ref.loss.item() - out.loss.item()) < TOL


def test_saved_config_is_transformers_and_round_trips(hf, tmp_path):
    config = ElectraConfig(**TINY, embedding_size=16, extra={"classifier_dropout": 0.2})
    ElectraForPreTraining(config).save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["model_type"] == "electra" and data["architectures"] == ["ElectraForPreTraining"]
    theirs = hf.ElectraConfig.from_pretrained(tmp_path)
    assert (theirs.embedding_size, theirs.hidden_size, theirs.classifier_dropout) == (16, 32, 0.2)
    again = ElectraConfig.from_json_file(tmp_path / "config.json")
    assert again == config and again.extra["classifier_dropout"] == 0.2


def test_generator_config_follows_the_paper():
    config = ElectraConfig(**{**TINY, "hidden_size": 256, "num_attention_heads": 4}, embedding_size=128)
    gen = generator_config(config, 0.25)
    assert (gen.hidden_size, gen.intermediate_size, gen.num_attention_heads) == (64, 256, 1)
    assert (gen.embedding_size, gen.num_hidden_layers, gen.vocab_size) == (128, 2, 100)
    assert generator_config(config, 1 / 3).hidden_size == 85
    assert generator_config(config, 1.0).hidden_size == 256


@pytest.mark.parametrize("size", [1.5, 0, -0.25, 0.001])
def test_a_generator_wider_than_the_discriminator_or_empty_is_refused(size):
    with pytest.raises(ConfigError, match="generator_size"):
        ElectraPair(ElectraConfig(**TINY, embedding_size=16), generator_size=size)


@pytest.mark.parametrize("field, value, words", [
    ("embedding_size", 0, "embedding_size"), ("hidden_size", 30, "divisible"), ("summary_type", "attn", "summary_type"),
    ("hidden_act", "swish2", "hidden_act"), ("hidden_dropout_prob", 1.0, "hidden_dropout_prob")])
def test_bad_configs_name_the_field(field, value, words):
    with pytest.raises(ConfigError, match=words):
        ElectraConfig(**{**TINY, field: value})


def test_bad_config_file_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**TINY, "model_type": "electra", "embedding_size": -1}))
    with pytest.raises(ConfigError, match="config.json.*embedding_size"):
        ElectraModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**TINY, "model_type": "bert"}))
    with pytest.raises(ConfigError, match="expected 'electra'"):
        ElectraModel.from_pretrained(tmp_path)


def test_pair_saves_both_models_that_transformers_loads(hf, tmp_path):
    torch.manual_seed(0)
    pair = ElectraPair(ElectraConfig(**TINY, embedding_size=16), generator_size=0.5).eval()
    pair.save_pretrained(tmp_path)
    disc = hf.ElectraForPreTraining.from_pretrained(tmp_path).eval()
    gen = hf.ElectraForMaskedLM.from_pretrained(tmp_path / "generator").eval()
    assert gen.config.hidden_size == 16 and gen.config.embedding_size == 16
    assert torch.equal(gen.electra.embeddings.word_embeddings.weight, disc.electra.embeddings.word_embeddings.weight)
    x = batch()
    with torch.no_grad():
        assert close(disc(**x).logits, pair.discriminator(**x).logits, x["attention_mask"]) < TOL
        assert close(gen(**x).logits, pair.generator(**x).logits, x["attention_mask"]) < TOL
    again = ElectraPair.from_pretrained(tmp_path)
    assert again.generator.electra.embeddings.word_embeddings is again.discriminator.electra.embeddings.word_embeddings
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), pair.state_dict().values()))


def test_pair_refuses_a_generator_of_another_width_and_grows_a_missing_one(tmp_path):
    pair = ElectraPair(ElectraConfig(**TINY, embedding_size=16), generator_size=0.5)
    pair.save_pretrained(tmp_path)
    assert ElectraPair.from_pretrained(tmp_path, 0.5).generator.config.hidden_size == 16
    with pytest.raises(ConfigError, match="generator_size.*hidden size 8.*16"):
        ElectraPair.from_pretrained(tmp_path, 0.25)
    pair.discriminator.save_pretrained(tmp_path / "alone")  # a transformers discriminator directory
    with pytest.warns(UserWarning, match="no generator/ directory"):
        grown = ElectraPair.from_pretrained(tmp_path / "alone", 0.25)
    assert grown.generator.config.hidden_size == 8
    assert grown.generator.electra.embeddings.word_embeddings is grown.discriminator.electra.embeddings.word_embeddings
    assert torch.equal(grown.discriminator.electra.embeddings.word_embeddings.weight,
                       pair.discriminator.electra.embeddings.word_embeddings.weight)
