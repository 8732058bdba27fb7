"""ModernBERT: parity with transformers (encoder, masked LM, sequence / token / QA / choice heads; both load
directions; padding and a window shorter than the sequence), the unpadded path equal to the padded one, config
round trips both ways, presets and the config errors."""

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file

from bertforge.errors import ConfigError
from bertforge.model.modernbert import (ModernBertConfig, ModernBertForMaskedLM, ModernBertForMultipleChoice,
                                        ModernBertForQuestionAnswering, ModernBertForSequenceClassification,
                                        ModernBertForTokenClassification, ModernBertModel)
from parity import perturb

TOL = 1e-5
# 3 layers, global every 2 (layers 0 and 2 global, 1 local), window 4 (2 either side) against 16 tokens; bases
# unlike each other and unlike the defaults, so a layer using the wrong one shows.
TINY = dict(vocab_size=100, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
            global_attn_every_n_layers=2, local_attention=4, global_rope_theta=1000.0, local_rope_theta=50.0,
            pad_token_id=0, bos_token_id=2, cls_token_id=2, eos_token_id=3, sep_token_id=3)
VARIANTS = {  # config fields on top of TINY, each a code path of its own
    "plain": {},
    "biases": dict(attention_bias=True, mlp_bias=True, norm_bias=True, classifier_bias=True, decoder_bias=False),
    "untied-tanh-local-first": dict(tie_word_embeddings=False, hidden_activation="gelu_pytorch_tanh",
                                    classifier_activation="silu", layer_types=["sliding_attention",
                                                                               "full_attention",
                                                                               "sliding_attention"]),
}
DIRECTIONS = ["hf->ours", "ours->hf"]


def hf_config(hf, **fields):
    fields = {**TINY, **fields}
    types = fields.pop("layer_types", None)
    return hf.ModernBertConfig(**fields, layer_types=types, attn_implementation="eager")


def our_config(**fields):
    """TINY with ``fields``; num_labels goes where transformers' config.json has it, outside the fields."""
    labels = {"num_labels": fields.pop("num_labels")} if "num_labels" in fields else {}
    return ModernBertConfig(**{**TINY, **fields}, extra=labels)


def twins(hf, tmp_path, direction, name, ours_cls, **fields):
    """(transformers model, bertforge model) holding the same weights, loaded the given direction."""
    if direction == "hf->ours":
        torch.manual_seed(0)
        theirs = perturb(getattr(hf, name)(hf_config(hf, **fields)), 0)
        theirs.save_pretrained(tmp_path)
        ours = ours_cls.from_pretrained(tmp_path).eval()
    else:
        torch.manual_seed(1)
        ours = perturb(ours_cls(our_config(**fields)), 1)
        ours.save_pretrained(tmp_path)
        theirs = getattr(hf, name).from_pretrained(tmp_path, attn_implementation="eager").eval()
    return theirs, ours


def batch(B=4, T=16, seed=0, lengths=(16, 11, 5, 14)):
    """input_ids, attention_mask (B, T), right-padded to ``lengths`` with the pad id 0."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (B, T), generator=g)
    mask = (torch.arange(T)[None] < torch.tensor(lengths[:B])[:, None]).long()
    return ids * mask, mask


def diff(a, b):
    return (a - b).abs().max().item()


def both_paths(ours):
    """Yield once on the padded path and once on the unpadded one (the model's own switch)."""
    for threshold in (float("inf"), 0.0):
        ours.unpad_threshold = threshold
        yield "padded" if threshold else "unpadded"


# --- parity with transformers --------------------------------------------------------------------------

@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_encoder_parity(hf, tmp_path, direction, variant):
    theirs, ours = twins(hf, tmp_path, direction, "ModernBertModel", ModernBertModel, **VARIANTS[variant])
    ids, mask = batch()
    real = mask.bool()
    with torch.no_grad():
        ref = theirs(ids, attention_mask=mask, output_hidden_states=True)
        for path in both_paths(ours):
            out = ours(ids, mask)
            assert diff(out.last_hidden_state[real], ref.last_hidden_state[real]) < TOL, path
            assert out.last_hidden_state[~real].abs().max() == 0, path  # zero at the padding, both paths
        out = ours(ids, mask, output_hidden_states=True, output_attentions=True)
        assert len(out.hidden_states) == len(ref.hidden_states) == 4
        for mine, theirs_h in zip(out.hidden_states, ref.hidden_states):
            assert diff(mine[real], theirs_h[real]) < TOL
        probs = theirs(ids, attention_mask=mask, output_attentions=True).attentions
        assert len(out.attentions) == len(probs) == 3
        for mine, theirs_p in zip(out.attentions, probs):  # (B, A, T, T) at the real queries
            assert diff(mine.transpose(1, 2)[real], theirs_p.transpose(1, 2)[real]) < TOL
        full = torch.randint(5, 100, (2, 16))
        assert diff(ours(full).last_hidden_state, theirs(full).last_hidden_state) < TOL  # no mask at all


def test_encoder_parity_with_transformers_sdpa(hf, tmp_path):
    theirs, ours = twins(hf, tmp_path, "hf->ours", "ModernBertModel", ModernBertModel)
    theirs = hf.ModernBertModel.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    ids, mask = batch(seed=3)
    with torch.no_grad():
        ref = theirs(ids, attention_mask=mask).last_hidden_state
        for path in both_paths(ours):
            assert diff(ours(ids, mask).last_hidden_state[mask.bool()], ref[mask.bool()]) < TOL, path


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_masked_lm_parity_and_loss(hf, tmp_path, direction, variant):
    theirs, ours = twins(hf, tmp_path, direction, "ModernBertForMaskedLM", ModernBertForMaskedLM,
                         **VARIANTS[variant])
    ids, mask = batch(seed=1)
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]
    labels[0, 9], labels[3, 12] = 7, 42
    real = mask.bool()
    with torch.no_grad():
        ref = theirs(ids, attention_mask=mask, labels=labels)
        for path in both_paths(ours.model):
            out = ours(ids, mask, labels=labels)
            assert diff(out.logits[real], ref.logits[real]) < TOL, path
            assert abs(out.loss.item() - ref.loss.item()) < TOL, path


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_sparse_prediction_decodes_the_labelled_positions(hf, tmp_path, direction):
    theirs, ours = twins(hf, tmp_path, direction, "ModernBertForMaskedLM", ModernBertForMaskedLM,
                         sparse_prediction=True)
    ids, mask = batch(seed=2)
    labels = torch.full_like(ids, -100)
    labels[:, 1], labels[1, 6] = ids[:, 1], 11
    with torch.no_grad():
        ref, out = theirs(ids, attention_mask=mask, labels=labels), ours(ids, mask, labels=labels)
    assert out.logits.shape == ref.logits.shape == (5, 100)
    assert diff(out.logits, ref.logits) < TOL and abs(out.loss.item() - ref.loss.item()) < TOL


def test_decoder_is_tied_and_stored_once(tmp_path):
    model = ModernBertForMaskedLM(ModernBertConfig(**TINY))
    assert model.decoder.weight is model.model.embeddings.tok_embeddings.weight
    model.save_pretrained(tmp_path)
    keys = set(load_file(tmp_path / "model.safetensors"))
    assert "model.embeddings.tok_embeddings.weight" in keys and "decoder.weight" not in keys
    assert "decoder.bias" in keys and not any(k.endswith("Wqkv.bias") for k in keys)  # no biases by default
    untied = ModernBertForMaskedLM(ModernBertConfig(**TINY, tie_word_embeddings=False))
    assert untied.decoder.weight is not untied.model.embeddings.tok_embeddings.weight


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_sequence_classification(hf, tmp_path, direction, pooling):
    theirs, ours = twins(hf, tmp_path, direction, "ModernBertForSequenceClassification",
                         ModernBertForSequenceClassification, classifier_pooling=pooling, num_labels=3)
    ids, mask = batch(seed=4)
    labels = torch.tensor([0, 2, 1, 2])
    with torch.no_grad():
        ref = theirs(ids, attention_mask=mask, labels=labels)
        for path in both_paths(ours.model):
            out = ours(ids, mask, labels=labels)
            assert diff(out.logits, ref.logits) < TOL, path
            assert abs(out.loss.item() - ref.loss.item()) < TOL, path
    assert ours.num_labels == 3 and ours.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_regression(hf, tmp_path, direction):
    theirs, ours = twins(hf, tmp_path, direction, "ModernBertForSequenceClassification",
                         ModernBertForSequenceClassification, classifier_pooling="mean", num_labels=1)
    ids, mask = batch(seed=5)
    labels = torch.tensor([0.5, -1.0, 2.0, 0.0])
    with torch.no_grad():
        ref, out = theirs(ids, attention_mask=mask, labels=labels), ours(ids, mask, labels=labels)
    assert diff(out.logits, ref.logits) < TOL and abs(out.loss.item() - ref.loss.item()) < TOL


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_token_classification(hf, tmp_path, direction):
    theirs, ours = twins(hf, tmp_path, direction, "ModernBertForTokenClassification",
                         ModernBertForTokenClassification, num_labels=5, **VARIANTS["biases"])
    ids, mask = batch(seed=6)
    labels = torch.randint(0, 5, ids.shape, generator=torch.Generator().manual_seed(6)).masked_fill(mask == 0, -100)
    real = mask.bool()
    with torch.no_grad():
        ref = theirs(ids, attention_mask=mask, labels=labels)
        for path in both_paths(ours.model):
            out = ours(ids, mask, labels=labels)
            assert diff(out.logits[real], ref.logits[real]) < TOL, path
            assert abs(out.loss.item() - ref.loss.item()) < TOL, path


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_question_answering(hf, tmp_path, direction):
    theirs, ours = twins(hf, tmp_path, direction, "ModernBertForQuestionAnswering", ModernBertForQuestionAnswering)
    start, end = torch.tensor([3, 0, 20, 7]), torch.tensor([5, 2, 21, 15])  # one cut off (>= T), one at T - 1
    with torch.no_grad():
        ids, mask = batch(seed=7, lengths=(16, 16, 16, 16))  # the span softmax reads padding: compare without
        ref = theirs(ids, attention_mask=mask, start_positions=start, end_positions=end)
        out = ours(ids, mask, start_positions=start, end_positions=end)
        assert diff(out.start_logits, ref.start_logits) < TOL and diff(out.end_logits, ref.end_logits) < TOL
        assert abs(out.loss.item() - ref.loss.item()) < TOL
        ids, mask = batch(seed=7)
        ref, real = theirs(ids, attention_mask=mask), mask.bool()
        for path in both_paths(ours.model):
            out = ours(ids, mask)
            assert diff(out.start_logits[real], ref.start_logits[real]) < TOL, path
            assert diff(out.end_logits[real], ref.end_logits[real]) < TOL, path


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_multiple_choice(hf, tmp_path, direction, pooling):
    theirs, ours = twins(hf, tmp_path, direction, "ModernBertForMultipleChoice", ModernBertForMultipleChoice,
                         classifier_pooling=pooling)
    ids, mask = batch(B=6, seed=8, lengths=(16, 9, 12, 5, 16, 13))
    ids, mask, labels = ids.view(2, 3, 16), mask.view(2, 3, 16), torch.tensor([2, 0])
    with torch.no_grad():
        ref, out = theirs(ids, attention_mask=mask, labels=labels), ours(ids, mask, labels=labels)
    assert out.logits.shape == (2, 3)
    assert diff(out.logits, ref.logits) < TOL and abs(out.loss.item() - ref.loss.item()) < TOL


@pytest.mark.parametrize("name, cls, fields", [
    ("ModernBertModel", ModernBertModel, {}),
    ("ModernBertForMaskedLM", ModernBertForMaskedLM, {}),
    ("ModernBertForMaskedLM", ModernBertForMaskedLM, VARIANTS["untied-tanh-local-first"]),
    ("ModernBertForSequenceClassification", ModernBertForSequenceClassification, VARIANTS["biases"]),
    ("ModernBertForTokenClassification", ModernBertForTokenClassification, dict(num_labels=7)),
    ("ModernBertForQuestionAnswering", ModernBertForQuestionAnswering, {}),
    ("ModernBertForMultipleChoice", ModernBertForMultipleChoice, {}),
])
def test_parameters_and_names_equal_transformers(hf, name, cls, fields):
    theirs = getattr(hf, name)(hf_config(hf, **fields))
    ours = cls(our_config(**fields))
    assert ours.num_parameters() == theirs.num_parameters()
    assert set(ours.state_dict()) == set(theirs.state_dict())


def test_initialisation_is_transformers_truncated_normal():
    config = ModernBertConfig(**{**TINY, "vocab_size": 4000, "hidden_size": 128, "intermediate_size": 384})
    model = ModernBertForMaskedLM(config)
    out_std = 0.02 / (2 * 3) ** 0.5
    for weight, std in ((model.model.embeddings.tok_embeddings.weight, 0.02), (model.model.layers[1].attn.Wqkv.weight,
                        0.02), (model.model.layers[2].mlp.Wo.weight, out_std), (model.head.dense.weight, out_std)):
        assert weight.abs().max() <= 2 * std  # cut at initializer_cutoff_factor std
        assert 0.75 * std < weight.std() < 0.95 * std  # a normal cut at 2 std keeps ~88% of its std
    assert model.decoder.bias.abs().max() == 0 and model.model.final_norm.weight.eq(1).all()
    model.init_weights()  # again, now tied: the embedding keeps the embedding's std
    assert model.model.embeddings.tok_embeddings.weight.std() > 0.75 * 0.02


def test_gradients_match(hf, tmp_path):
    """Training mode (no dropout configured): the same loss and the same gradient for every weight."""
    theirs, ours = twins(hf, tmp_path, "hf->ours", "ModernBertForMaskedLM", ModernBertForMaskedLM)
    ids, mask = batch(seed=9)
    labels = ids.masked_fill(mask == 0, -100)
    theirs.train()(ids, attention_mask=mask, labels=labels).loss.backward()
    ours.train()(ids, mask, labels=labels).loss.backward()
    grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert diff(p.grad, grads[name].grad) < TOL, name


# --- the unpadded path -----------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["bucket", "several-buckets"])
def test_unpadded_equals_padded_outputs_and_gradients(variant):
    """Every position (padding is zero on both paths) and every gradient, in training mode with dropout off."""
    torch.manual_seed(2)
    model = perturb(ModernBertForTokenClassification(our_config(num_labels=3)), 2)
    lengths = (16, 11, 5, 14) if variant == "bucket" else (16, 3, 9, 1, 12, 6)
    ids, mask = batch(B=len(lengths), seed=10, lengths=lengths)
    labels = torch.randint(0, 3, ids.shape, generator=torch.Generator().manual_seed(1)).masked_fill(mask == 0, -100)
    results = {}
    for path in both_paths(model.model):
        model.zero_grad()
        out = model.train()(ids, mask, labels=labels)
        out.loss.backward()
        results[path] = out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}
    (a, grads_a), (b, grads_b) = results["padded"], results["unpadded"]
    assert diff(a, b) < TOL
    for name in grads_a:
        assert diff(grads_a[name], grads_b[name]) < TOL, name


def test_dropout_runs_on_both_paths_and_is_off_in_eval():
    config = our_config(attention_dropout=0.1, embedding_dropout=0.1, mlp_dropout=0.1, classifier_dropout=0.1,
                        num_labels=3)
    model = perturb(ModernBertForSequenceClassification(config), 7)
    ids, mask = batch(seed=13)
    labels = torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        evals = []
        for path in both_paths(model.model):
            torch.manual_seed(0)
            trained = model.train()(ids, mask, labels=labels)
            torch.manual_seed(0)
            again = model(ids, mask, labels=labels)
            assert torch.isfinite(trained.loss) and torch.equal(trained.logits, again.logits), path  # seeded
            evals.append(model.eval()(ids, mask).logits)
            assert diff(trained.logits, evals[-1]) > 1e-4, path  # dropout did act in training
    assert diff(*evals) < TOL


def test_unpadded_window_leaves_no_query_without_a_key(monkeypatch):
    """Padding slots of a bucket that lie beyond the window of every real token must still see a key: an
    attention kernel that gives NaN for a query with no key (as the naive softmax below does, and some device
    kernels have) would otherwise spread NaN into the real rows' gradients."""
    import bertforge.model.modernbert.attention as attention

    def naive(q, k, v, attn_mask=None, dropout_p=0.0):
        scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        return scores.softmax(-1) @ v

    monkeypatch.setattr(attention, "scaled_dot_product_attention", naive)
    model = perturb(ModernBertModel(ModernBertConfig(**TINY)), 6)
    model.unpad_threshold = 0.0
    ids, mask = batch(B=2, seed=12, lengths=(16, 12))  # one bucket; row 1's slots 15.. see no real key
    model.train()(ids, mask).last_hidden_state.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_unpadded_local_window_is_per_sequence():
    """A token of one sequence never sees its packed neighbour: changing row 0 leaves row 1 unchanged."""
    model = perturb(ModernBertModel(ModernBertConfig(**TINY)), 3)
    model.unpad_threshold = 0.0
    ids, mask = batch(seed=11)
    changed = ids.clone()
    changed[0, 12:] = 7
    with torch.no_grad():
        a, b = model(ids, mask).last_hidden_state, model(changed, mask).last_hidden_state
    assert diff(a[0], b[0]) > 1e-3 and diff(a[1:], b[1:]) == 0


def test_window_limits_what_a_local_layer_sees():
    """With local layers only and no global one, a token's state depends on tokens within
    layers * window / 2 positions only."""
    config = ModernBertConfig(**{**TINY, "layer_types": ["sliding_attention"] * 3})
    model = perturb(ModernBertModel(config), 4)
    ids = torch.randint(5, 100, (1, 16))
    changed = ids.clone()
    changed[0, 15] = 9
    with torch.no_grad():
        a, b = model(ids).last_hidden_state, model(changed).last_hidden_state
    reach = 3 * config.sliding_window  # 6: positions 9..15 may change, 0..8 may not
    assert diff(a[0, :15 - reach], b[0, :15 - reach]) == 0 and diff(a[0, 15 - reach:], b[0, 15 - reach:]) > 1e-3


# --- config ------------------------------------------------------------------------------------------------

def test_config_round_trips_through_transformers(hf, tmp_path):
    ours = ModernBertConfig(**TINY, layer_types=["sliding_attention", "full_attention", "full_attention"])
    ours.to_json_file(tmp_path / "config.json")
    theirs = hf.ModernBertConfig.from_pretrained(tmp_path)
    assert theirs.layer_types == ["sliding_attention", "full_attention", "full_attention"]
    assert theirs.rope_parameters["full_attention"]["rope_theta"] == 1000.0
    assert theirs.rope_parameters["sliding_attention"]["rope_theta"] == 50.0
    assert theirs.sliding_window == 2 and theirs.hidden_size == 64
    hf.ModernBertConfig(**TINY).save_pretrained(tmp_path / "hf")
    back = ModernBertConfig.from_json_file(tmp_path / "hf" / "config.json")
    assert back == ModernBertConfig(**TINY) and back.layer_types is None  # the every-n pattern named once
    assert back.attention_types == ["full_attention", "sliding_attention", "full_attention"]


def test_old_style_config_json(tmp_path):
    """Published checkpoints (transformers 4.x) write the pattern and bases as plain fields."""
    data = {"model_type": "modernbert", "architectures": ["ModernBertForMaskedLM"], "vocab_size": 100,
            "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 96,
            "global_attn_every_n_layers": 3, "global_rope_theta": 7.0, "local_rope_theta": 5.0,
            "local_attention": 8, "pad_token_id": 0, "reference_compile": True}
    (tmp_path / "config.json").write_text(json.dumps(data))
    config = ModernBertConfig.from_json_file(tmp_path / "config.json")
    assert (config.global_rope_theta, config.local_rope_theta, config.sliding_window) == (7.0, 5.0, 4)
    assert config.attention_types == ["full_attention", "sliding_attention", "sliding_attention", "full_attention"]
    assert config.extra["reference_compile"] is True and config.to_dict()["reference_compile"] is True


@pytest.mark.parametrize("fields, field", [
    (dict(local_attention=5), "local_attention"),
    (dict(local_attention=0), "local_attention"),
    (dict(hidden_size=60), "hidden_size"),
    (dict(num_attention_heads=64), "rotary"),
    (dict(classifier_pooling="max"), "classifier_pooling"),
    (dict(hidden_activation="tanh"), "hidden_activation"),
    (dict(pad_token_id=100), "pad_token_id"),
    (dict(mlp_dropout=1.0), "mlp_dropout"),
    (dict(layer_types=["full_attention"]), "layer_types"),
])
def test_config_errors_name_the_field(fields, field):
    with pytest.raises(ConfigError, match=field):
        ModernBertConfig(**{**TINY, **fields})


def test_odd_window_is_one_clear_error(tmp_path):
    data = ModernBertConfig(**TINY).to_dict()
    data["local_attention"] = 5
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        ModernBertConfig.from_json_file(tmp_path / "config.json")
    message = str(info.value)
    assert str(tmp_path / "config.json") in message and "'local_attention' must be even" in message
    assert "\n" not in message


def test_json_errors(tmp_path):
    data = ModernBertConfig(**TINY).to_dict()
    for change, expected in ((dict(global_rope_theta=3.0), "rope_theta"),
                             (dict(model_type="bert"), "model_type"),
                             (dict(rope_scaling={"rope_type": "linear", "factor": 2.0}), "rope_scaling")):
        (tmp_path / "config.json").write_text(json.dumps({**data, **change}))
        with pytest.raises(ConfigError, match=expected):
            ModernBertConfig.from_json_file(tmp_path / "config.json")


@pytest.mark.parametrize("name, shape", [
    ("tiny", (2, 128, 2, 192)), ("base", (12, 768, 12, 1152)), ("large", (24, 1024, 16, 1536)),
    ("modernbert-base", (22, 768, 12, 1152)), ("modernbert-large", (28, 1024, 16, 2624)),
])
def test_presets(name, shape):
    config = ModernBertConfig.preset(name)
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.intermediate_size) == shape
    assert ModernBertConfig.preset(name, vocab_size=99, pad_token_id=0).vocab_size == 99
    with pytest.raises(ConfigError, match="modernbert-large"):
        ModernBertConfig.preset("huge")


def test_modernbert_base_parameter_count(hf):
    """ModernBERT-base's published size (149M), and transformers' count for the same config."""
    config = ModernBertConfig.preset("modernbert-base")
    with torch.device("meta"):
        ours = ModernBertModel(config).num_parameters()
        theirs = hf.ModernBertModel(hf.ModernBertConfig.from_dict(config.to_dict())).num_parameters()
    assert ours == theirs and round(ours / 1e6) == 149


def test_head_on_encoder_checkpoint_warns_and_encoder_loads_from_head(tmp_path):
    encoder = perturb(ModernBertModel(ModernBertConfig(**TINY)), 5)
    encoder.save_pretrained(tmp_path / "enc")
    with pytest.warns(UserWarning, match="classifier"):
        head = ModernBertForSequenceClassification.from_pretrained(tmp_path / "enc", num_labels=4)
    assert head.num_labels == 4 and set(head.newly_initialized) >= {"classifier.weight", "head.dense.weight"}
    assert torch.equal(head.model.layers[1].attn.Wqkv.weight, encoder.layers[1].attn.Wqkv.weight)
    head.save_pretrained(tmp_path / "head")
    with warnings.catch_warnings(record=True):
        again = ModernBertModel.from_pretrained(tmp_path / "head")
    assert torch.equal(again.final_norm.weight, encoder.final_norm.weight)
