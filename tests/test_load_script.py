"""The load test's own parts (``scripts/load_test.py``, ``scripts/ws_watchers.py``): if they
break, the README's load figures can no longer be reproduced.

The slow test serves the dashboard for real and watches a run with websocket sessions;
the worker runs :func:`tests.served.epoch_workload` (epoch rows at a steady pace, no
TensorFlow), so the test checks that every session receives every epoch point.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dashboard.i18n import texts
from pipelines.runs.jobs import JobManager
from pipelines.runs.store import ACTIVE, RunStore
from pipelines.training.config import ExperimentConfig
from tests.conftest_data import make_image_folder
from tests.served import STEP_S_ENV, STEPS_ENV, WORKLOAD, Server, kill_workers, until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import load_test  # noqa: E402
import ws_watchers  # noqa: E402


@pytest.mark.parametrize(
    ("token", "mode"),
    [("ws:10", ("ws", 10)), (" mixed:2", ("mixed", 2)), ("browser:1", ("browser", 1))],
)
def test_modes_are_parsed(token, mode):
    assert load_test.parse_mode(token) == mode


@pytest.mark.parametrize("token", ["ws", "ws:0", "ws:-1", "tabs:3", "browser:x"])
def test_a_bad_mode_is_refused_with_the_accepted_forms(token):
    with pytest.raises(SystemExit, match="is not ws:N, browser:N or mixed:N"):
        load_test.parse_mode(token)


def test_percentile_takes_the_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert load_test.percentile(values, 0.5) in (50.0, 51.0)
    assert load_test.percentile(values, 0.95) == 95.0
    assert load_test.percentile([3.0], 0.95) == 3.0


def test_the_watchers_read_the_live_caption_the_dashboard_writes():
    """The websocket sessions time updates by the English "Epoch points" caption."""
    counts = " · ".join(
        f"{texts()[f'arm.{arm}']['en']}: {n}" for arm, n in (("imagenet", 7), ("random", 6))
    )
    caption = texts()["charts.points"]["en"].format(counts=counts, total=22)
    session = ws_watchers.Session()
    session.note(caption)
    assert set(session.seen) == {(0, k) for k in range(1, 8)} | {(1, k) for k in range(1, 7)}


@pytest.mark.slow
def test_websocket_sessions_receive_every_epoch_point_of_a_live_run(tmp_path, lite0_handle):
    data = make_image_folder(tmp_path / "data", train=8, validation=4)
    runs = tmp_path / "runs"
    env = {
        "RUNS_DIR": str(runs),
        "PIPELINES_TEST_WORKLOAD": WORKLOAD,
        STEPS_ENV: "4",
        STEP_S_ENV: "0.25",  # 2 s per epoch of both arms
    }
    config = ExperimentConfig().with_overrides(
        [f"dataset={data}", "image_size=32", "phase1.epochs=3", "phase2.epochs=3"]
    )
    with Server(env, tmp_path / "streamlit.log") as server, pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        store = RunStore(runs)
        try:
            run_id = JobManager(store).start(config)
            watchers = ws_watchers.Watchers(server.url, run_id, 3)
            watchers.start()
            assert watchers.ready.wait(60), "the sessions never showed the run"
            until(lambda: store.get_run(run_id).status not in ACTIVE, 60, "the run to end")
            assert store.get_run(run_id).status == "completed"
            last = {(0, 6), (1, 6)}  # 3 + 3 epochs per arm
            shown = lambda: all(last <= s.seen.keys() for s in watchers.sessions)  # noqa: E731
            until(shown, 20, "every session showing the last epoch points")
            watchers.stop()
            first_seen = min(min(s.seen.values()) for s in watchers.sessions)
            epochs = store.curves(run_id, kind="epoch")
            for session in watchers.sessions:
                assert session.error is None
                for index, arm in enumerate(("imagenet", "random")):
                    rows = epochs[epochs["arm"] == arm].reset_index(drop=True)
                    for k, written in enumerate(rows["time"], start=1):
                        if written > first_seen:  # written while the session watched
                            assert (index, k) in session.seen, (arm, k, session.seen)
        finally:
            store.close()
            kill_workers(runs)
