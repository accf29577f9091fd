"""The run store: schema, round trips, typed runs, reads that never write, concurrency
between processes, deletion. The worker protocol (claims, reaping) is ``test_lifecycle``."""

from __future__ import annotations

import csv
import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas
import pytest

import pipelines.runs.store as store_module
from pipelines.errors import UserError
from pipelines.runs import lifecycle
from pipelines.runs.run import Run
from pipelines.runs.store import EPOCH_COLUMNS, SCHEMA_VERSION, RunStore
from pipelines.training.config import ExperimentConfig
from tests.conftest_store import fill_run, tiny_config

REPO = Path(__file__).resolve().parent.parent


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _running(store: RunStore, run_id: str) -> None:
    """Claim ``run_id`` for this process and move it to ``running``, as a worker does."""
    lifecycle.claim_worker(store, run_id, os.getpid())
    assert lifecycle.claim_slot(store, run_id, max_running=99)


# --- schema and files ---------------------------------------------------------------------


def test_schema_is_wal_sqlite_in_runs_dir(store: RunStore, runs_dir: Path) -> None:
    assert store.path == runs_dir / "runs.sqlite3" and store.path.is_file()
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "metrics", "events", "progress", "results"} <= tables
    assert RunStore().list_runs() == []  # opening an existing store again is fine


def test_non_sqlite_store_file_is_a_clear_user_error(runs_dir: Path) -> None:
    runs_dir.mkdir()
    (runs_dir / "runs.sqlite3").write_text("these are my notes, not a database\n" * 200)
    with pytest.raises(UserError, match=r"is not a SQLite database; move it away"):
        RunStore()


def test_runs_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "runs").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        RunStore(tmp_path / "runs")


def test_store_from_a_newer_version_is_refused(store: RunStore) -> None:
    sqlite3.connect(store.path, isolation_level=None).execute("PRAGMA user_version = 99")
    with pytest.raises(UserError, match="newer version"):
        RunStore(store.root)


def test_a_schema_1_store_gains_balanced_accuracy_and_keeps_its_rows(store: RunStore) -> None:
    run_id = store.create_run(ExperimentConfig())
    store.log_epoch(run_id, "imagenet", "feature_extraction", 0, 0.5, 0.8, 0.4, 0.9, 1.0, 10.0)
    conn = sqlite3.connect(store.path, isolation_level=None)
    conn.execute("ALTER TABLE metrics DROP COLUMN val_balanced_accuracy")  # as schema 1 was
    conn.execute("ALTER TABLE runs DROP COLUMN sweep_id")
    conn.execute("ALTER TABLE runs DROP COLUMN trial")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    store.close()
    reopened = RunStore(store.root)
    rows = reopened.curves(run_id)
    assert rows["val_accuracy"].tolist() == [0.9]
    assert rows["val_balanced_accuracy"].isna().all()  # not measured then: NULL, not a guess
    reopened.log_epoch(run_id, "imagenet", "fine_tuning", 1, 0.4, 0.9, 0.3, 0.95, 1.0, 10.0, 0.7)
    assert reopened.best_val_accuracy("val_balanced_accuracy") == {run_id: {"imagenet": 0.7}}
    version = sqlite3.connect(store.path).execute("PRAGMA user_version").fetchone()[0]
    assert version == store_module.SCHEMA_VERSION  # every migration ran
    assert reopened.pool_workers() == []  # 3: the warm pool's table
    assert reopened.get_run(run_id).sweep_id is None


def test_a_schema_2_store_gains_sweep_tags_and_keeps_its_rows(store: RunStore) -> None:
    run_id = store.create_run(ExperimentConfig())
    store.log_epoch(
        run_id, "imagenet", "feature_extraction", 0, 0.5, 0.8, 0.4, 0.9, 1.0, 10.0, 0.85
    )
    store.set_summary(run_id, {"image_size": 224})
    conn = sqlite3.connect(store.path, isolation_level=None)
    conn.execute("ALTER TABLE runs DROP COLUMN sweep_id")  # as schema 2 was
    conn.execute("ALTER TABLE runs DROP COLUMN trial")
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    store.close()
    reopened = RunStore(store.root)
    run = reopened.get_run(run_id)
    assert run.sweep_id is None and run.trial is None  # outside any series: NULL
    assert run.summary == {"image_size": 224} and run.config == ExperimentConfig()
    rows = reopened.curves(run_id)
    assert rows["val_accuracy"].tolist() == [0.9]
    assert rows["val_balanced_accuracy"].tolist() == [0.85]
    tagged = reopened.create_run(ExperimentConfig(), sweep_id="series-1", trial=0)
    assert [r.run_id for r in reopened.runs_in_sweep("series-1")] == [tagged]
    assert reopened.get_run(tagged).trial == 0
    version = sqlite3.connect(store.path).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION


def test_an_upgrade_skips_a_column_that_is_already_there(store: RunStore) -> None:
    # A development build numbered its steps differently: schema 3 with the sweep columns.
    run_id = store.create_run(ExperimentConfig(), sweep_id="s", trial=0)
    conn = sqlite3.connect(store.path, isolation_level=None)
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    store.close()
    reopened = RunStore(store.root)  # would fail on "duplicate column name: sweep_id"
    assert reopened.get_run(run_id).sweep_id == "s"
    version = sqlite3.connect(store.path).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION


def test_a_schema_4_store_gains_metric_tasks_and_keeps_its_rows(store: RunStore) -> None:
    run_id = store.create_run(ExperimentConfig())
    store.log_epoch(run_id, "imagenet", "feature_extraction", 0, 0.5, 0.8, 0.4, 0.9, 1.0, 10.0)
    conn = sqlite3.connect(store.path, isolation_level=None)
    conn.execute("ALTER TABLE metrics DROP COLUMN task")  # as schema 4 was
    conn.execute("PRAGMA user_version = 4")
    conn.close()
    store.close()
    reopened = RunStore(store.root)
    rows = reopened.curves(run_id)
    assert rows["val_accuracy"].tolist() == [0.9] and rows["task"].isna().all()
    reopened.log_epoch(
        run_id, "imagenet", "fine_tuning", 1, 0.4, 0.9, 0.3, 0.95, 1.0, 10.0, task="colour"
    )
    reopened.log_batch(run_id, "imagenet", "fine_tuning", 1, 0, 0.4, 0.9, 2.0, task="colour")
    assert reopened.curves(run_id)["task"].tolist()[1] == "colour"
    assert reopened.curves(run_id, kind="batch")["task"].tolist() == ["colour"]
    version = sqlite3.connect(store.path).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION


def test_runs_in_sweep_in_trial_order_and_sweep_ids_newest_first(store: RunStore) -> None:
    store.create_run(ExperimentConfig())  # outside any sweep
    b1 = store.create_run(ExperimentConfig(), sweep_id="a", trial=1)
    a0 = store.create_run(ExperimentConfig(), sweep_id="a", trial=0)
    b0 = store.create_run(ExperimentConfig(), sweep_id="b", trial=0)
    assert [r.run_id for r in store.runs_in_sweep("a")] == [a0, b1]
    assert [r.run_id for r in store.runs_in_sweep("b")] == [b0]
    assert store.runs_in_sweep("none") == []
    assert store.sweep_ids() == ["b", "a"]
    assert store.get_run(b1).to_dict()["sweep_id"] == "a"
    with pytest.raises(ValueError, match="sweep_id"):
        store.create_run(ExperimentConfig(), trial=3)


# --- runs ---------------------------------------------------------------------------------


def test_create_get_list(store: RunStore) -> None:
    config = tiny_config(backbone="mobilenet_v2", arms="imagenet")
    first = store.create_run(ExperimentConfig())
    second = store.create_run(config)
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", second)
    run = store.get_run(second)
    assert isinstance(run, Run) and run.run_id == second
    assert run.status == "queued" and run.error is None and run.summary is None
    assert run.config == config and run.config_dict == config.to_dict()
    assert run.config_problem is None
    assert run.stop_requested is False and run.progress == {}
    assert run.worker_pid is None and run.worker_started is None and run.heartbeat is None
    assert run.created <= run.updated <= time.time()
    assert run.active and not run.finished
    assert [r.run_id for r in store.list_runs()] == [second, first]  # newest first
    assert [r.run_id for r in store.runs_with_status("queued")] == [first, second]  # oldest first
    assert store.runs_with_status("running") == []


def test_run_total_epochs_and_to_dict_round_trip(store: RunStore) -> None:
    run_id = store.create_run(tiny_config(**{"phase1.epochs": 4, "phase2.epochs": 3}))
    store.set_progress(run_id, "imagenet", {"phase": "feature_extraction", "epoch": 1})
    store.set_summary(run_id, {"image_size": 224})
    run = store.get_run(run_id)
    assert run.total_epochs == 7
    data = run.to_dict()
    assert list(data) == [
        "run_id",
        "created",
        "updated",
        "status",
        "config",
        "worker_pid",
        "worker_started",
        "heartbeat",
        "stop_requested",
        "error",
        "summary",
        "progress",
        "sweep_id",
        "trial",
        "exercise_id",
        "group_name",
    ]
    assert json.loads(json.dumps(data)) == data  # JSON-ready
    assert data["config"] == run.config.to_dict()
    assert Run.from_dict(data) == run
    with pytest.raises(AttributeError):
        run.status = "completed"  # frozen


def test_a_stored_config_that_no_longer_parses_keeps_the_run_readable(store: RunStore) -> None:
    run_id = store.create_run(tiny_config(**{"phase1.epochs": 2, "phase2.epochs": 5}))
    stored = {**ExperimentConfig().to_dict(), "freeze_depth": 2}  # a field since renamed
    stored["phase1"] = {"epochs": 2, "lr": 1e-3}
    store._write("UPDATE runs SET config = ? WHERE run_id = ?", (json.dumps(stored), run_id))
    run = store.get_run(run_id)
    assert run.config is None and run.config_dict == stored
    assert "no longer parses" in run.config_problem and "freeze_depth" in run.config_problem
    assert run.total_epochs == 2 + 2  # from config_dict: phase1 2, phase2 the default 2
    assert [r.run_id for r in store.list_runs()] == [run_id]
    assert run.to_dict()["config"] == stored


def test_unknown_run_id_is_a_user_error(store: RunStore) -> None:
    for call in (
        lambda: store.get_run("nope"),
        lambda: store.curves("nope"),
        lambda: store.events("nope"),
        lambda: store.delete_run("nope"),
        lambda: store.export_csv("nope", "x.csv"),
    ):
        with pytest.raises(UserError, match="no run with id 'nope'"):
            call()
    with pytest.raises(UserError, match="not a valid run id"):
        store.artefact_dir("../escape")


def test_summary_progress_events_results(store: RunStore) -> None:
    run_id = store.create_run(ExperimentConfig())
    store.set_summary(run_id, {"imagenet": {"best_val_accuracy": np.float32(0.5)}, "x": np.nan})
    assert store.get_run(run_id).summary == {
        "imagenet": {"best_val_accuracy": 0.5},
        "x": None,  # strict JSON: NaN is stored as null
    }
    store.set_progress(run_id, "imagenet", {"phase": 1, "epoch": 1, "eta_s": 12.5})
    store.set_progress(run_id, "imagenet", {"phase": 2, "epoch": 1, "eta_s": 3.0})
    store.set_progress(run_id, "random", {"phase": 1, "epoch": 2})
    assert store.get_run(run_id).progress == {
        "imagenet": {"phase": 2, "epoch": 1, "eta_s": 3.0},
        "random": {"phase": 1, "epoch": 2},
    }
    store.log_event(run_id, "phase 2 started: top 2 blocks unfrozen")
    store.log_event(run_id, "feature cache: hit")
    events = store.events(run_id)
    assert [e["message"] for e in events] == [
        "phase 2 started: top 2 blocks unfrozen",
        "feature cache: hit",
    ]
    assert [e["message"] for e in store.events(run_id, after=events[0]["id"])] == [
        "feature cache: hit"
    ]
    predictions = [{"path": "a/1.png", "label": 0, "predicted": 1, "probabilities": [0.4, 0.6]}]
    result = {
        "confusion": np.array([[3, 1], [0, 4]]),
        "classes": ["a", "b"],
        "predictions": predictions,
    }
    store.save_result(run_id, "imagenet", result)
    assert store.result(run_id, "imagenet") == {**result, "confusion": [[3, 1], [0, 4]]}
    assert store.result(run_id, "random") is None


def test_curves_per_arm_and_kind(store: RunStore) -> None:
    run_id = store.create_run(ExperimentConfig())
    fill_run(store, run_id, epochs=2)
    store.log_epoch(run_id, "random", "fine_tuning", 3, float("nan"), 0.5, None, None, 1.0, 10.0)
    epochs = store.curves(run_id)
    assert isinstance(epochs, pandas.DataFrame)
    assert list(epochs.columns) == [*EPOCH_COLUMNS, "time"]
    assert len(epochs) == 5
    imagenet = store.curves(run_id, arm="imagenet")
    assert imagenet["epoch"].tolist() == [1, 2]
    assert imagenet["val_accuracy"].tolist() == pytest.approx([0.7, 0.8])
    last = store.curves(run_id, arm="random").iloc[-1]
    assert pandas.isna(last["loss"]) and pandas.isna(last["val_accuracy"])  # NaN -> NULL
    batches = store.curves(run_id, arm="random", kind="batch")
    assert len(batches) == 6 and {"step", "global_step", "wall_s"} <= set(batches.columns)
    assert store.best_val_accuracy()[run_id] == pytest.approx({"imagenet": 0.8, "random": 0.52})
    with pytest.raises(ValueError, match="kind"):
        store.curves(run_id, kind="weird")


def test_export_csv_holds_every_metric_row(store: RunStore, tmp_path: Path) -> None:
    run_id = store.create_run(ExperimentConfig())
    fill_run(store, run_id, epochs=2)
    assert store.export_csv(run_id, tmp_path / "m.csv") == 16
    frame = pandas.read_csv(tmp_path / "m.csv")
    assert len(frame) == 16
    assert sorted(frame["kind"].unique()) == ["batch", "epoch"]
    assert {"arm", "phase", "epoch", "step", "loss", "val_accuracy", "time"} <= set(frame.columns)
    with open(tmp_path / "m.csv") as f:
        second = list(csv.DictReader(f))[1]
    assert (second["kind"], second["epoch"], second["step"]) == ("batch", "1", "1")  # not 1.0
    with pytest.raises(UserError, match="cannot write CSV"):
        store.export_csv(run_id, tmp_path / "missing" / "m.csv")


def test_delete_removes_rows_and_files_but_refuses_an_active_run(store: RunStore) -> None:
    keep, gone = store.create_run(ExperimentConfig()), store.create_run(ExperimentConfig())
    fill_run(store, keep)
    fill_run(store, gone)
    (store.artefact_dir(gone) / "worker.log").write_text("log")
    _running(store, gone)
    with pytest.raises(UserError, match="is running; stop it first"):
        store.delete_run(gone)
    lifecycle.finish(store, gone, "stopped")
    store.delete_run(gone)
    assert not (store.root / gone).exists()
    with pytest.raises(UserError, match="no run with id"):
        store.get_run(gone)
    conn = sqlite3.connect(store.path)
    for table in ("metrics", "events", "progress", "results"):
        ids = {r[0] for r in conn.execute(f"SELECT run_id FROM {table}")}
        assert gone not in ids
    assert len(store.curves(keep, kind="batch")) == 12


# --- reads never write ----------------------------------------------------------------------


def _data_version(conn: sqlite3.Connection) -> int:
    """Changes whenever another connection commits to the database."""
    return conn.execute("PRAGMA data_version").fetchone()[0]


def test_reads_of_a_run_whose_worker_died_change_nothing(store: RunStore) -> None:
    """A dead worker's run stays ``running`` for every store read, and nothing is written:
    marking it ``interrupted`` is the lifecycle's reap (see ``test_lifecycle``)."""
    run_id = store.create_run(ExperimentConfig())
    orphan = store.create_run(ExperimentConfig())  # no worker pid, long ago
    _running(store, run_id)
    store._write("UPDATE runs SET worker_pid = ? WHERE run_id = ?", (_dead_pid(), run_id))
    store._write("UPDATE runs SET updated = 1.0, heartbeat = NULL WHERE run_id = ?", (orphan,))
    watch = sqlite3.connect(store.path, isolation_level=None)
    rows_before = watch.execute("SELECT * FROM runs ORDER BY seq").fetchall()
    version = _data_version(watch)
    before = store.get_run(run_id)
    assert before.status == "running" and before.active
    assert [r.status for r in store.list_runs()] == ["queued", "running"]
    assert [r.run_id for r in store.runs_with_status("queued", "running")] == [run_id, orphan]
    assert store.get_run(run_id) == before  # ``updated`` included
    assert _data_version(watch) == version  # no other connection committed anything
    assert watch.execute("SELECT * FROM runs ORDER BY seq").fetchall() == rows_before
    assert lifecycle.reap(store) == [run_id, orphan]  # the reaper does mark them
    assert {r.status for r in store.list_runs()} == {"interrupted"}


def test_delete_refuses_a_dead_workers_run_until_it_is_reaped(store: RunStore) -> None:
    run_id = store.create_run(ExperimentConfig())
    _running(store, run_id)
    store._write("UPDATE runs SET worker_pid = ? WHERE run_id = ?", (_dead_pid(), run_id))
    with pytest.raises(UserError, match="is running; stop it first"):
        store.delete_run(run_id)  # deleting does not reap
    assert lifecycle.reap(store, run_id) == [run_id]
    store.delete_run(run_id)
    assert store.list_runs() == []


# --- concurrency between processes --------------------------------------------------------

_WRITER = """
import sys, time
from pathlib import Path
from pipelines.runs.store import RunStore
store = RunStore(Path(sys.argv[1]))
run_id, rows = sys.argv[2], int(sys.argv[3])
for i in range(rows):
    store.log_batch(run_id, sys.argv[4], "feature_extraction", 0, i, 0.5, 0.5, 0.0)
print("written", flush=True)
time.sleep(float(sys.argv[5]))
"""


def _writer(store: RunStore, run_id: str, rows: int, arm: str, linger: float):
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_WRITER), str(store.root), run_id, str(rows), arm]
        + [str(linger)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def test_rows_written_by_another_process_are_visible_within_a_second(store: RunStore) -> None:
    run_id = store.create_run(ExperimentConfig())
    writer = _writer(store, run_id, 3, "imagenet", linger=30)
    try:
        assert writer.stdout.readline().strip() == "written"
        seen_at = time.monotonic()
        # The writer still has its connection open; we read with ours.
        while len(store.curves(run_id, kind="batch")) < 3:
            assert time.monotonic() - seen_at < 1.0
            time.sleep(0.02)
    finally:
        writer.kill()
        writer.wait()


def test_two_processes_writing_at_once_lose_no_rows(store: RunStore) -> None:
    run_id = store.create_run(ExperimentConfig())
    writers = [_writer(store, run_id, 300, arm, linger=0) for arm in ("imagenet", "random")]
    for w in writers:
        assert w.wait(timeout=60) == 0
    counts = store.curves(run_id, kind="batch").groupby("arm").size().to_dict()
    assert counts == {"imagenet": 300, "random": 300}


def test_an_open_reader_does_not_block_the_writer(store: RunStore) -> None:
    run_id = store.create_run(ExperimentConfig())
    store.log_event(run_id, "before")
    reader = sqlite3.connect(store.path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1  # snapshot taken
    start = time.monotonic()
    for i in range(20):
        store.log_batch(run_id, "imagenet", "feature_extraction", 0, i, 0.5, 0.5, 0.0)
    store.log_event(run_id, "after")
    assert time.monotonic() - start < 1.0
    assert reader.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1  # still its snapshot
    reader.execute("COMMIT")
    assert reader.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 2


def test_store_is_json_not_pickle(store: RunStore) -> None:
    run_id = store.create_run(ExperimentConfig())
    store.save_result(run_id, "imagenet", {"classes": ["a"]})
    raw = sqlite3.connect(store.path).execute("SELECT data FROM results").fetchone()[0]
    assert json.loads(raw) == {"classes": ["a"]}
