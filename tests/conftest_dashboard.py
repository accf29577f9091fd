"""Dashboard fixtures: an isolated data set folder and run store per test, the app under
Streamlit's ``AppTest``, and runs written straight into the store with synthetic metrics.

Registered from ``conftest.py``. :func:`write_run` is a plain function too, for tests that
need a variant.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.runs import lifecycle
from pipelines.runs.store import RunStore
from pipelines.training.config import ExperimentConfig
from tests.conftest_data import make_image_folder

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "app.py"
HOH_CLASSES = ("horses", "humans")
APP_TIMEOUT_S = 60
PRESENTER_KEY = "test-presenter-key"  # tests of a shared app set PRESENTER_KEY to it


def as_presenter(at):
    """A shared app's session (``server.address`` not local, ``PRESENTER_KEY`` set to
    :data:`PRESENTER_KEY`) after entering the key in the sidebar: rerun, presenter."""
    at.sidebar.text_input(key="roles.key").input(PRESENTER_KEY)
    [submit] = [b for b in at.sidebar.button if b.label == "Present"]
    submit.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("You are presenting" in s.value for s in at.sidebar.success)
    return at


@dataclass
class DashboardEnv:
    """Where one dashboard test's engine reads and writes."""

    datasets: Path  # DATASETS_DIR, holding a tiny generated horses-or-humans/
    runs: Path  # RUNS_DIR
    store: RunStore


@pytest.fixture
def dashboard_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lite0_handle: str
) -> Iterator[DashboardEnv]:
    """A fresh ``RUNS_DIR`` and a ``DATASETS_DIR`` whose ``horses-or-humans/`` is 2 x 12
    generated training images (so the default form inspects it in milliseconds); the
    built-in Lite0 backbone is already in the test cache."""
    datasets = tmp_path / "datasets"
    make_image_folder(datasets / "horses-or-humans", classes=HOH_CLASSES, train=20, validation=4)
    runs = tmp_path / "runs"
    monkeypatch.setenv("DATASETS_DIR", str(datasets))
    monkeypatch.setenv("RUNS_DIR", str(runs))
    monkeypatch.delenv("MAX_RUNNING_EXPERIMENTS", raising=False)
    store = RunStore()
    yield DashboardEnv(datasets, runs, store)
    store.close()


@pytest.fixture
def app(dashboard_env: DashboardEnv, monkeypatch: pytest.MonkeyPatch):
    """``app(run=None, lang=None)`` -> a not yet run ``AppTest`` of ``dashboard/app.py``.

    Path confinement is off (``CONFINE_PATHS=0``) whatever address Streamlit's config has;
    a test of confinement sets it itself."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CONFINE_PATHS", "0")

    def make(run: str | None = None, lang: str | None = None) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=APP_TIMEOUT_S)
        if run:
            at.query_params["run"] = run
        if lang:
            at.session_state["lang"] = lang
        return at

    return make


def write_run(
    store: RunStore,
    *,
    status: str = "running",
    epochs_done: int = 3,
    phase1: int = 3,
    phase2: int = 2,
    arms: Sequence[str] = ("imagenet", "random"),
    steps: int = 4,
    images: Path | None = None,
    val_counts: Sequence[int] | None = None,
) -> str:
    """A run with ``epochs_done`` epochs of synthetic metrics per arm (the ImageNet arm
    learns, the random one does not), progress, events; for a finished ``status`` also
    results (with predictions of the images under ``images``, if given) and a summary.
    With ``val_counts`` (validation images per class), the data facts the trainer stores
    before the first epoch, and a balanced accuracy 0.1 below the accuracy."""
    config = ExperimentConfig()
    config.phase1.epochs, config.phase2.epochs = phase1, phase2
    config.arms = list(arms)
    config.image_size = 32
    run_id = store.create_run(config.validate(), status="running")
    store.log_event(run_id, "started in worker process 0")
    if val_counts is not None:
        share = max(val_counts) / sum(val_counts)
        store.set_summary(run_id, {"val_class_counts": list(val_counts), "chance_accuracy": share})
    for epoch in range(epochs_done):
        phase = "feature_extraction" if epoch < phase1 else "fine_tuning"
        for arm in arms:
            good = arm == "imagenet"
            val = 0.7 + 0.08 * epoch if good else 0.5 + 0.01 * epoch
            for step in range(steps):
                loss = (0.6 if good else 1.2) * math.exp(-0.2 * (epoch + step / steps))
                store.log_batch(
                    run_id, arm, phase, epoch, step, loss, 0.6, 1.0, global_step=epoch * steps
                )
            balanced = val - 0.1 if val_counts is not None else None
            store.log_epoch(
                run_id,
                arm,
                phase,
                epoch,
                0.5 / (epoch + 1),
                val,
                0.6 / (epoch + 1),
                val,
                1.5,
                40,
                val_balanced_accuracy=balanced,
            )
    for arm in arms:
        store.set_progress(
            run_id,
            arm,
            {
                "phase": "feature_extraction" if epochs_done < phase1 else "fine_tuning",
                "epoch": min(epochs_done, phase1 + phase2 - 1),
                "epochs_total": phase1 + phase2,
                "step": 2,
                "steps_per_epoch": steps,
                "eta_s": 12.0,
            },
        )
    if status in ("completed", "stopped"):
        _finish(store, run_id, arms, images)
    if status != "running":  # as its worker would record it
        error = "boom: synthetic failure" if status == "failed" else None
        lifecycle.finish(store, run_id, status, error)
    return run_id


def _finish(store: RunStore, run_id: str, arms: Sequence[str], images: Path | None) -> None:
    paths = sorted(p for p in images.rglob("*") if p.is_file()) if images else []
    summary: dict = {"arms": {}, "classes": list(HOH_CLASSES), "image_size": 32, "wall_s": 9.0}
    for arm in arms:
        wrong = 0 if arm == "imagenet" else 2
        predictions = [
            {
                "path": str(p),
                "label": i % 2,
                "predicted": (i % 2) ^ (1 if i < wrong else 0),
                "probabilities": [0.3, 0.7] if (i % 2) ^ (i < wrong) else [0.8, 0.2],
            }
            for i, p in enumerate(paths[:8])
        ]
        store.save_result(
            run_id,
            arm,
            {
                "classes": list(HOH_CLASSES),
                "confusion": [[4, 0], [wrong, 4 - wrong]],
                "predictions": predictions,
            },
        )
        summary["arms"][arm] = {
            "final_val_accuracy": 0.86 if arm == "imagenet" else 0.52,
            "best_val_accuracy": 0.86 if arm == "imagenet" else 0.53,
            "epochs": 3,
            "wall_s": 4.5,
        }
    store.set_summary(run_id, summary)
