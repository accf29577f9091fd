"""Engine fixtures: a tiny generated data set and one finished two-phase run of both arms.

Registered from ``conftest.py``. Lite0 at 32 px on 2 classes x 12 images: seconds per run.
"""

import pytest

from pipelines.runs.store import RunStore
from pipelines.runs.worker import EXIT_COMPLETED, run_worker
from pipelines.training.config import ExperimentConfig
from tests.conftest_data import make_image_folder

TINY = [
    "image_size=32",
    "batch_size=8",
    "phase1.epochs=2",
    "phase1.lr=0.01",
    "phase2.epochs=1",
    "phase2.unfreeze_blocks=2",
    "phase2.lr=1e-4",
]


def tiny_config(data: str, *extra: str) -> ExperimentConfig:
    return ExperimentConfig().with_overrides([f"dataset={data}", *TINY, *extra])


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> str:
    return str(
        make_image_folder(tmp_path_factory.mktemp("data") / "shapes", train=12, validation=4)
    )


@pytest.fixture(scope="session")
def finished_run(tiny_data, lite0_handle, tmp_path_factory):
    """One full two-phase run of both arms, in this process, through the worker entry."""
    store = RunStore(tmp_path_factory.mktemp("runs"))
    run_id = store.create_run(tiny_config(tiny_data))
    with pytest.MonkeyPatch.context() as mp:  # its own, empty feature cache: a cold start
        mp.setenv("FEATURE_CACHE_DIR", str(tmp_path_factory.mktemp("features")))
        assert run_worker(run_id, store) == EXIT_COMPLETED
    return store, run_id
