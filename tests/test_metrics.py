"""Metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bertforge.metrics import (accuracy, classification_metrics, entity_metrics, f1,
                               matthews_corrcoef, pearson, regression_metrics,
                               save_confusion_matrix, spearman)

# 1 is positive: TP = 2 (0, 1), FN = 2 (2, 3), FP = 1 (5), TN = 1 (4)
Y_TRUE = [1, 1, 1, 1, 0, 0]
Y_PRED = [1, 1, 0, 0, 0, 1]


def test_accuracy():
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(3 / 6)
    with pytest.raises(ValueError, match="4 items but y_pred has 3"):
        accuracy([1, 1, 1, 1], [1, 1, 1])


def test_f1_binary_and_macro():
    # positive 1: P = 2/3, R = 2/4, F1 = 2PR/(P+R) = 4/7; positive 0: P = 1/3, R = 1/2, F1 = 2/5
    assert f1(Y_TRUE, Y_PRED, positive=1) == pytest.approx(4 / 7)
    assert f1(Y_TRUE, Y_PRED, positive=0) == pytest.approx(2 / 5)
    assert f1(Y_TRUE, Y_PRED) == pytest.approx((4 / 7 + 2 / 5) / 2)
    assert f1(["a", "a"], ["b", "b"], positive="b") == 0.0  # no true positives, no warning


def test_matthews_corrcoef_from_a_confusion_matrix():
    # TP = 3, FN = 1, FP = 1, TN = 5: (3*5 - 1*1) / sqrt(4 * 4 * 6 * 6) = 14 / 24
    y_true = [1] * 4 + [0] * 6
    y_pred = [1, 1, 1, 0] + [1, 0, 0, 0, 0, 0]
    assert matthews_corrcoef(y_true, y_pred) == pytest.approx(7 / 12)
    assert matthews_corrcoef(y_true, y_true) == pytest.approx(1.0)
    assert matthews_corrcoef(y_true, [0] * 10) == 0.0  # undefined -> 0, as GLUE reports it


def test_pearson_spearman_and_regression_metrics():
    # deviations (-1, 0, 1) and (-7/3, -1/3, 8/3): r = 5 / sqrt(2 * 114/9) = 15 / sqrt(228)
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(15 / math.sqrt(228))
    assert spearman([1, 2, 3], [2, 4, 7]) == pytest.approx(1.0)
    # ties get average ranks: (1, 2.5, 2.5, 4) against (1, 3, 2, 4) -> r = 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / math.sqrt(10))
    out = regression_metrics([1, 2, 3], [2, 4, 7])
    assert out == pytest.approx({"pearson": 15 / math.sqrt(228), "spearman": 1.0, "mse": 7.0})


def test_classification_metrics():
    out = classification_metrics(Y_TRUE, Y_PRED, labels=[0, 1], positive=1)
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["f1"] == pytest.approx(4 / 7)
    assert out["macro_f1"] == pytest.approx((4 / 7 + 2 / 5) / 2)
    # (TP*TN - FP*FN) / sqrt(3 * 4 * 2 * 3) = 0
    assert out["mcc"] == pytest.approx(0.0)
    assert out["per_label"][1] == pytest.approx({"precision": 2 / 3, "recall": 0.5,
                                                 "f1": 4 / 7, "support": 4})
    with pytest.raises(ValueError, match="not in"):
        classification_metrics(Y_TRUE, Y_PRED, labels=[1])


def test_entity_metrics_bio():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "O"]]
    out = entity_metrics(true, pred)  # 2 of 3 entities found, none spurious
    assert (out["precision"], out["recall"]) == (1.0, pytest.approx(2 / 3))
    assert out["f1"] == pytest.approx(0.8)
    assert out["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert out["per_type"]["PER"]["f1"] == 1.0
    # a wrong boundary is a miss and a false alarm
    assert entity_metrics([["B-PER", "I-PER"]], [["B-PER", "B-PER"]])["f1"] == 0.0


def test_entity_metrics_iobes_is_strict():
    true = [["S-PER", "O", "B-LOC", "E-LOC"]]
    pred = [["S-PER", "O", "B-LOC", "I-LOC"]]  # the LOC never ends with E-
    assert entity_metrics(true, pred, scheme="BIO")["f1"] == 1.0  # conlleval-style chunking
    strict = entity_metrics(true, pred, scheme="IOBES")  # P = 1/1, R = 1/2
    assert (strict["precision"], strict["recall"]) == (1.0, 0.5)
    assert strict["f1"] == pytest.approx(2 / 3)
    assert strict["per_type"]["LOC"]["recall"] == 0.0


def test_entity_metrics_edge_cases():
    assert entity_metrics([["O", "O"]], [["O", "O"]]) == {"precision": 0.0, "recall": 0.0,
                                                          "f1": 0.0, "per_type": {}}
    with pytest.raises(ValueError, match="sentence 0: 2 true tags but 1 predicted"):
        entity_metrics([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="unknown tag scheme"):
        entity_metrics([["O"]], [["O"]], scheme="IOB1")


def test_save_confusion_matrix(tmp_path):
    path = tmp_path / "plots" / "cm.png"
    labels = ["entailment", "neutral", "contradiction"]
    y_true = ["entailment", "entailment", "neutral", "contradiction", "contradiction"]
    y_pred = ["entailment", "neutral", "neutral", "contradiction", "entailment"]
    matrix = save_confusion_matrix(y_true, y_pred, labels, path)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])  # rows: true
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    save_confusion_matrix(y_true, y_true, labels, path)  # overwrite in place
    assert [p.name for p in path.parent.iterdir()] == ["cm.png"]  # no temp file left
    with pytest.raises(ValueError, match="not in"):
        save_confusion_matrix(["x"], ["y"], ["x"], path)
