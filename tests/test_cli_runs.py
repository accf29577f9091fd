"""``python -m pipelines runs ...`` and ``worker``: output shapes, refusals, no TensorFlow."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.__main__ import main
from pipelines.runs import lifecycle
from pipelines.runs.store import RunStore
from tests.conftest_store import fill_run, tiny_config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def two_runs(store: RunStore) -> tuple[str, str]:
    """An older finished run with curves, and a newer queued one without."""
    done = store.create_run(tiny_config())
    fill_run(store, done, epochs=2)
    lifecycle.finish(store, done, "completed")
    queued = store.create_run(tiny_config(arms="imagenet", backbone="mobilenet_v2"))
    return done, queued


def test_list_json_newest_first_with_best_accuracy(two_runs, capsys) -> None:
    done, queued = two_runs
    assert main(["runs", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in rows] == [queued, done]
    assert set(rows[0]) >= {"run_id", "status", "created", "backbone", "arms", "best_val_accuracy"}
    assert rows[0]["status"] == "queued" and rows[0]["backbone"] == "mobilenet_v2"
    assert rows[0]["arms"] == ["imagenet"] and rows[0]["best_val_accuracy"] == {}
    assert rows[1]["best_val_accuracy"] == pytest.approx({"imagenet": 0.8, "random": 0.52})
    assert rows[1]["created"][:2] == "20" and "T" in rows[1]["created"]


def test_list_text(two_runs, capsys) -> None:
    assert main(["runs", "list"]) == 0
    out = capsys.readouterr().out
    assert two_runs[0] in out and "completed" in out and "imagenet 0.800" in out


def test_list_and_show_name_the_series_and_trial(store, capsys) -> None:
    run_id = store.create_run(tiny_config(), sweep_id="sweep-7", trial=3)
    assert main(["runs", "list", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert (row["sweep_id"], row["trial"]) == ("sweep-7", 3)
    assert main(["runs", "list"]) == 0
    assert "sweep-7 #3" in capsys.readouterr().out
    assert main(["runs", "show", run_id]) == 0
    assert "Series:   sweep-7, trial 3" in capsys.readouterr().out
    assert main(["runs", "show", run_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sweep_id"] == "sweep-7"


def test_show_names_the_group_that_started_a_run(store, capsys) -> None:
    run_id = store.create_run(tiny_config(), exercise_id="ex-1", group_name="Table one")
    assert main(["runs", "show", run_id]) == 0
    assert "Group:    Table one (exercise ex-1)" in capsys.readouterr().out
    assert main(["runs", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["group_name"] == "Table one"
    assert main(["runs", "show", run_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["exercise_id"], shown["group_name"]) == ("ex-1", "Table one")


def test_list_empty_store(store, capsys) -> None:
    assert main(["runs", "list"]) == 0
    assert "no runs yet" in capsys.readouterr().out
    assert main(["runs", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_show_json_shape(two_runs, capsys) -> None:
    done, queued = two_runs
    assert main(["runs", "show", done, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["run_id"] == done and shown["status"] == "completed"
    assert shown["config"]["backbone"] == tiny_config().backbone
    assert set(shown["curves"]) == {"imagenet", "random"}
    first = shown["curves"]["imagenet"][0]
    assert first["epoch"] == 1 and first["phase"] == "feature_extraction"
    assert set(first) >= {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_s", "time"}
    assert [e["message"] for e in shown["events"]] == ["feature cache: hit"]
    assert main(["runs", "show", queued, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["curves"] == {"imagenet": []}


def test_show_text_has_a_table_per_arm(two_runs, capsys) -> None:
    assert main(["runs", "show", two_runs[0]]) == 0
    out = capsys.readouterr().out
    assert "Status:   completed" in out and "\nimagenet\n" in out and "\nrandom\n" in out
    assert "val_acc" in out and "0.8000" in out


def test_export_csv(two_runs, tmp_path: Path, capsys) -> None:
    target = tmp_path / "metrics.csv"
    assert main(["runs", "export", two_runs[0], "--csv", str(target)]) == 0
    assert "wrote 16 metric rows" in capsys.readouterr().out
    with open(target) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16 and {r["kind"] for r in rows} == {"batch", "epoch"}


def test_delete_needs_confirmation(two_runs, store, monkeypatch, capsys) -> None:
    done, _ = two_runs
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    assert main(["runs", "delete", done]) == 2
    assert "without confirmation; pass --yes" in capsys.readouterr().err
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["runs", "delete", done]) == 1
    assert store.get_run(done)
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    assert main(["runs", "delete", done]) == 0
    assert [r.run_id for r in store.list_runs()] == [two_runs[1]]


def test_delete_yes_and_refusal_of_an_active_run(two_runs, store, capsys) -> None:
    done, queued = two_runs
    lifecycle.claim_worker(store, queued, os.getpid())
    assert main(["runs", "delete", queued, "--yes"]) == 2
    assert "stop it first" in capsys.readouterr().err
    assert main(["runs", "delete", done, "--yes"]) == 0
    assert f"deleted run {done}" in capsys.readouterr().out


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_list_show_and_delete_reap_a_run_whose_worker_died(two_runs, store, capsys) -> None:
    _, queued = two_runs
    lifecycle.claim_worker(store, queued, os.getpid())
    store._write("UPDATE runs SET worker_pid = ? WHERE run_id = ?", (_dead_pid(), queued))
    assert store.get_run(queued).status == "queued"  # reading the store alone does not reap
    assert main(["runs", "show", queued, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "interrupted" and "ended without finishing" in shown["error"]
    assert main(["runs", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["status"] == "interrupted"
    assert main(["runs", "delete", queued, "--yes"]) == 0
    assert [r.status for r in store.list_runs()] == ["completed"]


def test_list_reaps_before_listing(two_runs, store, capsys) -> None:
    _, queued = two_runs
    lifecycle.claim_worker(store, queued, os.getpid())
    store._write("UPDATE runs SET worker_pid = ? WHERE run_id = ?", (_dead_pid(), queued))
    assert main(["runs", "list"]) == 0
    assert "interrupted" in capsys.readouterr().out
    assert store.get_run(queued).status == "interrupted"


@pytest.mark.parametrize("action", [["show"], ["export", "--csv", "x.csv"], ["delete", "--yes"]])
def test_unknown_run_id_is_one_line_exit_2(store, action, capsys) -> None:
    assert main(["runs", action[0], "20000101-000000-beef", *action[1:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run with id '20000101-000000-beef'" in err


def test_non_sqlite_store_is_one_line_exit_2(runs_dir: Path, capsys) -> None:
    runs_dir.mkdir()
    (runs_dir / "runs.sqlite3").write_bytes(b"PK\x03\x04 a zip, not a database" * 100)
    assert main(["runs", "list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a SQLite database" in err


def test_runs_and_worker_commands_do_not_import_tensorflow(two_runs, runs_dir: Path) -> None:
    """Run as real processes: fast, exit 2 for a missing run, no TensorFlow loaded."""
    code = (
        "import sys; from pipelines.__main__ import main; "
        "codes = [main(['runs', 'list', '--json']), main(['worker', '20000101-000000-beef'])]; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; print(codes)"
    )
    env = {**os.environ, "RUNS_DIR": str(runs_dir)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("[0, 2]")
    assert "no run with id" in done.stderr


def test_train_follows_a_run_a_pool_worker_claimed_first(store) -> None:
    """The race: a pool starts between ``train`` creating its run and claiming it."""
    from pipelines.commands.train import _claimed_here

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        taken = store.create_run(tiny_config())
        assert lifecycle.claim_next_queued(store, other.pid) == taken
        assert _claimed_here(store, taken) is False  # follow it instead of failing
        mine = store.create_run(tiny_config())
        assert _claimed_here(store, mine) is True
        assert store.get_run(mine).worker_pid == os.getpid()
    finally:
        other.kill()
        other.wait()
