"""Count baselines of a held-out LM loss: the unigram and Witten-Bell bigram against hand computations, and
an objective's evaluation against a model that *is* the count model (ratio exactly 1, zero nats below)."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from bertforge.constants import IGNORE_INDEX
from bertforge.data.masking import SpecialIds
from bertforge.objectives import LeftToRight, MaskedLM, MaskingSettings
from bertforge.objectives.count_lm import CountLM

SP = SpecialIds(cls=2, sep=3, mask=4, pad=0, vocab_size=12)


def rows(sequences, width=None):
    width = width or max(map(len, sequences))
    tokens = np.zeros((len(sequences), width), dtype=np.uint16)
    for r, s in enumerate(sequences):
        tokens[r, :len(s)] = s
    lengths = np.array([len(s) for s in sequences], dtype=np.int16)
    return {"tokens": tokens, "lengths": lengths, "b_start": lengths.copy(),
            "is_random_next": np.zeros(len(sequences), np.uint8)}


TRAIN = [[2, 5, 6, 5, 3], [2, 5, 7, 3]]  # counts: 2:2, 3:2, 5:3, 6:1, 7:1 (9 pieces), padding never counted


def test_unigram_is_add_one_over_the_vocabulary():
    data = rows(TRAIN, width=8)
    lm = CountLM.from_rows([(data["tokens"], data["lengths"])], 12)
    assert lm.unigram_nll(np.array([5])) == pytest.approx(-math.log((3 + 1) / (9 + 12)))
    assert lm.unigram_nll(np.array([9, 5])) == pytest.approx(-math.log(1 / 21) - math.log(4 / 21))


def test_bigram_is_witten_bell_interpolated_with_the_unigram():
    data = rows(TRAIN, width=8)
    lm = CountLM.from_rows([(data["tokens"], data["lengths"])], 12)
    # after 5: 5->6, 5->3, 5->7 (c(5)=3, T(5)=3); after 2: 2->5 twice (c=2, T=1); nothing after 3 (row ends)
    p_uni = lambda w: (lm.unigram[w] + 1) / (9 + 12)  # noqa: E731
    assert lm.bigram_nll(np.array([5]), np.array([6])) == pytest.approx(-math.log((1 + 3 * p_uni(6)) / 6))
    assert lm.bigram_nll(np.array([2]), np.array([5])) == pytest.approx(-math.log((2 + 1 * p_uni(5)) / 3))
    assert lm.bigram_nll(np.array([2]), np.array([6])) == pytest.approx(-math.log(p_uni(6) / 3))
    assert lm.bigram_nll(np.array([3]), np.array([6])) == pytest.approx(-math.log(p_uni(6)))  # unseen context
    assert 3 * 12 + 5 not in set(lm.keys.tolist())  # no pair across rows ([SEP] of row 0 -> [CLS] of row 1)


class CountModel(nn.Module):
    """A 'model' whose logits are the count model's log-probabilities: unigram everywhere, or (causal) the
    bigram after each input piece."""

    def __init__(self, lm: CountLM, bigram: bool):
        super().__init__()
        self.lm, self.bigram = lm, bigram

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None, **_):
        V = self.lm.vocab_size
        if self.bigram:
            ids = input_ids.numpy()
            logp = np.stack([[-np.array([self.lm.bigram_nll([v], [w]) for w in range(V)]) for v in row] for row in ids])
            real = labels[:, 1:] != IGNORE_INDEX  # position t predicts t+1, scored where t+1 is real (as
            logits = torch.tensor(logp[:, :-1])[real]  # BertLMHeadModel returns them)
            targets = labels[:, 1:][real]
        else:  # a masked LM scores the chosen positions alone, as BertForPreTraining does
            targets = labels[labels != IGNORE_INDEX]
            logits = torch.tensor(self.lm.log_p_unigram).expand(len(targets), V)
        loss = nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=IGNORE_INDEX)
        return SimpleNamespace(mlm_loss=loss, loss=loss, logits=logits, prediction_logits=logits)


HELD_OUT = [[2, 5, 6, 7, 5, 3], [2, 7, 5, 9, 3]]


@pytest.mark.parametrize("objective", ["mlm", "ltr"])
def test_a_model_that_is_the_count_model_sits_exactly_on_its_baseline(objective):
    train = rows(TRAIN * 20, width=8)
    lm = CountLM.from_rows([(train["tokens"], train["lengths"])], 12)
    if objective == "mlm":
        obj = MaskedLM(SP, seed=0, masking=MaskingSettings(masked_lm_prob=0.5))
    else:
        obj = LeftToRight(SP, seed=0)
    held = rows(HELD_OUT)
    batches = [obj.make_batch(held, np.arange(2), epoch=-1)]
    obj.count_lm = lm
    result = obj.evaluate(CountModel(lm, bigram=objective == "ltr"), batches, torch.device("cpu"))
    if objective == "mlm":
        assert result["eval_perplexity_vs_unigram"] == pytest.approx(1.0, abs=1e-6)
        assert result["eval_nats_below_unigram"] == pytest.approx(0.0, abs=1e-6)
        targets = batches[0]["labels"][batches[0]["labels"] != IGNORE_INDEX].numpy()
        assert result["eval_unigram_perplexity"] == pytest.approx(math.exp(lm.unigram_nll(targets) / len(targets)))
    else:
        assert result["eval_nats_below_bigram"] == pytest.approx(0.0, abs=1e-6)
        ids = batches[0]["input_ids"].numpy()
        previous, targets = ids[:, :-1][ids[:, 1:] != 0], ids[:, 1:][ids[:, 1:] != 0]  # every real next piece
        assert result["eval_bigram_perplexity"] == pytest.approx(
            math.exp(lm.bigram_nll(previous, targets) / len(targets)))
        assert result["eval_unigram_perplexity"] == pytest.approx(math.exp(lm.unigram_nll(targets) / len(targets)))


def test_no_count_model_no_baseline_figures():
    obj = MaskedLM(SP, seed=0, masking=MaskingSettings(masked_lm_prob=0.5))
    lm = CountLM.from_rows([(rows(TRAIN)["tokens"], rows(TRAIN)["lengths"])], 12)
    batches = [obj.make_batch(rows(HELD_OUT), np.arange(2), epoch=-1)]
    result = obj.evaluate(CountModel(lm, bigram=False), batches, torch.device("cpu"))
    assert "eval_perplexity" in result and not any("unigram" in k for k in result)
