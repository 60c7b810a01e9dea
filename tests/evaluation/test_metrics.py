"""Metrics against scikit-learn and hand computation."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, mean_absolute_error

from contrastive_mer.evaluation.metrics import classification_metrics, multilabel_metrics, regression_metrics


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = 6
    y_true = rng.integers(0, c, 300)
    y_pred = np.where(rng.random(300) < 0.4, y_true, rng.integers(0, c, 300))
    if seed % 2:  # a class only in the predictions: UAR must ignore it, macro F1 must count it
        y_true[y_true == 5] = 0
    m = classification_metrics(y_true, y_pred, num_classes=c)
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-6)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=1e-6)
    assert m["f1_macro"] == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-6)
    assert m["f1_weighted"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"), abs=1e-6)
    np.testing.assert_array_equal(m["confusion_matrix"], confusion_matrix(y_true, y_pred, labels=range(c)))


def test_classification_metrics_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([0, 1, 3], [0, 1, 1], num_classes=3)


def test_multilabel_weighted_accuracy_by_hand() -> None:
    # label 0: P=3, N=5, TP=2, TN=4 -> WA = (2*5/3 + 4) / 10
    y_true = np.array([[1, 0], [1, 0], [1, 1], [0, 1], [0, 1], [0, 0], [0, 0], [0, 1]], dtype=float)
    y_pred = np.array([[1, 0], [1, 1], [0, 1], [1, 0], [0, 1], [0, 0], [0, 0], [0, 0]], dtype=float)
    m = multilabel_metrics(y_true, y_pred)
    wa0 = (2 * 5 / 3 + 4) / (2 * 5)
    # label 1: P=4 (rows 2,3,4,7), N=4, TP=2 (rows 2,4), TN=3 (rows 0,5,6)
    wa1 = (2 * 4 / 4 + 3) / (2 * 4)
    np.testing.assert_allclose(m["weighted_accuracy"], [wa0, wa1], atol=1e-6)
    assert m["mean_weighted_accuracy"] == pytest.approx((wa0 + wa1) / 2, abs=1e-6)
    expected_f1 = [f1_score(y_true[:, j], y_pred[:, j], average="weighted") for j in range(2)]
    np.testing.assert_allclose(m["f1_weighted"], expected_f1, atol=1e-6)
    assert m["mean_f1_weighted"] == pytest.approx(np.mean(expected_f1), abs=1e-6)


def test_multilabel_intensities_and_probabilities() -> None:
    rng = np.random.default_rng(0)
    intensity = np.where(rng.random((200, 6)) < 0.3, rng.choice([0.33, 1.0, 2.66, 3.0], (200, 6)), 0.0)
    proba = rng.random((200, 6))
    m = multilabel_metrics(intensity, proba)
    binary_true, binary_pred = (intensity > 0).astype(int), (proba >= 0.5).astype(int)
    expected = [balanced_accuracy_score(binary_true[:, j], binary_pred[:, j]) for j in range(6)]
    np.testing.assert_allclose(m["weighted_accuracy"], expected, atol=1e-6)


def test_regression_metrics_by_hand() -> None:
    y_true = np.array([-3.0, -1.4, 0.0, 0.6, 2.5, 1.0, -0.2])
    y_pred = np.array([-2.6, 0.3, 1.2, 0.4, 3.9, -0.5, -0.5])
    m = regression_metrics(y_true, y_pred)
    assert m["mae"] == pytest.approx(mean_absolute_error(y_true, y_pred), abs=1e-6)
    assert m["pearson_r"] == pytest.approx(np.corrcoef(y_true, y_pred)[0, 1], abs=1e-6)
    # non-zero targets: 6 of them; signs agree on -3/-2.6, 0.6/0.4, 2.5/3.9, -0.2/-0.5 -> 4/6
    assert m["acc2"] == pytest.approx(4 / 6, abs=1e-6)
    # rounded + clipped: true [-3,-1,0,1,2,1,-0]; pred [-3,0,1,0,3,-0,-0] (3.9 -> 3) -> agree at 0 and 6 -> 2/7
    assert m["acc7"] == pytest.approx(2 / 7, abs=1e-6)
    nz = y_true != 0
    assert m["f1_acc2"] == pytest.approx(f1_score(y_true[nz] > 0, y_pred[nz] > 0, average="weighted"), abs=1e-6)
