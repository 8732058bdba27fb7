"""XLNet fine-tuning heads: same logits, losses, weight names and label maps as transformers, both ways;
the summary reads the last real token of a right-padded row."""

import pytest
import torch

from bertforge.model.xlnet import (XLNetConfig, XLNetForMultipleChoice, XLNetForQuestionAnsweringSimple,
                                   XLNetForSequenceClassification, XLNetForTokenClassification)
from parity import perturb

TOL = 1e-5
TINY = dict(vocab_size=100, d_model=32, n_layer=2, n_head=4, d_inner=64)
NAMES = {0: "neg", 1: "neu", 2: "pos"}
SeqCls = XLNetForSequenceClassification


def twins(hf, tmp_path, direction, name, ours_cls, hf_fields=None, ours_fields=None):
    if direction == "hf->ours":
        torch.manual_seed(0)
        theirs = perturb(getattr(hf, name)(hf.XLNetConfig(**TINY, **(hf_fields or {}))), 0)
        theirs.save_pretrained(tmp_path)
        ours = ours_cls.from_pretrained(tmp_path).eval()
    else:
        torch.manual_seed(1)
        ours = perturb(ours_cls(XLNetConfig.from_dict({**TINY, **(ours_fields or {})})), 1)
        ours.save_pretrained(tmp_path)
        theirs = getattr(hf, name).from_pretrained(tmp_path).eval()
    return theirs, ours


def batch(B=3, T=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 100, (B, T), generator=g)
    types = torch.zeros_like(ids)
    types[:, T // 2:] = 1
    return dict(input_ids=ids, token_type_ids=types, attention_mask=torch.ones_like(ids)), g


def diff(a, b):
    return (a - b).abs().max().item()


DIRECTIONS = ["hf->ours", "ours->hf"]


@pytest.mark.parametrize("direction, summary", [("hf->ours", "last"), ("hf->ours", "first"), ("hf->ours", "mean"),
                                                ("ours->hf", "last")])
def test_sequence_classification(hf, tmp_path, direction, summary):
    theirs, ours = twins(hf, tmp_path, direction, "XLNetForSequenceClassification", SeqCls,
                         dict(id2label=NAMES, summary_type=summary),
                         dict(id2label={str(k): v for k, v in NAMES.items()}, summary_type=summary))
    inputs, g = batch()
    labels = torch.randint(0, 3, (3,), generator=g)
    with torch.no_grad():
        a, b = theirs(**inputs, labels=labels), ours(**inputs, labels=labels)
    assert b.logits.shape == (3, 3) and diff(a.logits, b.logits) < TOL
    assert abs(a.loss.item() - b.loss.item()) < TOL
    assert ours.id2label == NAMES and theirs.config.id2label == NAMES
    assert ours.label2id == {v: k for k, v in NAMES.items()}


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_regression(hf, tmp_path, direction):
    theirs, ours = twins(hf, tmp_path, direction, "XLNetForSequenceClassification", SeqCls,
                         dict(num_labels=1), dict(num_labels=1))
    inputs, g = batch()
    labels = torch.rand(3, generator=g) * 5
    with torch.no_grad():
        a, b = theirs(**inputs, labels=labels), ours(**inputs, labels=labels)
    assert ours.num_labels == 1 and b.logits.shape == (3, 1)
    assert diff(a.logits, b.logits) < TOL and abs(a.loss.item() - b.loss.item()) < TOL


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_token_classification(hf, tmp_path, direction):
    theirs, ours = twins(hf, tmp_path, direction, "XLNetForTokenClassification", XLNetForTokenClassification,
                         dict(num_labels=5), dict(num_labels=5))
    inputs, g = batch()
    labels = torch.randint(0, 5, (3, 10), generator=g)
    labels[:, 0] = -100
    with torch.no_grad():
        a, b = theirs(**inputs, labels=labels), ours(**inputs, labels=labels)
    assert b.logits.shape == (3, 10, 5)
    assert diff(a.logits, b.logits) < TOL and abs(a.loss.item() - b.loss.item()) < TOL


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_multiple_choice(hf, tmp_path, direction):
    theirs, ours = twins(hf, tmp_path, direction, "XLNetForMultipleChoice", XLNetForMultipleChoice)
    flat, g = batch(B=6)
    inputs = {k: v.view(2, 3, 10) for k, v in flat.items()}
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        a, b = theirs(**inputs, labels=labels), ours(**inputs, labels=labels)
    assert b.logits.shape == (2, 3)
    assert diff(a.logits, b.logits) < TOL and abs(a.loss.item() - b.loss.item()) < TOL


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_question_answering(hf, tmp_path, direction):
    theirs, ours = twins(hf, tmp_path, direction, "XLNetForQuestionAnsweringSimple",
                         XLNetForQuestionAnsweringSimple)
    inputs, _ = batch()
    start, end = torch.tensor([1, 4, 12]), torch.tensor([3, 6, 12])  # the last is cut off: no loss
    with torch.no_grad():
        a = theirs(**inputs, start_positions=start, end_positions=end)
        b = ours(**inputs, start_positions=start, end_positions=end)
    assert diff(a.start_logits, b.start_logits) < TOL and diff(a.end_logits, b.end_logits) < TOL
    assert abs(a.loss.item() - b.loss.item()) < TOL


@pytest.mark.parametrize("summary", ["last", "mean"])
def test_right_padding_summarises_the_real_tokens(hf, tmp_path, summary):
    """A right-padded row scores as transformers scores the same row without its padding."""
    theirs, ours = twins(hf, tmp_path, "hf->ours", "XLNetForSequenceClassification",
                         XLNetForSequenceClassification, dict(num_labels=2, summary_type=summary))
    inputs, _ = batch()
    inputs["attention_mask"][1, 6:] = 0
    inputs["input_ids"][1, 6:] = 5
    with torch.no_grad():
        ours_logits = ours(**inputs).logits
        alone = theirs(**{k: v[1:2, :6] for k, v in inputs.items()}).logits
        full = theirs(**{k: v[::2] for k, v in inputs.items()}).logits
    assert diff(ours_logits[1:2], alone) < TOL
    assert diff(ours_logits[::2], full) < TOL


def test_head_size_mismatch(hf, tmp_path):
    theirs, _ = twins(hf, tmp_path, "hf->ours", "XLNetForSequenceClassification", SeqCls,
                      dict(id2label=NAMES))
    from bertforge.errors import CheckpointError
    with pytest.raises(CheckpointError, match="logits_proj.weight") as e:
        XLNetForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
    assert e.value.mismatched["logits_proj.weight"] == ((3, 32), (2, 32))
    with pytest.warns(UserWarning, match="logits_proj"):
        model = SeqCls.from_pretrained(tmp_path, num_labels=2, ignore_mismatched_sizes=True)
    assert model.id2label == {0: "LABEL_0", 1: "LABEL_1"}
