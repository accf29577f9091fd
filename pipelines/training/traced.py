"""One traced graph per function, whatever the batch size."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf


def one_graph(fn: Callable) -> Callable:
    """``fn`` as a graph traced once, on its first call, for every batch size after it.

    ``tf.function(reduce_retracing=True)`` traces again for the first call with another
    batch size (every pass's and epoch's short last batch): 0.2-0.6 s of tracing each on
    2 cores, for a fine-tuning step or a backbone pass. Here the first call's arguments fix
    each tensor's dtype and every dimension but the first; a call with other inner shapes
    or dtypes is refused by TensorFlow (as with any ``input_signature``).
    ``call.tracing_count()`` says how often it was traced (0 before the first call)."""
    traced: list = []

    def call(*args):
        if not traced:
            spec = [tf.TensorSpec((None, *a.shape[1:]), tf.as_dtype(a.dtype)) for a in args]
            traced.append(tf.function(fn, input_signature=spec))
        return traced[0](*args)

    call.tracing_count = lambda: traced[0].experimental_get_tracing_count() if traced else 0
    return call
