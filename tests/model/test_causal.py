"""The left-to-right BERT ("LTR & No NSP"): same logits and loss as transformers' BertLMHeadModel with
is_decoder=True, both load directions; no position sees a later one; sentence heads read the last token."""

import pytest
import torch

from bertforge.config import BertConfig
from bertforge.errors import ConfigError
from bertforge.model import BertForSequenceClassification, BertForTokenClassification, BertLMHeadModel
from parity import perturb
from test_heads import TINY, assert_close, batch


def lm_inputs():
    inputs = batch()
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    return inputs, labels


@pytest.mark.parametrize("direction", ["hf_to_ours", "ours_to_hf"])
def test_logits_and_loss_equal_transformers(hf, tmp_path, direction):
    inputs, labels = lm_inputs()
    real = inputs["attention_mask"].bool()
    if direction == "hf_to_ours":
        torch.manual_seed(0)
        theirs = perturb(hf.BertLMHeadModel(hf.BertConfig(**TINY, is_decoder=True, attn_implementation="eager")), 0)
        theirs.save_pretrained(tmp_path)
        ours = BertLMHeadModel.from_pretrained(tmp_path).eval()
    else:
        torch.manual_seed(1)
        ours = perturb(BertLMHeadModel(BertConfig(**TINY, is_decoder=True)), 1)
        ours.save_pretrained(tmp_path)
        theirs = hf.BertLMHeadModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
        assert theirs.config.is_decoder
    with torch.no_grad():
        a, b = ours(**inputs), theirs(**inputs)
        assert_close(a.logits, b.logits, real)
        la, lb = ours(**inputs, labels=labels), theirs(**inputs, labels=labels)
    assert abs(la.loss.item() - lb.loss.item()) < 1e-5
    # with labels only the scored positions are projected: they are transformers' rows, in order
    scored = labels[:, 1:] != -100
    assert_close(la.logits, b.logits[:, :-1][scored])


def test_no_position_sees_a_later_one():
    torch.manual_seed(0)
    model = perturb(BertLMHeadModel(BertConfig(**TINY, is_decoder=True)), 0)
    ids = torch.randint(5, 100, (2, 10))
    with torch.no_grad():
        base = model(ids).logits
        for t in range(10):
            changed = ids.clone()
            changed[:, t] = (changed[:, t] + 1 - 5) % 95 + 5  # another real token at position t
            out = model(changed).logits
            assert torch.equal(out[:, :t], base[:, :t]), f"a position before {t} saw token {t}"
            assert not torch.allclose(out[:, t:], base[:, t:])


def test_padding_does_not_change_real_positions():
    torch.manual_seed(0)
    model = perturb(BertLMHeadModel(BertConfig(**TINY, is_decoder=True)), 0)
    ids = torch.randint(5, 100, (1, 7))
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, 7), torch.zeros(1, 3)], 1).long()
    with torch.no_grad():
        assert_close(model(ids).logits, model(padded, attention_mask=mask).logits[:, :7])


def test_sentence_heads_of_a_causal_model_read_the_last_real_token():
    torch.manual_seed(0)
    clf = perturb(BertForSequenceClassification(BertConfig(**TINY, is_decoder=True, extra={"num_labels": 3})), 0)
    ids = torch.randint(5, 100, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], 1).long()
    with torch.no_grad():
        alone, batched = clf(ids).logits, clf(padded, attention_mask=mask).logits
        assert_close(alone, batched)
        changed = ids.clone()
        changed[0, 5] += 1  # the last token decides: every other position is before it
        assert not torch.allclose(clf(changed).logits, alone)
    tagger = BertForTokenClassification(BertConfig(**TINY, is_decoder=True, extra={"num_labels": 2}))
    assert tagger(ids).logits.shape == (1, 6, 2)


def test_an_lm_head_model_must_be_causal():
    with pytest.raises(ConfigError, match="is_decoder"):
        BertLMHeadModel(BertConfig(**TINY))
