"""Softmax over class logits, the one NumPy implementation the engine uses.

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
