"""Softmax over class logits and the validation metrics, the one NumPy implementation of
each that the engine uses.

TensorFlow code at hand of a tensor uses ``tf.nn.softmax``; results that are already NumPy
arrays (ImageNet top-k, validation loss, stored probabilities) come here.
"""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """``log(softmax(logits))`` along ``axis``, shifted by the maximum so nothing overflows."""
    z = logits - logits.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Probabilities along ``axis`` (each row sums to 1), shifted by the maximum."""
    z = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def balanced_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """The mean over classes of each class's recall (the share of its images predicted as
    it), over the classes that occur in ``labels``. Equals the accuracy on a balanced set;
    on an imbalanced one, always answering the majority class scores ``1 / classes``."""
    classes = np.unique(labels)
    if len(classes) == 0:
        return float("nan")
    return float(np.mean([(predicted[labels == c] == c).mean() for c in classes]))


def chance_accuracy(labels: np.ndarray) -> float:
    """What always answering the most frequent class of ``labels`` scores (the accuracy a
    model has to beat); 0.5 on a balanced two-class set, 0.626 on one with 62.6 % of one."""
    if len(labels) == 0:
        return float("nan")
    return float(np.bincount(labels).max() / len(labels))


def is_imbalanced(class_counts: list[int], tolerance: float = 0.05) -> bool:
    """Whether always answering the majority class scores more than ``tolerance`` above
    ``1 / classes``: then accuracy alone misleads, and balanced accuracy belongs beside it
    (the chest X-ray validation split: 0.626 against 0.5)."""
    total = sum(class_counts)
    if total == 0 or len(class_counts) < 2:
        return False
    return max(class_counts) / total > 1 / len(class_counts) + tolerance
