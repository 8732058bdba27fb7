"""RoFormer (BERT with rotary positions): parity with transformers (encoder and every head, narrow embeddings, rotary
values, the left-to-right LM), both load directions without missing or unexpected weights, the sinusoid table,
padding invariance, the unpadded path equal to the padded one, output_positions, configs; then pre-training with
each objective through the command line, fine-tuning the result, and the commands the family is registered for."""

import json
import random
import warnings

import pytest
import torch

from bertforge.cli import main as cli
from bertforge.errors import ConfigError
from bertforge.model.registry import (ATTENTION, CAUSAL_LM, ENCODE, EXPORT, FILL_MASK, GENERATE, MASKED_LM,
                                      PRETRAINING, SERVE, get_family)
from bertforge.model.roformer import (RoFormerConfig, RoFormerForCausalLM, RoFormerForMaskedLM,
                                      RoFormerForMultipleChoice, RoFormerForPreTraining, RoFormerForQuestionAnswering,
                                      RoFormerForSequenceClassification, RoFormerForTokenClassification,
                                      RoFormerModel, sinusoid_table)
from parity import perturb

TOL = 1e-5
# head size 8 (4 rotated pairs), 24 positions for 16-token batches; the two dropouts off only where a test says so
TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=24)
VARIANTS = {  # config fields on top of TINY, each a code path of its own
    "plain": {},
    "narrow-embeddings": dict(embedding_size=16),  # embeddings_project, and an LM head ending at 16
    "rotary-value": dict(rotary_value=True, hidden_act="relu"),
}
DIRECTIONS = ["hf->ours", "ours->hf"]


def our_config(**fields):
    """TINY with ``fields``; num_labels goes where transformers' config.json has it, outside the fields."""
    labels = {"num_labels": fields.pop("num_labels")} if "num_labels" in fields else {}
    return RoFormerConfig(**{**TINY, **fields}, extra=labels)


def twins(hf, tmp_path, direction, name, ours_cls, **fields):
    """(transformers model, bertforge model) holding the same weights, saved by one and loaded by the other, which
    reports no missing, unexpected or mismatched weights."""
    if direction == "hf->ours":
        torch.manual_seed(0)
        theirs = perturb(getattr(hf, name)(hf.RoFormerConfig(**{**TINY, **fields})), 0)
        theirs.save_pretrained(tmp_path)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a missing or ignored tensor is a warning
            ours = ours_cls.from_pretrained(tmp_path).eval()
        assert ours.newly_initialized == []
    else:
        torch.manual_seed(1)
        ours = perturb(ours_cls(our_config(**fields)), 1)
        ours.save_pretrained(tmp_path)
        theirs, info = getattr(hf, name).from_pretrained(tmp_path, output_loading_info=True)
        assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
        theirs.eval()
    return theirs, ours


def batch(B=4, T=16, seed=0, lengths=(16, 11, 5, 14)):
    """input_ids, token_type_ids, attention_mask (B, T), right-padded to ``lengths`` with the pad id 0."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (B, T), generator=g)
    mask = (torch.arange(T)[None] < torch.tensor(lengths[:B])[:, None]).long()
    types = (torch.arange(T)[None] >= torch.tensor(lengths[:B])[:, None] // 2).long() * mask
    return ids * mask, types, mask


def diff(a, b):
    return (a - b).abs().max().item()


def both_paths(model):
    """Yield once on the padded path and once on the unpadded one (the encoder's own switch)."""
    encoder = getattr(model, "roformer", model)
    for threshold in (float("inf"), 0.0):
        encoder.unpad_threshold = threshold
        yield "padded" if threshold else "unpadded"


# --- parity with transformers --------------------------------------------------------------------------------

def test_the_sinusoid_table_is_transformers(hf):
    theirs = hf.models.roformer.modeling_roformer.RoFormerSinusoidalPositionalEmbedding(64, 12)
    assert torch.equal(sinusoid_table(64, 12), theirs.create_weight())


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_encoder_parity(hf, tmp_path, direction, variant):
    theirs, ours = twins(hf, tmp_path, direction, "RoFormerModel", RoFormerModel, **VARIANTS[variant])
    ids, types, mask = batch()
    real = mask.bool()
    with torch.no_grad():
        ref = theirs(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True,
                     output_attentions=True)
        for path in both_paths(ours):
            out = ours(ids, types, mask)
            assert out.pooler_output is None
            assert diff(out.last_hidden_state[real], ref.last_hidden_state[real]) < TOL, path
        out = ours(ids, types, mask, output_hidden_states=True, output_attentions=True)  # the padded path
        assert diff(out.last_hidden_state, ref.last_hidden_state) < TOL  # the padding's outputs too
        assert len(out.hidden_states) == len(ref.hidden_states) == 3
        for mine, theirs_h in zip(out.hidden_states, ref.hidden_states):
            assert diff(mine, theirs_h) < TOL
        assert len(out.attentions) == len(ref.attentions) == 2
        for mine, theirs_p in zip(out.attentions, ref.attentions):
            assert diff(mine, theirs_p) < TOL
        full = torch.randint(5, 100, (2, 16))
        assert diff(ours(full).last_hidden_state, theirs(full).last_hidden_state) < TOL  # no mask at all


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_masked_lm_parity_and_loss(hf, tmp_path, direction, variant):
    theirs, ours = twins(hf, tmp_path, direction, "RoFormerForMaskedLM", RoFormerForMaskedLM, **VARIANTS[variant])
    ids, types, mask = batch(seed=1)
    labels = torch.full_like(ids, -100)
    labels[:, 1::3] = ids[:, 1::3]
    labels[mask == 0] = -100
    real, chosen = mask.bool(), labels != -100
    with torch.no_grad():
        ref = theirs(ids, attention_mask=mask, token_type_ids=types, labels=labels)
        for path in both_paths(ours):
            logits = ours(ids, types, mask).logits  # (B, T, V)
            assert diff(logits[real], ref.logits[real]) < TOL, path
            out = ours(ids, types, mask, labels=labels)  # the labelled positions alone
            assert out.logits.shape == (int(chosen.sum()), 100)
            assert diff(out.logits, ref.logits[chosen]) < TOL, path
            assert abs(out.loss.item() - ref.loss.item()) < TOL and out.mlm_loss is out.loss, path


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("variant", ["plain", "narrow-embeddings"])
def test_causal_lm_parity_and_loss(hf, tmp_path, direction, variant):
    theirs, ours = twins(hf, tmp_path, direction, "RoFormerForCausalLM", RoFormerForCausalLM, is_decoder=True,
                         **VARIANTS[variant])
    ids, types, mask = batch(seed=2)
    labels = ids.masked_fill(mask == 0, -100)
    real, scored = mask.bool(), labels[:, 1:] != -100
    with torch.no_grad():
        ref = theirs(ids, attention_mask=mask, token_type_ids=types, labels=labels, use_cache=False)
        for path in both_paths(ours):
            assert diff(ours(ids, types, mask).logits[real], ref.logits[real]) < TOL, path
            out = ours(ids, types, mask, labels=labels)  # the positions with a next token alone
            assert diff(out.logits, ref.logits[:, :-1][scored]) < TOL, path
            assert abs(out.loss.item() - ref.loss.item()) < TOL, path
        probs = ours(ids, types, mask, output_attentions=True).attentions[0]  # nothing sees a later position
        assert probs.triu(1).abs().max() == 0


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_sequence_classification(hf, tmp_path, direction, variant):
    theirs, ours = twins(hf, tmp_path, direction, "RoFormerForSequenceClassification",
                         RoFormerForSequenceClassification, num_labels=3, **VARIANTS[variant])
    ids, types, mask = batch(seed=3)
    labels = torch.tensor([0, 2, 1, 2])
    with torch.no_grad():
        ref = theirs(ids, attention_mask=mask, token_type_ids=types, labels=labels)
        for path in both_paths(ours):
            out = ours(ids, types, mask, labels=labels)
            assert diff(out.logits, ref.logits) < TOL and abs(out.loss.item() - ref.loss.item()) < TOL, path
        assert diff(ours(ids, types, mask, output_hidden_states=True).logits, ref.logits) < TOL  # every position


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_regression(hf, tmp_path, direction):
    theirs, ours = twins(hf, tmp_path, direction, "RoFormerForSequenceClassification",
                         RoFormerForSequenceClassification, num_labels=1)
    ids, types, mask = batch(seed=4)
    labels = torch.tensor([0.5, -1.0, 2.0, 0.0])
    with torch.no_grad():
        ref, out = theirs(ids, attention_mask=mask, labels=labels), ours(ids, None, mask, labels=labels)
    assert diff(out.logits, ref.logits) < TOL and abs(out.loss.item() - ref.loss.item()) < TOL


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_token_classification(hf, tmp_path, direction, variant):
    theirs, ours = twins(hf, tmp_path, direction, "RoFormerForTokenClassification", RoFormerForTokenClassification,
                         num_labels=5, **VARIANTS[variant])
    ids, types, mask = batch(seed=5)
    labels = torch.randint(0, 5, ids.shape, generator=torch.Generator().manual_seed(5)).masked_fill(mask == 0, -100)
    with torch.no_grad():
        ref = theirs(ids, attention_mask=mask, token_type_ids=types, labels=labels)
        for path in both_paths(ours):
            out = ours(ids, types, mask, labels=labels)
            assert diff(out.logits[mask.bool()], ref.logits[mask.bool()]) < TOL, path
            assert abs(out.loss.item() - ref.loss.item()) < TOL, path


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_question_answering(hf, tmp_path, direction, variant):
    theirs, ours = twins(hf, tmp_path, direction, "RoFormerForQuestionAnswering", RoFormerForQuestionAnswering,
                         **VARIANTS[variant])
    ids, types, mask = batch(seed=6)
    start, end = torch.tensor([3, 0, 2, 20]), torch.tensor([5, 1, 4, 20])  # 20: past the window, no loss
    with torch.no_grad():
        ref = theirs(ids, attention_mask=mask, token_type_ids=types, start_positions=start, end_positions=end)
        out = ours(ids, types, mask, start_positions=start, end_positions=end)
    assert diff(out.start_logits, ref.start_logits) < TOL and diff(out.end_logits, ref.end_logits) < TOL
    assert abs(out.loss.item() - ref.loss.item()) < TOL


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_multiple_choice(hf, tmp_path, direction, variant):
    theirs, ours = twins(hf, tmp_path, direction, "RoFormerForMultipleChoice", RoFormerForMultipleChoice,
                         **VARIANTS[variant])
    ids, types, mask = (t.view(2, 2, 16) for t in batch(seed=7))  # padded choices: the summary reads the last slot
    labels = torch.tensor([1, 0])
    with torch.no_grad():
        ref = theirs(ids, attention_mask=mask, token_type_ids=types, labels=labels)
        out = ours(ids, types, mask, labels=labels)
        assert diff(out.logits, ref.logits) < TOL and abs(out.loss.item() - ref.loss.item()) < TOL
        assert diff(ours(ids, types, mask, output_hidden_states=True).logits, ref.logits) < TOL


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_pretraining_model_loads_in_transformers_masked_lm_and_back(hf, tmp_path, variant):
    """RoFormerForPreTraining is bertforge's: transformers reads its encoder and MLM head (the pooler and the NSP
    head are reported unused), and the NSP head reads BERT's pooler at [CLS]."""
    ours = perturb(RoFormerForPreTraining(our_config(**VARIANTS[variant])), 2)
    ours.save_pretrained(tmp_path)
    theirs, info = hf.RoFormerForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"]
    assert sorted(info["unexpected_keys"]) == ["cls.seq_relationship.bias", "cls.seq_relationship.weight",
                                               "roformer.pooler.dense.bias", "roformer.pooler.dense.weight"]
    ids, types, mask = batch(seed=8)
    labels = torch.full_like(ids, -100)
    labels[:, 2::4] = ids[:, 2::4]
    labels[mask == 0] = -100
    nsp = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        ref = theirs.eval()(ids, attention_mask=mask, token_type_ids=types, labels=labels)
        for path in both_paths(ours):
            out = ours(ids, types, mask, labels=labels, next_sentence_label=nsp)
            assert diff(out.prediction_logits, ref.logits[labels != -100]) < TOL, path
            assert abs(out.mlm_loss.item() - ref.loss.item()) < TOL, path
            hidden = ours.roformer(ids, types, mask).last_hidden_state
            pooled = torch.tanh(ours.roformer.pooler.dense(hidden[:, 0]))
            assert diff(out.seq_relationship_logits, ours.cls.seq_relationship(pooled)) < TOL, path
            assert abs(out.nsp_loss.item() - torch.nn.functional.cross_entropy(
                ours.cls.seq_relationship(pooled), nsp).item()) < TOL
    # and back: the NSP head and the pooler start fresh, with a warning
    with pytest.warns(UserWarning, match="4 weights not in the checkpoint.*seq_relationship.*pooler.dense"):
        again = RoFormerForPreTraining.from_pretrained(_saved(theirs, tmp_path / "hf"))
    assert sorted(again.newly_initialized) == ["cls.seq_relationship.bias", "cls.seq_relationship.weight",
                                               "roformer.pooler.dense.bias", "roformer.pooler.dense.weight"]


def _saved(model, path):
    model.save_pretrained(path)
    return path


def test_gradients_match(hf, tmp_path):
    theirs, ours = twins(hf, tmp_path, "hf->ours", "RoFormerForSequenceClassification",
                         RoFormerForSequenceClassification, num_labels=3, embedding_size=16, rotary_value=True,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    theirs.train(), ours.train()
    ids, types, mask = batch(seed=9)
    labels = torch.tensor([2, 0, 1, 1])
    theirs(ids, attention_mask=mask, token_type_ids=types, labels=labels).loss.backward()
    ref = {n: p.grad for n, p in theirs.named_parameters() if p.requires_grad}  # not their frozen table
    for path in both_paths(ours):
        ours.zero_grad()
        ours(ids, types, mask, labels=labels).loss.backward()
        grads = {n: p.grad for n, p in ours.named_parameters()}
        assert set(grads) == set(ref)
        for name, grad in grads.items():
            assert diff(grad, ref[name]) < TOL, (path, name)


def test_parameters_and_names_equal_transformers(hf):
    for name, cls, fields in (("RoFormerForMaskedLM", RoFormerForMaskedLM, dict(embedding_size=16)),
                              ("RoFormerForCausalLM", RoFormerForCausalLM, dict(is_decoder=True)),
                              ("RoFormerForMultipleChoice", RoFormerForMultipleChoice, {})):
        theirs, ours = getattr(hf, name)(hf.RoFormerConfig(**TINY, **fields)), cls(our_config(**fields))
        tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}  # transformers' aliases
        assert set(ours.state_dict()) == set(theirs.state_dict()) - tied
        assert ours.num_parameters() == theirs.num_parameters(only_trainable=True)  # the table is a buffer here


# --- bertforge's own paths ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("causal", [False, True])
def test_a_padded_batch_equals_each_row_alone(causal):
    torch.manual_seed(3)
    model = perturb(RoFormerModel(our_config(rotary_value=True, is_decoder=causal)), 3)
    ids, types, mask = batch(seed=10)
    with torch.no_grad():
        for path in both_paths(model):
            out = model(ids, types, mask).last_hidden_state
            for row, n in enumerate(mask.sum(1).tolist()):
                alone = model(ids[row:row + 1, :n], types[row:row + 1, :n]).last_hidden_state[0]
                assert diff(out[row, :n], alone) < TOL, (path, row)


@pytest.mark.parametrize("causal", [False, True])
def test_unpadded_equals_padded_outputs_and_gradients(causal):
    torch.manual_seed(4)
    model = perturb(RoFormerForMaskedLM(our_config(embedding_size=16, rotary_value=True, is_decoder=causal,
                                                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)), 4)
    model.train()
    ids, types, mask = batch(seed=11)
    labels = ids.masked_fill(mask == 0, -100)
    results = {}
    for path in both_paths(model):
        model.zero_grad()
        out = model(ids, types, mask, labels=labels)
        out.loss.backward()
        results[path] = out.logits, {n: p.grad.clone() for n, p in model.named_parameters()}
    (a, grads_a), (b, grads_b) = results.values()
    assert diff(a, b) < TOL
    assert all(diff(grads_a[n], grads_b[n]) < TOL for n in grads_a)


@pytest.mark.parametrize("causal", [False, True])
def test_output_positions_equal_the_full_output_gathered(causal):
    torch.manual_seed(5)
    model = perturb(RoFormerModel(our_config(embedding_size=16, is_decoder=causal)), 5)
    ids, types, mask = batch(seed=12)
    at = torch.tensor([[0, 3, 7], [10, 2, 0], [4, 1, 4], [13, 0, 6]])
    with torch.no_grad():
        for path in both_paths(model):
            full = model(ids, types, mask).last_hidden_state
            some = model(ids, types, mask, output_positions=at).last_hidden_state  # (B, 3, H)
            assert some.shape == (4, 3, 32)
            assert diff(some, full.gather(1, at[..., None].expand(-1, -1, 32))) < TOL, path
        unmasked = model(ids, types).last_hidden_state  # no mask: the padded path without one
        some = model(ids, types, output_positions=at).last_hidden_state
        assert diff(some, unmasked.gather(1, at[..., None].expand(-1, -1, 32))) < TOL


def test_the_table_is_saved_and_a_checkpoint_without_it_loads(tmp_path):
    from bertforge.io.weights import read_state_dict, save_state_dict

    model = RoFormerModel(our_config())
    model.save_pretrained(tmp_path)
    state = read_state_dict(tmp_path)
    assert torch.equal(state["encoder.embed_positions.weight"], sinusoid_table(24, 8))
    del state["encoder.embed_positions.weight"]
    save_state_dict(state, tmp_path / "model.safetensors")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = RoFormerModel.from_pretrained(tmp_path)
    assert torch.equal(again.encoder.embed_positions.weight, sinusoid_table(24, 8))
    assert not any(p is again.encoder.embed_positions.weight for p in again.parameters())  # never trained


# --- configs -------------------------------------------------------------------------------------------------------

def test_config_round_trips_through_transformers(hf, tmp_path):
    ours = our_config(embedding_size=16, rotary_value=True, is_decoder=True)
    ours.to_json_file(tmp_path / "config.json")
    theirs = hf.RoFormerConfig.from_pretrained(tmp_path)
    for name in ("embedding_size", "hidden_size", "rotary_value", "is_decoder", "max_position_embeddings"):
        assert getattr(theirs, name) == getattr(ours, name), name
    theirs.save_pretrained(tmp_path / "hf")
    again = RoFormerConfig.from_json_file(tmp_path / "hf" / "config.json")
    assert again == ours and again.extra["use_cache"] is True  # transformers' own keys kept
    defaults = RoFormerConfig()
    assert all(getattr(defaults, k) == getattr(hf.RoFormerConfig(), k)
               for k in ("vocab_size", "embedding_size", "hidden_size", "max_position_embeddings", "pad_token_id",
                         "rotary_value", "layer_norm_eps", "initializer_range"))


@pytest.mark.parametrize("fields, field", [
    (dict(hidden_size=36, num_attention_heads=4), "rotary positions"),  # head size 9
    (dict(hidden_size=30), "divisible"),
    (dict(embedding_size=0), "embedding_size"),
    (dict(rotary_value="yes"), "rotary_value"),
    (dict(tie_word_embeddings=False), "tie_word_embeddings"),
    (dict(pad_token_id=100), "pad_token_id"),
])
def test_config_errors_name_the_field(fields, field):
    with pytest.raises(ConfigError, match=field):
        RoFormerConfig(**{**TINY, **fields})


def test_presets_are_googles_bert_sizes():
    config = RoFormerConfig.preset("mini")
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size,
            config.embedding_size, config.max_position_embeddings) == (4, 256, 4, 1024, 256, 512)
    assert RoFormerConfig.preset("tiny", rotary_value=True).rotary_value
    with pytest.raises(ConfigError, match="unknown preset"):
        RoFormerConfig.preset("huge")


def test_the_registry_record():
    family = get_family("roformer")
    assert family.heads[PRETRAINING] is RoFormerForPreTraining and family.heads[MASKED_LM] is RoFormerForMaskedLM
    assert family.heads[CAUSAL_LM] is RoFormerForCausalLM and family.masked_lm_unused == ()
    assert family.can == {ENCODE, FILL_MASK, GENERATE, EXPORT, SERVE, ATTENTION}
    assert family.default_objective == "mlm+nsp" and family.max_positions(RoFormerConfig.preset("tiny")) == 512


# --- the command line: pre-training with each objective, fine-tuning, and what the family can do ------------------

OBJECTIVES = ("mlm+nsp", "mlm", "mlm+sop", "ltr")
WORDS = {"pos": ["good", "great", "fine"], "neg": ["bad", "awful", "poor"]}
FILLER = "the a movie film plot was is very cat dog runs sees big small house tree".split()


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """{objective: model directory} of a 2-step `pretrain --arch roformer --objective X` run each."""
    root = tmp_path_factory.mktemp("roformer-pretrain")
    rng = random.Random(0)
    words = FILLER + WORDS["pos"] + WORDS["neg"]
    docs = ["\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(4, 10))).capitalize() + "."
                      for _ in range(rng.randint(3, 6))) for _ in range(40)]
    (root / "corpus.txt").write_text("\n\n".join(docs) + "\n")
    dirs = {}
    for objective in OBJECTIVES:
        out = root / objective.replace("+", "-")
        cli(["pretrain", "--arch", "roformer", "--objective", objective, "--corpus", str(root / "corpus.txt"), "--out",
             str(out), "--vocab-size", "80", "--preset", "tiny", "--seq-len", "32", "--batch-size", "4",
             "--max-steps", "2", "--no-progress", "--workers", "1"])
        dirs[objective] = out / "model"
    return dirs


def sentiment(path, n, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(sorted(WORDS))
        rows.append({"text": " ".join(rng.sample(FILLER, 4) + [rng.choice(WORDS[label])]), "label": label})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def classifier(pretrained, tmp_path_factory):
    """`finetune --task classify` of the mlm+nsp model: (run directory, its train file)."""
    root = tmp_path_factory.mktemp("roformer-finetune")
    train, dev = sentiment(root / "train.jsonl", 32, 0), sentiment(root / "dev.jsonl", 16, 1)
    cli(["finetune", "--task", "classify", "--model", str(pretrained["mlm+nsp"]), "--train", str(train), "--dev",
         str(dev), "--out", str(root / "run"), "--epochs", "1", "--batch-size", "8", "--no-progress"])
    return root / "run", train


@pytest.mark.parametrize("objective, architecture", [("mlm+nsp", "RoFormerForPreTraining"),
                                                     ("mlm", "RoFormerForMaskedLM"),
                                                     ("mlm+sop", "RoFormerForPreTraining"),
                                                     ("ltr", "RoFormerForCausalLM")])
def test_each_objective_pretrains_a_roformer(pretrained, objective, architecture):
    config = json.loads((pretrained[objective] / "config.json").read_text())
    assert config["model_type"] == "roformer" and config["architectures"] == [architecture]
    assert config["is_decoder"] is (objective == "ltr") and config["vocab_size"] == 80
    metrics = [json.loads(x) for x in (pretrained[objective].parent / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in metrics if "loss" in r][-1] == 2
    family = get_family("roformer")
    model = family.heads[{"ltr": CAUSAL_LM, "mlm": MASKED_LM}.get(objective, PRETRAINING)].from_pretrained(
        pretrained[objective])
    assert model.newly_initialized == []


def test_the_pretrained_model_fine_tunes_and_predicts(classifier, capsys):
    run, train = classifier
    model = run / "model"
    assert json.loads((model / "config.json").read_text())["architectures"] == ["RoFormerForSequenceClassification"]
    assert "accuracy" in json.loads((run / "eval_results.json").read_text())
    (run.parent / "in.txt").write_text("the movie was great\nthe plot was awful\n")
    cli(["predict", "--model", str(model), "--input", str(run.parent / "in.txt"), "--output",
         str(run.parent / "p.jsonl")])
    assert len((run.parent / "p.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("flags", [["--freeze-encoder", "--features", "scalar-mix"], ["--head-bilstm"]])
def test_feature_based_and_bilstm_task_models_read_roformer(pretrained, tmp_path, flags):
    train, dev = sentiment(tmp_path / "train.jsonl", 16, 2), sentiment(tmp_path / "dev.jsonl", 8, 3)
    cli(["finetune", "--task", "classify", "--model", str(pretrained["mlm"]), "--train", str(train), "--dev", str(dev),
         "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "8", "--no-progress", *flags])
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["architectures"] == ["TaskModel"]
    (tmp_path / "in.txt").write_text("the movie was great\n")
    cli(["predict", "--model", str(tmp_path / "run" / "model"), "--input", str(tmp_path / "in.txt"), "--output",
         str(tmp_path / "p.jsonl")])
    assert json.loads((tmp_path / "p.jsonl").read_text())["label"] in WORDS


def test_encode_fill_mask_generate_and_attention(pretrained, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("the movie was great\nthe plot was awful\n")
    capsys.readouterr()
    cli(["encode", "--model", str(pretrained["mlm+nsp"]), "--input", str(tmp_path / "in.txt"), "--pooling", "cls"])
    vectors = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(vectors) == 2 and all(len(v) == 128 for v in vectors)
    for objective in ("mlm", "mlm+nsp"):  # the masked LM alone, and read from the pre-training model
        cli(["fill-mask", "--model", str(pretrained[objective]), "--top-k", "2", "the movie was [MASK] ."])
        printed = capsys.readouterr().out.splitlines()
        assert printed[0] == "the movie was [MASK] ." and len(printed) == 2, objective
    cli(["generate", "--model", str(pretrained["ltr"]), "--max-new-tokens", "3", "the movie"])
    assert capsys.readouterr().out.startswith("the movie")
    cli(["attention", "--model", str(pretrained["mlm"]), "the movie was good", "--out", str(tmp_path / "a.html")])
    assert "2 layers x 2 heads" in capsys.readouterr().out and (tmp_path / "a.html").is_file()


def test_export_onnx_predicts_what_torch_does(pretrained, classifier, tmp_path):
    pytest.importorskip("onnxruntime")
    run, _ = classifier
    for source, out in ((pretrained["mlm"], tmp_path / "mlm"), (run / "model", tmp_path / "clf")):
        cli(["export", "onnx", "--model", str(source), "--out", str(out)])
        assert json.loads((out / "onnx_export.json").read_text())["files"]["model.onnx"]["max_abs_diff"] < 1e-4
    (tmp_path / "in.txt").write_text("the movie was great\nthe plot was awful\n")
    for backend, model in (("torch", run / "model"), ("onnx", tmp_path / "clf")):
        cli(["predict", "--model", str(model), "--backend", backend, "--input", str(tmp_path / "in.txt"), "--output",
             str(tmp_path / f"{backend}.jsonl")])
    torch_lines, onnx_lines = ([json.loads(x) for x in (tmp_path / f"{b}.jsonl").read_text().splitlines()]
                               for b in ("torch", "onnx"))
    assert [x["label"] for x in onnx_lines] == [x["label"] for x in torch_lines]
    assert [x["score"] for x in onnx_lines] == pytest.approx([x["score"] for x in torch_lines], abs=1e-5)


def test_serve_answers_fill_mask_embed_and_attention(pretrained):
    from fastapi.testclient import TestClient

    from bertforge.inference import encode
    from bertforge.inference.fill_mask import fill_mask
    from bertforge.serve.app import create_app
    from bertforge.serve.models import ServedModel
    from bertforge.serve.settings import ServeSettings

    path = pretrained["mlm"]
    served = ServedModel.load(path)
    assert served.family == "roformer" and served.task_name == "fill-mask"
    assert set(served.routes) == {"embed", "fill-mask", "attention", "tokenize"}
    texts = ["the movie was [MASK] .", "a [MASK] film"]
    with TestClient(create_app(served, ServeSettings(model=str(path)))) as client:
        guesses = client.post("/fill-mask", json={"inputs": texts, "top_k": 3}).json()
        vectors = client.post("/embed", json={"inputs": ["the movie", "a film was bad"], "pooling": "mean",
                                                  "normalize": False}).json()
    tokenizer = served.tokenizer
    for text, answer in zip(texts, guesses):
        expected = fill_mask(served.mlm, tokenizer, text, top_k=3)
        assert [g["token"] for g in answer[0]] == [t for t, _ in expected[0]]
        assert [g["score"] for g in answer[0]] == pytest.approx([p for _, p in expected[0]], abs=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the encoder alone: the head's weights are unused
        encoder = RoFormerModel.from_pretrained(path).eval()
    expected = encode(encoder, tokenizer, ["the movie", "a film was bad"], pooling="mean")
    assert torch.tensor(vectors) == pytest.approx(expected, abs=1e-5)
