"""A test-only workload for sweep mechanics (``PIPELINES_TEST_WORKLOAD``): per epoch and arm
one epoch row whose validation accuracy follows the config, without TensorFlow.

Accuracy rises with ``phase1.lr`` (up to 1e-2) and with the epoch; the random arm scores
0.2 less. ``PIPELINES_TEST_EPOCH_S`` (default 0.05) is each epoch's duration, split into 5
steps that check ``should_stop`` like the trainer does. Kept importable without pytest.
"""

from __future__ import annotations

import math
import os
import time

EPOCH_S_ENV = "PIPELINES_TEST_EPOCH_S"


def accuracy(config, arm: str, epoch: int) -> float:
    level = 0.5 + 0.45 * min(1.0, max(0.0, (math.log10(config.phase1.lr) + 5) / 3))
    value = 0.5 + (level - 0.5) * (1 - 0.5 ** (epoch + 1))
    return round(value - (0.2 if arm == "random" else 0.0), 6)


def curve_workload(run_id: str, config, store, should_stop) -> dict:
    epoch_s = float(os.environ.get(EPOCH_S_ENV, "0.05"))
    epochs = config.phase1.epochs + config.phase2.epochs
    history: dict[str, list[float]] = {arm: [] for arm in config.arms}
    for epoch in range(epochs):
        for _ in range(5):
            if should_stop():
                return {"arms": _arms(history), "stopped": True}
            time.sleep(epoch_s / 5)
        phase = "feature_extraction" if epoch < config.phase1.epochs else "fine_tuning"
        for arm in config.arms:
            acc = accuracy(config, arm, epoch)
            history[arm].append(acc)
            store.log_epoch(run_id, arm, phase, epoch, 1 - acc, acc, 1 - acc, acc, epoch_s, 10.0)
    return {"arms": _arms(history), "stopped": False}


def _arms(history: dict[str, list[float]]) -> dict:
    return {
        arm: {"best_val_accuracy": max(v), "final_val_accuracy": v[-1], "epochs": len(v)}
        for arm, v in history.items()
        if v
    }


def stubborn_workload(run_id: str, config, store, should_stop) -> dict:
    """:func:`curve_workload` that never looks at ``should_stop``: a trial whose worker does
    not stop when asked (what Force stop is for)."""
    return curve_workload(run_id, config, store, lambda: False)
