"""A sweep that really trains (EfficientNet-Lite0 at 32 px on a tiny generated data set):
one worker takes trial after trial with the feature cache warm (a phase-1 learning-rate
sweep computes the features once), and two workers on the same grid give exactly the same
results as one (same seeds, each point once)."""

from __future__ import annotations

import time

import psutil
import pytest

from pipelines.runs.store import RunStore
from pipelines.sweeps import SweepSpec, parse_param, start_sweep, sweep_state_of, sweep_trials
from tests.conftest_engine import TINY

pytestmark = pytest.mark.slow


def _wait(sweep_id: str, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while sweep_state_of(sweep_id) != "finished":
        assert time.monotonic() < deadline, sweep_trials(sweep_id)
        time.sleep(0.5)


def _curves(store: RunStore, sweep_id: str) -> dict:
    out = {}
    for t in sweep_trials(sweep_id):
        rows = store.curves(t["run_id"])
        key = tuple(sorted(t["params"].items()))
        out[key] = (t["value"], [round(v, 5) for v in rows.val_loss], list(rows.val_accuracy))
    return out


def test_a_real_sweep_reuses_features_and_two_workers_match_one(
    runs_dir, tiny_data, lite0_handle, tmp_path, monkeypatch
):
    monkeypatch.setenv("FEATURE_CACHE_DIR", str(tmp_path / "features"))  # cold
    fixed = dict(item.split("=", 1) for item in TINY)
    fixed.update({"dataset": tiny_data, "phase2.epochs": "0"})
    spec = SweepSpec(
        params=(parse_param("phase1.lr=1e-3,1e-2"), parse_param("dropout=0.0,0.2")),
        fixed=fixed,
        sampler="grid",
        pruner="none",
    )
    store = RunStore()
    one = start_sweep(spec, workers=1)
    _wait(one)
    trials = sweep_trials(one)
    assert [t["state"] for t in trials] == ["COMPLETE"] * 4
    pids = {store.get_run(t["run_id"]).worker_pid for t in trials}
    assert len(pids) == 1, "one long-lived worker took every trial"
    for t in trials[1:]:  # the features were computed by trial 0 only
        notes = [
            e["message"] for e in store.events(t["run_id"]) if "feature cache:" in e["message"]
        ]
        assert notes and all("train 24/24 cached" in n for n in notes), notes

    two = start_sweep(spec, workers=2)
    _wait(two)
    assert len({store.get_run(t["run_id"]).worker_pid for t in sweep_trials(two)}) == 2
    assert _curves(store, two) == _curves(store, one)
    for child in psutil.Process().children(recursive=True):
        try:
            if "sweep-worker" in " ".join(child.cmdline()):
                child.kill()
        except psutil.Error:
            continue
