"""Fine-tuning heads: same logits, losses, weight names and label maps as transformers, both ways."""

import json
import warnings

import numpy as np
import pytest
import torch

from bertforge.config import BertConfig
from bertforge.errors import CheckpointError
from bertforge.model import (BertForMultipleChoice, BertForQuestionAnswering, BertForSequenceClassification,
                             BertForTokenClassification, BertModel)
from parity import perturb

TOL = 1e-5
TINY = dict(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            max_position_embeddings=40)
NAMES = {0: "neg", 1: "neu", 2: "pos"}


def hf_twin(hf, name, seed=0, **config):
    torch.manual_seed(seed)
    model = getattr(hf, name)(hf.BertConfig(**TINY, attn_implementation="eager", **config))
    return perturb(model, seed)


def ours_twin(cls, seed=1, **extra):
    torch.manual_seed(seed)
    return perturb(cls(BertConfig(**TINY, extra=extra)), seed)


def batch(B=3, T=12, seed=0):
    """input_ids, token_type_ids, attention_mask (B, T): two segments, the last row padded after 8."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (B, T), generator=g)
    types = torch.zeros_like(ids)
    types[:, T // 2:] = 1
    mask = torch.ones_like(ids)
    mask[-1, 8:] = 0
    ids[-1, 8:] = 0
    types[-1, 8:] = 0
    return dict(input_ids=ids, token_type_ids=types, attention_mask=mask)


def run_both(ours, theirs, **inputs):
    with torch.no_grad():
        return ours(**inputs), theirs(**inputs)


def assert_close(a, b, where=None):
    diff = (a - b).abs()
    assert (diff[where] if where is not None else diff).max() < TOL


def load_quietly(cls, path, **kwargs):
    """Loading a checkpoint of the same head must not warn at all."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return cls.from_pretrained(path, **kwargs).eval()


# --- sequence classification -------------------------------------------------------------------

def check_sequence_classification(ours, theirs, labels):
    inputs = batch()
    a, b = run_both(ours, theirs, **inputs)
    assert a.logits.shape == (3, ours.num_labels)
    assert_close(a.logits, b.logits)
    problem_type = theirs.config.problem_type
    a, b = run_both(ours, theirs, **inputs, labels=labels)
    theirs.config.problem_type = problem_type  # transformers stores its first guess in the config; we do not
    assert a.loss is not None and abs(a.loss.item() - b.loss.item()) < TOL
    return a


def test_sequence_classification_from_transformers_keeps_logits_loss_and_label_names(tmp_path, hf):
    theirs = hf_twin(hf, "BertForSequenceClassification", id2label=NAMES,
                     label2id={v: k for k, v in NAMES.items()})
    theirs.save_pretrained(tmp_path)
    ours = load_quietly(BertForSequenceClassification, tmp_path)
    assert ours.num_labels == 3 and ours.id2label == NAMES and ours.label2id == {"neg": 0, "neu": 1, "pos": 2}
    out = check_sequence_classification(ours, theirs, torch.tensor([2, 0, 1]))
    ref = torch.nn.functional.cross_entropy(out.logits, torch.tensor([2, 0, 1]))
    assert abs(out.loss.item() - ref.item()) < TOL
    # float multi-hot labels: multi-label BCE, as transformers infers it
    check_sequence_classification(ours, theirs, torch.tensor([[1.0, 0, 1], [0, 0, 0], [0, 1, 0]]))
    # -100 is ignored, as cross-entropy's default in transformers
    check_sequence_classification(ours, theirs, torch.tensor([2, -100, 1]))


def test_sequence_classification_to_transformers_keeps_logits_and_label_names(tmp_path, hf):
    ours = ours_twin(BertForSequenceClassification, id2label=NAMES)  # int keys in Python
    assert ours.num_labels == 3 and ours.id2label == NAMES and ours.label2id == {"neg": 0, "neu": 1, "pos": 2}
    ours.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["id2label"] == {"0": "neg", "1": "neu", "2": "pos"} and "num_labels" not in saved
    assert saved["architectures"] == ["BertForSequenceClassification"]
    theirs = hf.BertForSequenceClassification.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert theirs.num_labels == 3 and theirs.config.id2label == NAMES
    assert theirs.config.label2id == {"neg": 0, "neu": 1, "pos": 2}
    check_sequence_classification(ours, theirs, torch.tensor([0, 2, 1]))
    again = load_quietly(BertForSequenceClassification, tmp_path)
    assert again.id2label == NAMES
    for (n, p), (_, q) in zip(ours.state_dict().items(), again.state_dict().items()):
        assert torch.equal(p, q), n


def test_regression_with_one_label_is_mse_both_ways(tmp_path, hf):
    theirs = hf_twin(hf, "BertForSequenceClassification", num_labels=1)
    theirs.save_pretrained(tmp_path / "hf")
    ours = load_quietly(BertForSequenceClassification, tmp_path / "hf")
    labels = torch.tensor([0.5, -1.25, 3.0])
    assert ours.num_labels == 1 and ours.problem_type(labels) == "regression"
    out = check_sequence_classification(ours, theirs, labels)
    assert abs(out.loss.item() - ((out.logits[:, 0] - labels) ** 2).mean().item()) < TOL

    ours = ours_twin(BertForSequenceClassification, num_labels=1)
    ours.save_pretrained(tmp_path / "ours")
    theirs = hf.BertForSequenceClassification.from_pretrained(tmp_path / "ours", attn_implementation="eager")
    assert theirs.num_labels == 1
    check_sequence_classification(ours, theirs.eval(), labels)


def test_problem_type_in_config_is_honoured(tmp_path, hf):
    theirs = hf_twin(hf, "BertForSequenceClassification", num_labels=3, problem_type="regression")
    theirs.save_pretrained(tmp_path)
    ours = load_quietly(BertForSequenceClassification, tmp_path)
    assert ours.problem_type(torch.tensor([1, 2])) == "regression"
    check_sequence_classification(ours, theirs, torch.randn(3, 3))
    with pytest.raises(ValueError, match="single_label_classification' needs num_labels > 1"):
        BertForSequenceClassification(BertConfig(**TINY, extra={"num_labels": 1,
                                                                 "problem_type": "single_label_classification"}))
    with pytest.raises(ValueError, match="'problem_type' is 'ranking'"):
        BertForSequenceClassification(BertConfig(**TINY, extra={"problem_type": "ranking"}))


def test_num_labels_and_id2label_follow_transformers_rules(tmp_path, hf):
    assert BertForSequenceClassification(BertConfig(**TINY)).id2label == {0: "LABEL_0", 1: "LABEL_1"}
    theirs = hf_twin(hf, "BertForSequenceClassification", id2label={0: "neg", 1: "pos"})
    theirs.save_pretrained(tmp_path)
    # num_labels that agrees with id2label keeps the names; one that disagrees renames, as transformers does
    assert BertForSequenceClassification.from_pretrained(tmp_path, num_labels=2).id2label == {0: "neg", 1: "pos"}
    ref = hf.BertForSequenceClassification.from_pretrained(tmp_path, num_labels=3, ignore_mismatched_sizes=True)
    with pytest.warns(UserWarning):
        ours = BertForSequenceClassification.from_pretrained(tmp_path, num_labels=3, ignore_mismatched_sizes=True)
    assert ours.id2label == ref.config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert ours.label2id == ref.config.label2id
    assert "num_labels" not in ours.config.extra
    with pytest.raises(ValueError, match="'id2label' must have keys 0..1"):
        BertForSequenceClassification(BertConfig(**TINY, extra={"id2label": {"0": "a", "2": "b"}}))


def test_classifier_dropout_from_config():
    assert BertForSequenceClassification(BertConfig(**TINY, extra={"classifier_dropout": 0.3})).dropout.p == 0.3
    assert BertForTokenClassification(BertConfig(**TINY, extra={"classifier_dropout": None})).dropout.p == 0.1
    assert BertForMultipleChoice(BertConfig(**TINY, hidden_dropout_prob=0.2)).dropout.p == 0.2


# --- multiple choice ---------------------------------------------------------------------------

def choices(B=2, C=4, T=10):
    """input_ids etc. (B, C, T): each choice a two-segment sequence, some padded."""
    flat = batch(B * C, T, seed=3)
    flat["attention_mask"][::3, 7:] = 0
    flat["input_ids"][::3, 7:] = 0
    return {k: v.view(B, C, T) for k, v in flat.items()}


def check_multiple_choice(ours, theirs):
    inputs = choices()
    labels = torch.tensor([3, 1])
    a, b = run_both(ours, theirs, **inputs, labels=labels, output_hidden_states=True)
    assert a.logits.shape == (2, 4)
    assert_close(a.logits, b.logits)
    assert abs(a.loss.item() - b.loss.item()) < TOL
    assert len(a.hidden_states) == 3 and a.hidden_states[-1].shape == (8, 10, 64)
    real = inputs["attention_mask"].view(8, 10).bool()
    assert_close(a.hidden_states[-1], b.hidden_states[-1], real)


def test_multiple_choice_both_ways(tmp_path, hf):
    theirs = hf_twin(hf, "BertForMultipleChoice")
    theirs.save_pretrained(tmp_path / "hf")
    check_multiple_choice(load_quietly(BertForMultipleChoice, tmp_path / "hf"), theirs)
    ours = ours_twin(BertForMultipleChoice)
    ours.save_pretrained(tmp_path / "ours")
    theirs = hf.BertForMultipleChoice.from_pretrained(tmp_path / "ours", attn_implementation="eager")
    check_multiple_choice(ours, theirs.eval())


# --- token classification ----------------------------------------------------------------------

def check_token_classification(ours, theirs):
    inputs = batch()
    real = inputs["attention_mask"].bool()
    labels = torch.randint(0, 5, (3, 12), generator=torch.Generator().manual_seed(4))
    labels[~real] = -100  # padding
    labels[:, 0] = -100  # [CLS]
    labels[0, 3:5] = -100  # continuation pieces
    a, b = run_both(ours, theirs, **inputs, labels=labels)
    assert a.logits.shape == (3, 12, 5)
    assert_close(a.logits, b.logits, real)
    assert abs(a.loss.item() - b.loss.item()) < TOL
    keep = labels != -100
    ref = torch.nn.functional.cross_entropy(b.logits[keep], labels[keep])
    assert abs(a.loss.item() - ref.item()) < TOL


def test_token_classification_both_ways_without_a_pooler(tmp_path, hf):
    theirs = hf_twin(hf, "BertForTokenClassification", num_labels=5)
    theirs.save_pretrained(tmp_path / "hf")
    ours = load_quietly(BertForTokenClassification, tmp_path / "hf")
    assert ours.bert.pooler is None and not any("pooler" in k for k in ours.state_dict())
    assert set(ours.state_dict()) == set(theirs.state_dict())
    check_token_classification(ours, theirs)
    ours = ours_twin(BertForTokenClassification, num_labels=5)
    ours.save_pretrained(tmp_path / "ours")
    theirs = hf.BertForTokenClassification.from_pretrained(tmp_path / "ours", attn_implementation="eager")
    assert theirs.config.id2label == {i: f"LABEL_{i}" for i in range(5)}
    check_token_classification(ours, theirs.eval())


def test_checkpoint_with_a_pooler_loads_into_token_classification_with_a_warning(tmp_path):
    source = ours_twin(BertForSequenceClassification, id2label=NAMES)
    source.save_pretrained(tmp_path)
    with pytest.warns(UserWarning) as record:
        m = BertForTokenClassification.from_pretrained(tmp_path)
    messages = [str(w.message) for w in record]
    assert len(messages) == 1, messages
    assert "ignored 2 checkpoint tensors" in messages[0] and "bert.pooler.dense.weight" in messages[0]
    assert m.id2label == NAMES and torch.equal(m.classifier.weight, source.classifier.weight)


# --- question answering ------------------------------------------------------------------------

def check_question_answering(ours, theirs):
    inputs = batch()
    real = inputs["attention_mask"].bool()
    a, b = run_both(ours, theirs, **inputs)
    assert a.start_logits.shape == a.end_logits.shape == (3, 12)
    assert_close(a.start_logits, b.start_logits, real)
    assert_close(a.end_logits, b.end_logits, real)
    for start, end in (([1, 4, 2], [3, 6, 5]),
                       ([1, 40, 2], [3, 50, 5]),  # an answer beyond T: clamped to T and ignored
                       ([1, 12, -3], [3, 12, 0])):  # T itself is ignored; a negative one clamps to 0
        start, end = torch.tensor(start), torch.tensor(end)
        a, b = run_both(ours, theirs, **inputs, start_positions=start, end_positions=end)
        assert abs(a.loss.item() - b.loss.item()) < TOL
    s, e = b.start_logits[[0, 2]], b.end_logits[[0, 2]]
    ref = (torch.nn.functional.cross_entropy(s, torch.tensor([1, 2]))
           + torch.nn.functional.cross_entropy(e, torch.tensor([3, 5]))) / 2
    a = ours(**inputs, start_positions=torch.tensor([1, 40, 2]), end_positions=torch.tensor([3, 50, 5]))
    assert abs(a.loss.item() - ref.item()) < TOL


def test_question_answering_both_ways(tmp_path, hf):
    theirs = hf_twin(hf, "BertForQuestionAnswering")
    theirs.save_pretrained(tmp_path / "hf")
    ours = load_quietly(BertForQuestionAnswering, tmp_path / "hf")
    assert set(ours.state_dict()) == set(theirs.state_dict())
    check_question_answering(ours, theirs)
    ours = ours_twin(BertForQuestionAnswering)
    ours.save_pretrained(tmp_path / "ours")
    theirs = hf.BertForQuestionAnswering.from_pretrained(tmp_path / "ours", attn_implementation="eager")
    check_question_answering(ours, theirs.eval())


# --- real checkpoints and head sizes -----------------------------------------------------------

def test_encoder_only_minilm_into_sequence_classification_warns_once_listing_the_head(minilm_dir):
    with pytest.warns(UserWarning) as record:
        m = BertForSequenceClassification.from_pretrained(minilm_dir, num_labels=3)
    messages = [str(w.message) for w in record]
    assert len(messages) == 1, messages
    assert "2 weights not in the checkpoint were newly initialised" in messages[0]
    assert "classifier.weight" in messages[0] and "classifier.bias" in messages[0]
    assert m.classifier.weight.shape == (3, 384) and m.num_labels == 3
    assert m.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    enc = BertModel.from_pretrained(minilm_dir)
    assert torch.equal(m.bert.pooler.dense.weight, enc.pooler.dense.weight)
    assert torch.equal(m.bert.encoder.layer[5].output.dense.weight, enc.encoder.layer[5].output.dense.weight)


def test_head_size_mismatch_is_explained_and_can_be_reinitialised(tmp_path):
    source = ours_twin(BertForSequenceClassification, id2label=NAMES)
    source.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"classifier head has 3 labels and the model 5; pass "
                                              r"ignore_mismatched_sizes=True"):
        BertForSequenceClassification.from_pretrained(tmp_path, num_labels=5)
    with pytest.raises(CheckpointError, match="classifier head has 3 labels and the model 2"):
        BertForTokenClassification.from_pretrained(tmp_path, num_labels=2)
    with pytest.warns(UserWarning) as record:
        m = BertForSequenceClassification.from_pretrained(tmp_path, num_labels=5, ignore_mismatched_sizes=True)
    messages = [str(w.message) for w in record]
    assert len(messages) == 1, messages
    assert ("2 weights whose shape differs from the checkpoint were newly initialised" in messages[0]
            and "classifier.bias (checkpoint (3,), model (5,))" in messages[0]
            and "classifier.weight (checkpoint (3, 64), model (5, 64))" in messages[0])
    assert m.classifier.weight.shape == (5, 64) and m.num_labels == 5
    assert m.classifier.weight.std().item() < 0.05  # fresh normal(0, 0.02), not the perturbed checkpoint
    assert torch.equal(m.bert.pooler.dense.weight, source.bert.pooler.dense.weight)


# --- errors at the boundary --------------------------------------------------------------------

@pytest.fixture(scope="module")
def heads():
    torch.manual_seed(0)
    config = dict(**TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return (BertForSequenceClassification(BertConfig(**config, extra={"num_labels": 3})),
            BertForMultipleChoice(BertConfig(**config)),
            BertForTokenClassification(BertConfig(**config, extra={"num_labels": 5})),
            BertForQuestionAnswering(BertConfig(**config)))


def test_labels_of_the_wrong_shape_name_both_shapes(heads):
    seq, mc, tok, qa = heads
    inputs = batch()
    with pytest.raises(ValueError, match=r"labels has shape \(3, 1\) but must be \(3,\) for single label "
                                         r"classification with logits of shape \(3, 3\)"):
        seq(**inputs, labels=torch.tensor([[0], [1], [2]]))
    with pytest.raises(ValueError, match=r"labels has shape \(2,\) but must be \(3,\)"):
        seq(**inputs, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels has shape \(3, 11\) but must be \(3, 12\)"):
        tok(**inputs, labels=torch.zeros(3, 11, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels has shape \(2, 4\) but must be \(2,\) for logits of shape"):
        mc(**choices(), labels=torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"end_positions has shape \(3, 2\) but must be \(3,\)"):
        qa(**inputs, start_positions=torch.tensor([1, 2, 3]), end_positions=torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="both start_positions and end_positions"):
        qa(**inputs, start_positions=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"input_ids must be a \(batch, choices, length\) tensor, got shape "
                                         r"\(3, 12\)"):
        mc(**inputs)
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 4, 9\) but input_ids has \(2, 4, 10\)"):
        mc(**{**choices(), "attention_mask": torch.ones(2, 4, 9, dtype=torch.long)})


def test_labels_out_of_range_are_clear_errors(heads):
    seq, mc, tok, qa = heads
    inputs = batch()
    with pytest.raises(ValueError, match=r"labels holds 3, outside \[0, 3\) for 3 labels"):
        seq(**inputs, labels=torch.tensor([0, 3, 1]))
    with pytest.raises(ValueError, match=r"labels holds -2, outside \[0, 3\)"):
        seq(**inputs, labels=torch.tensor([0, -2, 1]))
    labels = torch.full((3, 12), -100)
    labels[1, 4] = 7
    with pytest.raises(ValueError, match=r"labels holds 7, outside \[0, 5\) for 5 labels"):
        tok(**inputs, labels=labels)
    with pytest.raises(ValueError, match=r"labels holds 4, outside \[0, 4\) for 4 choices"):
        mc(**choices(), labels=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="multi-label classification labels must be in"):
        seq(**inputs, labels=torch.tensor([[2.0, 0, 0], [0, 0, 0], [0, 0, 0]]))
    # valid ones still pass, with the mean cross-entropy of the logits (hand-computed: -log softmax at the label)
    labels = torch.tensor([0, 2, 1])
    out = seq(**inputs, labels=labels)
    logits = out.logits.detach().double().numpy()
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert out.loss.item() == pytest.approx(-log_softmax[np.arange(3), labels.numpy()].mean(), rel=1e-5)


@pytest.mark.parametrize("is_decoder", [False, True])
@pytest.mark.parametrize("cls", [BertForSequenceClassification, BertForMultipleChoice])
def test_sentence_heads_computing_the_last_layer_at_one_position_equal_every_position(cls, is_decoder):
    """Sentence heads run their last layer at [CLS] (or a causal model's last real token) alone; the logits,
    the loss and every gradient equal the model run at every position (hidden states asked for), with
    uneven padding on both the packed and the padded path."""
    torch.manual_seed(0)
    model = perturb(cls(BertConfig(**TINY, is_decoder=is_decoder, hidden_dropout_prob=0.0,
                                   attention_probs_dropout_prob=0.0, extra={"id2label": NAMES})), 0).train()
    inputs = batch(B=4, T=12)
    inputs["attention_mask"][1, 5:] = 0
    labels = torch.tensor([0, 2, 1, 1])
    if cls is BertForMultipleChoice:
        inputs = {k: v.view(2, 2, 12) for k, v in inputs.items()}
        labels = torch.tensor([1, 0])
    for threshold in (0.0, 2.0):  # packed real tokens, then the padded batch
        model.bert.unpad_threshold = threshold
        results = []
        for every_position in (False, True):
            model.zero_grad()
            out = model(**inputs, labels=labels, output_hidden_states=every_position)
            out.loss.backward()
            results.append((out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
        (fast, fast_grads), (full, full_grads) = results
        assert (fast - full).abs().max() < TOL
        for name, grad in full_grads.items():
            assert (fast_grads[name] - grad).abs().max() < TOL, name
    assert fast_grads["bert.encoder.layer.1.output.dense.weight"].abs().sum() > 0
