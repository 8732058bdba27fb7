"""SQuAD reading, the official normalisation and scores, and model-free span decoding."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from bertforge.data.squad import (QAExample, Span, best_spans, choose_answer, exact_match_score,
                                  f1_score, normalize_answer, null_score, read_squad,
                                  squad_evaluate)
from bertforge.errors import DataFormatError


# --------------------------------------------------------------------------------------------
# Reading


def squad_file(tmp_path, qas, context="The cat sat on the mat."):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"version": "v2.0", "data": [
        {"title": "T", "paragraphs": [{"context": context, "qas": qas}]}]}), encoding="utf-8")
    return path


def test_read_v2_with_impossible_and_misaligned_answers(tmp_path):
    path = squad_file(tmp_path, [
        {"id": "q1", "question": "Who sat?", "answers": [{"text": "The cat", "answer_start": 0}]},
        {"id": "q2", "question": "Who stood?", "answers": [], "is_impossible": True,
         "plausible_answers": [{"text": "cat", "answer_start": 4}]},
        {"id": "q3", "question": "Where?", "answers": [{"text": "the mat", "answer_start": 14}]},
    ])
    with pytest.warns(UserWarning, match=r"question q3: answer 'the mat' is not at context\[14:\]"):
        examples, skipped = read_squad(path)
    assert skipped == 1
    assert examples == [
        QAExample("q1", "Who sat?", "The cat sat on the mat.",
                  [{"text": "The cat", "answer_start": 0}], False),
        QAExample("q2", "Who stood?", "The cat sat on the mat.", [], True)]


def test_read_missing_field_is_named(tmp_path):
    path = squad_file(tmp_path, [{"id": "q9", "answers": []}])
    with pytest.raises(DataFormatError, match=r"squad\.json: question q9: missing field 'question"):
        read_squad(path)


def test_read_real_fixture_and_score_known_predictions(fetched):
    path = fetched("allennlp-fixtures") / "squad.json"
    examples, skipped = read_squad(path)
    assert (len(examples), skipped) == (5, 0)
    first = examples[0]
    assert first.id == "5733be284776f41900661182"
    assert first.answers == [{"text": "Saint Bernadette Soubirous", "answer_start": 515}]
    assert not any(e.is_impossible for e in examples)
    assert [len(e.answers) for e in examples] == [1, 3, 1, 1, 1]
    predictions = {
        # gold "Saint Bernadette Soubirous": EM 0; P 2/2, R 2/3 -> F1 4/5
        "5733be284776f41900661182": "Bernadette Soubirous",
        # gold "a golden statue of the Virgin Mary" (and the whole paragraph): equal once normalised
        "5733be284776f4190066117e": "The Golden Statue of the Virgin Mary.",
        # gold "1882": EM 0; P 1/2, R 1 -> F1 2/3
        "5733b1da4776f41900661068": "in 1882",
        # gold "Father Julius Nieuwl": overlap {julius}: P 1/2, R 1/3 -> F1 2/5
        "5733b1da4776f4190066106b": "Julius Nieuwland",
        # gold "an early wind tunnel": no answer given -> 0, 0
        "5733b1da4776f41900661067": "",
    }
    out = squad_evaluate(examples, predictions)
    assert out["total"] == 5 and "NoAns_total" not in out
    assert out["exact_match"] == pytest.approx(100 * 1 / 5)
    assert out["f1"] == pytest.approx(100 * (4 / 5 + 1 + 2 / 3 + 2 / 5 + 0) / 5)  # 57.33

    # the same questions plus two unanswerable ones (v2.0): "" is right for them, any text is wrong
    context = examples[2].context
    v2 = examples + [QAExample("na1", "Who built the moon?", context, [], True),
                     QAExample("na2", "Who built the sun?", context, [], True)]
    out = squad_evaluate(v2, {**predictions, "na1": "", "na2": "Notre Dame"})
    assert (out["total"], out["HasAns_total"], out["NoAns_total"]) == (7, 5, 2)
    assert (out["NoAns_exact"], out["NoAns_f1"]) == (50.0, 50.0)
    assert out["HasAns_f1"] == pytest.approx(100 * (4 / 5 + 1 + 2 / 3 + 2 / 5) / 5)
    assert out["exact_match"] == pytest.approx(100 * 2 / 7)
    assert out["f1"] == pytest.approx(100 * (4 / 5 + 1 + 2 / 3 + 2 / 5 + 1) / 7)


# --------------------------------------------------------------------------------------------
# Official normalisation and scores


@pytest.mark.parametrize("raw, normal", [
    ("The  Quick, Brown fox!", "quick brown fox"),
    ("an apple a day", "apple day"),
    ("theater", "theater"),  # articles only as whole words
    ("A-B", "ab"),  # punctuation goes first, so "a-b" is one word "ab"
    ("the.", ""),
    ("\u201cquoted\u201d", "\u201cquoted\u201d"),  # only ASCII punctuation is removed
    ("Café\tDU  monde", "café du monde"),
])
def test_normalize_answer(raw, normal):
    assert normalize_answer(raw) == normal


def test_exact_and_f1_hand_values():
    assert exact_match_score("The Denver Broncos!", "denver broncos") == 1.0
    assert exact_match_score("Broncos", "denver broncos") == 0.0
    # pred tokens cat sat on mat, gold cat on mat: P = 3/4, R = 1, F1 = 6/7
    assert f1_score("the cat sat on the mat", "cat on mat") == pytest.approx(6 / 7)
    # repeated tokens count once per match: overlap {x: 1, y: 1} -> P = R = 2/3
    assert f1_score("x x y", "x y y") == pytest.approx(2 / 3)
    assert f1_score("", "") == 1.0 and f1_score("", "x") == 0.0 and f1_score("dog", "cat") == 0.0


EXAMPLES = [
    QAExample("q1", "?", "c", [{"text": "Denver Broncos", "answer_start": 0},
                               {"text": "The Denver Broncos", "answer_start": 0}]),
    QAExample("q2", "?", "c", [{"text": "Saint Bernadette Soubirous", "answer_start": 0}]),
    QAExample("q3", "?", "c", [], True),
    QAExample("q4", "?", "c", [], True),
]
PREDICTIONS = {"q1": "denver broncos!", "q2": "Bernadette", "q3": "", "q4": "something"}


def test_squad_evaluate_v2_without_na_probs():
    # per question EM 1, 0, 1, 0 and F1 1, 0.5 (P 1, R 1/3), 1, 0
    out = squad_evaluate(EXAMPLES, PREDICTIONS)
    assert out == {"exact_match": 50.0, "f1": 62.5, "total": 4,
                   "HasAns_exact": 50.0, "HasAns_f1": 75.0, "HasAns_total": 2,
                   "NoAns_exact": 50.0, "NoAns_f1": 50.0, "NoAns_total": 2}


def test_squad_evaluate_thresholds():
    na = {"q1": 0.1, "q2": 0.7, "q3": 0.9, "q4": 0.8}
    out = squad_evaluate(EXAMPLES, PREDICTIONS, na_probs=na, na_prob_thresh=0.75)
    # q3, q4 are over 0.75, so predicted unanswerable: both right
    assert (out["exact_match"], out["f1"]) == (75.0, 87.5)
    # sweep from "all null" (2 right): q1 +1 -> 3 (0.1), q2 +0.5 -> 3.5 (0.7), q4 -1, q3 +0
    assert (out["best_f1"], out["best_f1_thresh"]) == (87.5, 0.7)
    assert (out["best_exact"], out["best_exact_thresh"]) == (75.0, 0.1)


def test_squad_evaluate_missing_prediction_scores_zero():
    with pytest.warns(UserWarning, match="1 questions have no prediction"):
        out = squad_evaluate(EXAMPLES[:2], {"q1": "Denver Broncos"})
    assert (out["exact_match"], out["f1"], out["total"]) == (50.0, 50.0, 2)


# --------------------------------------------------------------------------------------------
# Span decoding

# [CLS] q q [SEP] The cat sat down [SEP]; context "The cat sat down"
OFFSETS = [None, None, None, None, (0, 3), (4, 7), (8, 11), (12, 16), None]
START = np.array([5, 9, 0, 0, 1, 3, 0, 0, 9], dtype=np.float32)
END = np.array([5, 0, 9, 0, 0, 2, 4, 1, 9], dtype=np.float32)
CONTEXT = "The cat sat down"


def test_best_spans_hand_logits():
    spans = best_spans(START, END, OFFSETS, n_best=3)
    # cat..sat 3+4; The..sat 1+4 ties cat..cat 3+2 (ties in start, end order); question and
    # [SEP] tokens, though higher, are not context
    assert spans == [Span(4, 11, 7.0), Span(0, 11, 5.0), Span(4, 7, 5.0)]
    # at most 2 tokens: The..sat goes; sat..sat (0+4) beats The..cat (1+2)
    assert best_spans(START, END, OFFSETS, n_best=3, max_answer_length=2) == [
        Span(4, 11, 7.0), Span(4, 7, 5.0), Span(8, 11, 4.0)]
    assert len(best_spans(START, END, OFFSETS, n_best=100)) == 10  # all 4*5/2 end >= start pairs
    mask = np.array([0, 0, 0, 0, 1, 0, 1, 1, 0], dtype=bool)
    assert best_spans(START, END, OFFSETS, mask, n_best=1) == [Span(0, 11, 5.0)]


def test_null_score_and_choice():
    spans = best_spans(START, END, OFFSETS)
    null = null_score(START, END)
    assert null == 10.0
    assert choose_answer(CONTEXT, spans, null) == ("", 3.0)  # 10 - 7 > 0: no answer
    assert choose_answer(CONTEXT, spans, null, null_threshold=5.0) == ("cat sat", 3.0)
    assert choose_answer(CONTEXT, spans)[0] == "cat sat"  # v1.1: always answer


def test_best_spans_matches_brute_force():
    rng = np.random.default_rng(0)
    n = 24
    offsets = [None] * 4 + [(3 * i, 3 * i + 2) for i in range(n - 5)] + [None]
    start, end = rng.normal(size=n), rng.normal(size=n)
    pairs = itertools.product(range(4, n - 1), repeat=2)  # context tokens only
    brute = sorted(((start[s] + end[e], s, e) for s, e in pairs if s <= e < s + 5),
                   key=lambda t: -t[0])[:7]
    spans = best_spans(start, end, offsets, n_best=7, max_answer_length=5)
    assert [(sp.start_char, sp.end_char) for sp in spans] == [
        (offsets[s][0], offsets[e][1]) for _, s, e in brute]
    assert [sp.score for sp in spans] == pytest.approx([b[0] for b in brute])


def test_best_spans_rejects_bad_input():
    with pytest.raises(ValueError, match="do not match"):
        best_spans(START[:-1], END, OFFSETS)
    with pytest.raises(ValueError, match="mark only tokens that have offsets"):
        best_spans(START, END, OFFSETS, np.ones(9, dtype=bool))
