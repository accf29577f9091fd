"""Softmax and the validation metrics (pipelines/numerics.py)."""

import numpy as np
import pytest

from pipelines.numerics import balanced_accuracy, chance_accuracy, log_softmax, softmax


def test_softmax_rows_sum_to_one_without_overflow():
    logits = np.array([[1000.0, 0.0], [0.0, 0.0]])
    probs = softmax(logits)
    assert probs.sum(axis=1) == pytest.approx([1, 1])
    assert probs[0, 0] == pytest.approx(1) and probs[1] == pytest.approx([0.5, 0.5])
    assert np.exp(log_softmax(logits)) == pytest.approx(probs)


def test_majority_answer_on_an_imbalanced_set():
    # The chest X-ray validation split: 231 NORMAL (0), 387 PNEUMONIA (1).
    labels = np.array([0] * 231 + [1] * 387)
    always_pneumonia = np.ones_like(labels)
    assert (always_pneumonia == labels).mean() == pytest.approx(0.626, abs=1e-3)
    assert chance_accuracy(labels) == pytest.approx(387 / 618)
    assert balanced_accuracy(always_pneumonia, labels) == pytest.approx(0.5)


def test_balanced_accuracy_is_the_mean_recall():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 0, 2, 2])
    # recalls: class 0 3/4, class 1 1/2, class 2 2/2
    assert balanced_accuracy(predicted, labels) == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert balanced_accuracy(labels, labels) == 1.0
    # A class absent from the labels does not count (its recall is undefined).
    assert balanced_accuracy(np.array([0, 2]), np.array([0, 1])) == pytest.approx(0.5)


def test_imbalance_is_judged_against_one_over_the_classes():
    from pipelines.numerics import is_imbalanced

    assert is_imbalanced([231, 387])  # chest X-rays: 0.626 against 0.5
    assert not is_imbalanced([128, 128])  # horses or humans
    assert not is_imbalanced([52, 48])  # within the tolerance
    assert is_imbalanced([10, 10, 30])
    assert not is_imbalanced([]) and not is_imbalanced([5])
