"""One traced graph per pass and training step, whatever the batch size."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from pipelines.training.arms import Arm, build_head
from pipelines.training.config import ExperimentConfig
from pipelines.training.traced import one_graph


def test_one_graph_traces_once_for_every_batch_size():
    seen = []

    def f(x, y):
        seen.append(x.shape.as_list())  # runs only while tracing
        return tf.reduce_sum(x, axis=1) + tf.cast(y, tf.float32)

    g = one_graph(f)
    assert g.tracing_count() == 0
    for n in (32, 32, 3, 17):
        out = g(tf.ones((n, 4)), np.zeros(n, np.int32))
        assert out.shape == (n,) and float(out[0]) == 4.0
    assert g.tracing_count() == 1 and seen == [[None, 4]]


def test_an_arms_training_step_and_pass_are_traced_once_with_a_short_last_batch():
    """The optimizer's slots exist before the first step (else the first call traces twice,
    once creating them) and a short batch reuses the graph."""
    arm = Arm("imagenet", ExperimentConfig(), None, 32, 2)
    arm.head = arm._net = build_head(6, 2, 0.0, seed=0)
    arm._compile(0.01)
    rng = np.random.default_rng(0)
    for n in (8, 8, 3):
        x = tf.constant(rng.normal(size=(n, 6)), tf.float32)
        loss, acc = arm.train_step(x, tf.constant(rng.integers(0, 2, n), tf.int32))
        assert np.isfinite(loss) and 0.0 <= acc <= 1.0
    assert arm._step.tracing_count() == 1
    logits = arm._run(arm.head, rng.normal(size=(40, 6)).astype(np.float32), scale=False)
    assert logits.shape == (40, 2)  # a batch of 32, then one of 8
    assert arm._predict_fns[id(arm.head)].tracing_count() == 1
