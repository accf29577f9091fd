"""The run store: every experiment's config, status, metrics, events and results.

One SQLite database in WAL mode at ``settings.runs_dir()/runs.sqlite3``, with each run's
files (worker log, saved models) in ``settings.runs_dir()/<run_id>/``. Any process that
opens the store sees everything: the worker writes, the dashboard and CLI read.

The store persists and reads; it knows nothing of processes. The worker protocol (claiming
a run and a slot, heartbeats, stop requests, finishing, reaping dead workers) is
:mod:`pipelines.runs.lifecycle`, which writes the ``runs`` table through
:meth:`RunStore.transaction`. Runs are read as :class:`pipelines.runs.run.Run`.

Contracts:

* Each write method commits before it returns, so a crash loses at most the row being
  written, and other processes see a row as soon as the call returns.
* Readers never block the writer (WAL). Each thread of each process gets its own
  connection; a :class:`RunStore` object may be shared between threads.
* Timestamps are Unix seconds (``float``); JSON values are stored as JSON, never pickled.
* Reads never write. A run whose worker process has gone (killed, crashed machine) stays
  ``running`` in the store until :func:`pipelines.runs.lifecycle.reap` marks it
  ``interrupted`` (its rows are kept); whoever polls runs reaps first: the job manager, the
  worker waiting for a slot, ``python -m pipelines runs``, the dashboard's refresh.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines import settings
from pipelines.errors import UserError, disk_full_error, is_disk_full
from pipelines.runs.run import ACTIVE, STATUSES, TERMINAL, Run
from pipelines.training.config import ExperimentConfig

if TYPE_CHECKING:
    import pandas

STORE_FILE = "runs.sqlite3"
SCHEMA_VERSION = 6
BUSY_TIMEOUT_S = 10.0

# The statuses and Run live in run.py; importing them from here works too.
__all__ = ["ACTIVE", "STATUSES", "TERMINAL", "Run", "RunStore"]

BATCH_COLUMNS = [
    "arm",
    "phase",
    "epoch",
    "step",
    "global_step",
    "loss",
    "accuracy",
    "wall_s",
    "task",
]
EPOCH_COLUMNS = [
    "arm",
    "phase",
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "val_balanced_accuracy",
    "epoch_s",
    "images_per_s",
    "task",
]
METRIC_COLUMNS = [
    "run_id",
    "kind",
    "arm",
    "phase",
    "epoch",
    "step",
    "global_step",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "val_balanced_accuracy",
    "wall_s",
    "epoch_s",
    "images_per_s",
    "time",
    "task",
]

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    worker_pid INTEGER,
    worker_started REAL,
    heartbeat REAL,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    summary TEXT,
    sweep_id TEXT,
    trial INTEGER,
    exercise_id TEXT,
    group_name TEXT
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, seq);
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    arm TEXT NOT NULL,
    phase TEXT,
    epoch INTEGER,
    step INTEGER,
    global_step INTEGER,
    loss REAL,
    accuracy REAL,
    val_loss REAL,
    val_accuracy REAL,
    val_balanced_accuracy REAL,
    wall_s REAL,
    epoch_s REAL,
    images_per_s REAL,
    time REAL NOT NULL,
    task TEXT
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics (run_id, kind, arm, id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    time REAL NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id, id);
CREATE TABLE IF NOT EXISTS progress (
    run_id TEXT NOT NULL,
    arm TEXT NOT NULL,
    data TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (run_id, arm)
);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL,
    arm TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, arm)
);
"""
# The warm worker pool (pipelines.runs.pool): one row per pool worker process, written by
# pipelines.runs.lifecycle. ``started`` is the process's start time (against pid reuse).
_WORKERS_TABLE = """
CREATE TABLE IF NOT EXISTS workers (
    pid INTEGER PRIMARY KEY,
    started REAL,
    registered REAL NOT NULL,
    heartbeat REAL NOT NULL,
    runs_done INTEGER NOT NULL DEFAULT 0,
    run_id TEXT,
    rss_mb REAL,
    retire INTEGER NOT NULL DEFAULT 0
)"""
_SCHEMA += _WORKERS_TABLE + ";\n"
# A group exercise (pipelines.runs.exercise): its rules and the groups that joined it;
# a run a group started names the exercise and the group (runs.exercise_id, group_name).
_EXERCISE_TABLES = """
CREATE TABLE IF NOT EXISTS exercises (
    exercise_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    rules TEXT NOT NULL,
    opened REAL NOT NULL,
    closed REAL
);
CREATE TABLE IF NOT EXISTS exercise_groups (
    exercise_id TEXT NOT NULL,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    side TEXT,
    joined REAL NOT NULL,
    code TEXT,
    PRIMARY KEY (exercise_id, name_key)
)"""
_SCHEMA += _EXERCISE_TABLES + ";\n"
# _MIGRATIONS[v - 1] takes a store from schema v to v + 1; rows already stored are kept.
_MIGRATIONS = [
    # 2: balanced accuracy beside accuracy (older rows have none: NULL).
    "ALTER TABLE metrics ADD COLUMN val_balanced_accuracy REAL",
    # 3: the warm worker pool's processes.
    _WORKERS_TABLE,
    # 4: a run may belong to a series/sweep (its id) as its trial number (older runs: NULL).
    "ALTER TABLE runs ADD COLUMN sweep_id TEXT; ALTER TABLE runs ADD COLUMN trial INTEGER",
    # 5: group exercises; a run may name the exercise and group that started it (else NULL).
    _EXERCISE_TABLES + "; ALTER TABLE runs ADD COLUMN exercise_id TEXT;"
    " ALTER TABLE runs ADD COLUMN group_name TEXT",
    # 6: a HydraNet's metric rows name their task (single-task rows: NULL).
    "ALTER TABLE metrics ADD COLUMN task TEXT",
]
_TABLES_WITH_RUN_ROWS = ("metrics", "events", "progress", "results")


class RunStore:
    """The store under ``root`` (default ``settings.runs_dir()``), created if absent.

    Raises :class:`UserError` if ``root`` is not a folder or its database file is not a
    SQLite database (or was written by a newer version of this program).
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root if root is not None else settings.runs_dir())
        self.path = self.root / STORE_FILE
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"runs folder {str(self.root)!r} is a file; set RUNS_DIR to a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create runs folder {str(self.root)!r}: {e}") from None
        self._local = threading.local()
        self._guard(self._create_schema)

    # --- connections --------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a fresh one after a fork)."""
        local = self._local
        if getattr(local, "conn", None) is None or local.pid != os.getpid():
            local.conn = self._guard(self._connect)
            local.pid = os.getpid()
        return local.conn

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: every statement commits by itself unless inside an explicit
        # BEGIN, so each write call is durable when it returns.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except sqlite3.DatabaseError as e:
            if "not a database" in str(e) or "malformed" in str(e):
                raise UserError(
                    f"store file {str(self.path)!r} is not a SQLite database; move it away "
                    "or set RUNS_DIR to another folder"
                ) from None
            raise

    def _create_schema(self) -> None:
        conn = self._conn()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise UserError(
                f"store file {str(self.path)!r} was written by a newer version of this program "
                f"(schema {version}, this one knows {SCHEMA_VERSION})"
            )
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        if version < SCHEMA_VERSION:
            with self.transaction() as c:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                # A new file (version 0) has the latest tables already.
                for step in _MIGRATIONS[version - 1 :] if version else []:
                    for sql in step.split(";"):
                        if sql.strip() and not _already_applied(c, sql):
                            c.execute(sql)
                c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on this thread's connection that takes the write lock up
        front (waits up to the busy timeout), so read-then-write sequences cannot interleave
        with other writers. Store reads on this thread inside the block (``get_run``, ...)
        are part of it. Commits at the end, rolls back on an exception; a full disk raises
        :class:`UserError` saying so. For :mod:`pipelines.runs.lifecycle`."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise self._explain(e) from None

    def _write(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        try:
            return self._conn().execute(sql, params)
        except sqlite3.Error as e:
            raise self._explain(e) from None

    def _explain(self, error: sqlite3.Error) -> Exception:
        """A full disk as a :class:`UserError` saying so; other errors unchanged."""
        if is_disk_full(error):
            return disk_full_error(f"writing the run store {str(self.path)!r}")
        return error

    def _require(self, run_id: str) -> sqlite3.Row:
        row = self._conn().execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise UserError(
                f"no run with id {run_id!r}; `python -m pipelines runs list` shows them"
            )
        return row

    # --- runs ---------------------------------------------------------------------------

    def create_run(
        self,
        config: ExperimentConfig,
        status: str = "queued",
        *,
        sweep_id: str | None = None,
        trial: int | None = None,
        exercise_id: str | None = None,
        group_name: str | None = None,
    ) -> str:
        """Add a run with ``config`` and return its id (``YYYYMMDD-HHMMSS-xxxx``);
        ``sweep_id``/``trial`` tag it as trial number ``trial`` of a series or sweep,
        ``exercise_id``/``group_name`` as started by that group of a group exercise."""
        _check_status(status)
        if trial is not None and sweep_id is None:
            raise ValueError("a trial number needs a sweep_id")
        data = _dumps(config.to_dict())
        while True:
            now = time.time()
            run_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + "-"
            run_id += secrets.token_hex(2)
            try:
                self._write(
                    "INSERT INTO runs (run_id, created, updated, status, config, sweep_id,"
                    " trial, exercise_id, group_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, now, now, status, data, sweep_id, trial, exercise_id, group_name),
                )
                return run_id
            except sqlite3.IntegrityError:  # the same id within one second: draw again
                continue

    def get_run(self, run_id: str) -> Run:
        """The run with its progress; ``UserError`` if there is none. Never writes."""
        row = self._require(run_id)
        return _run(row, self._progress([run_id]).get(run_id, {}))

    def list_runs(self) -> list[Run]:
        """Every run, newest first, each as :meth:`get_run` returns it. Never writes."""
        rows = self._conn().execute("SELECT * FROM runs ORDER BY seq DESC").fetchall()
        progress = self._progress(None)
        return [_run(r, progress.get(r["run_id"], {})) for r in rows]

    def runs_with_status(self, *statuses: str) -> list[Run]:
        """Runs in any of ``statuses``, oldest first (queue order). Never writes."""
        marks = ",".join("?" * len(statuses))
        rows = (
            self._conn()
            .execute(f"SELECT * FROM runs WHERE status IN ({marks}) ORDER BY seq", statuses)
            .fetchall()
        )
        progress = self._progress([r["run_id"] for r in rows]) if rows else {}
        return [_run(r, progress.get(r["run_id"], {})) for r in rows]

    def runs_in_sweep(self, sweep_id: str) -> list[Run]:
        """The runs tagged with ``sweep_id``, in trial order (then creation). Never writes."""
        rows = (
            self._conn()
            .execute("SELECT * FROM runs WHERE sweep_id = ? ORDER BY trial, seq", (sweep_id,))
            .fetchall()
        )
        progress = self._progress([r["run_id"] for r in rows]) if rows else {}
        return [_run(r, progress.get(r["run_id"], {})) for r in rows]

    def sweep_ids(self) -> list[str]:
        """Every sweep id with at least one run, newest (latest-created run) first."""
        rows = self._conn().execute(
            "SELECT sweep_id FROM runs WHERE sweep_id IS NOT NULL"
            " GROUP BY sweep_id ORDER BY MAX(seq) DESC"
        )
        return [r[0] for r in rows]

    def set_summary(self, run_id: str, summary: dict[str, Any]) -> None:
        self._write(
            "UPDATE runs SET summary = ?, updated = ? WHERE run_id = ?",
            (_dumps(summary), time.time(), run_id),
        )

    def delete_run(self, run_id: str) -> None:
        """Remove the run's rows and its artefact folder; refuses an active run. A run whose
        worker died is active until reaped: reap first (:func:`pipelines.runs.lifecycle.reap`)."""
        with self.transaction() as c:
            status = self._require(run_id)["status"]
            if status in ACTIVE:
                raise UserError(f"run {run_id} is {status}; stop it first")
            for table in (*_TABLES_WITH_RUN_ROWS, "runs"):
                c.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
        shutil.rmtree(self.artefact_dir(run_id, create=False), ignore_errors=True)

    def artefact_dir(self, run_id: str, create: bool = True) -> Path:
        """``<root>/<run_id>/`` for the run's files (worker log, models), created."""
        if not _SAFE_ID.fullmatch(run_id):
            raise UserError(f"{run_id!r} is not a valid run id")
        path = self.root / run_id
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    # --- group exercises (written by pipelines.runs.exercise) ---------------------------

    def exercise_rows(self) -> list[dict[str, Any]]:
        """Every group exercise (``exercise_id, name, rules`` (JSON text), ``opened,
        closed``), newest first. Never writes."""
        rows = self._conn().execute("SELECT * FROM exercises ORDER BY opened DESC, rowid DESC")
        return [dict(r) for r in rows]

    def exercise_group_rows(self, exercise_id: str) -> list[dict[str, Any]]:
        """The groups that joined ``exercise_id`` (``name, name_key, side, joined, code``),
        in the order they joined. Never writes."""
        rows = self._conn().execute(
            "SELECT name, name_key, side, joined, code FROM exercise_groups"
            " WHERE exercise_id = ?"
            " ORDER BY joined, rowid",
            (exercise_id,),
        )
        return [dict(r) for r in rows]

    def runs_of_exercise(self, exercise_id: str) -> list[Run]:
        """The runs the groups of ``exercise_id`` started, oldest first. Never writes."""
        rows = (
            self._conn()
            .execute("SELECT * FROM runs WHERE exercise_id = ? ORDER BY seq", (exercise_id,))
            .fetchall()
        )
        progress = self._progress([r["run_id"] for r in rows]) if rows else {}
        return [_run(r, progress.get(r["run_id"], {})) for r in rows]

    # --- the warm worker pool -----------------------------------------------------------

    def pool_workers(self) -> list[dict[str, Any]]:
        """The registered pool worker processes (``pid, started, registered, heartbeat,
        runs_done, run_id, rss_mb, retire``), oldest first, as recorded: whether each is
        still alive is :func:`pipelines.runs.lifecycle.live_pool_workers`'. Never writes."""
        rows = self._conn().execute("SELECT * FROM workers ORDER BY registered, pid")
        return [dict(r) for r in rows]

    # --- metrics, events, progress, results ---------------------------------------------

    def log_batch(
        self,
        run_id: str,
        arm: str,
        phase: str,
        epoch: int,
        step: int,
        loss: float,
        accuracy: float,
        wall_s: float,
        global_step: int | None = None,
        task: str | None = None,
    ) -> None:
        """One ``batch`` row: the loss/accuracy of ``step`` of ``epoch``. ``phase`` is the
        trainer's name for it (``feature_extraction``, ``fine_tuning``); ``epoch`` counts
        across phases as the trainer does; ``wall_s`` is seconds since training began;
        ``task`` names a HydraNet's head (None: a single-task run)."""
        self._write(
            "INSERT INTO metrics (run_id, kind, arm, phase, epoch, step, global_step, loss,"
            " accuracy, wall_s, time, task) VALUES (?, 'batch', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                arm,
                phase,
                epoch,
                step,
                global_step,
                _num(loss),
                _num(accuracy),
                _num(wall_s),
                time.time(),
                task,
            ),
        )

    def log_epoch(
        self,
        run_id: str,
        arm: str,
        phase: str,
        epoch: int,
        loss: float,
        accuracy: float,
        val_loss: float | None,
        val_accuracy: float | None,
        epoch_s: float,
        images_per_s: float,
        val_balanced_accuracy: float | None = None,
        task: str | None = None,
    ) -> None:
        """One ``epoch`` row: training and validation metrics at the end of ``epoch``;
        ``epoch_s`` its training seconds, ``images_per_s`` its training throughput,
        ``val_balanced_accuracy`` the mean of the classes' recalls; ``task`` names a
        HydraNet's head (None: a single-task run)."""
        self._write(
            "INSERT INTO metrics (run_id, kind, arm, phase, epoch, loss, accuracy, val_loss,"
            " val_accuracy, val_balanced_accuracy, epoch_s, images_per_s, time, task)"
            " VALUES (?, 'epoch', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                arm,
                phase,
                epoch,
                _num(loss),
                _num(accuracy),
                _num(val_loss),
                _num(val_accuracy),
                _num(val_balanced_accuracy),
                _num(epoch_s),
                _num(images_per_s),
                time.time(),
                task,
            ),
        )

    def curves(self, run_id: str, arm: str | None = None, kind: str = "epoch") -> pandas.DataFrame:
        """Metric rows of one ``kind`` (``epoch`` or ``batch``), in the order written, as a
        DataFrame with ``BATCH_COLUMNS``/``EPOCH_COLUMNS`` plus ``time``; one query."""
        import pandas

        columns = {"epoch": EPOCH_COLUMNS, "batch": BATCH_COLUMNS}.get(kind)
        if columns is None:
            raise ValueError(f"kind must be 'epoch' or 'batch', not {kind!r}")
        self._require(run_id)
        sql = f"SELECT {', '.join(columns)}, time FROM metrics WHERE run_id = ? AND kind = ?"
        params: tuple = (run_id, kind)
        if arm is not None:
            sql, params = sql + " AND arm = ?", (*params, arm)
        frame = pandas.read_sql_query(sql + " ORDER BY id", self._conn(), params=params)
        return _int_columns(frame)

    def best_val_accuracy(self, metric: str = "val_accuracy") -> dict[str, dict[str, float]]:
        """``{run_id: {arm: best epoch value of metric}}`` for every run with epoch rows;
        ``metric`` is ``val_accuracy`` or ``val_balanced_accuracy``."""
        if metric not in ("val_accuracy", "val_balanced_accuracy"):
            raise ValueError(
                f"metric must be val_accuracy or val_balanced_accuracy, not {metric!r}"
            )
        rows = self._conn().execute(
            f"SELECT run_id, arm, MAX({metric}) FROM metrics WHERE kind = 'epoch'"
            f" AND {metric} IS NOT NULL GROUP BY run_id, arm"
        )
        out: dict[str, dict[str, float]] = {}
        for run_id, arm, best in rows:
            out.setdefault(run_id, {})[arm] = best
        return out

    def export_csv(self, run_id: str, path: str | Path) -> int:
        """Write every metric row of the run (both kinds) to ``path``; return the count."""
        import pandas

        self._require(run_id)
        frame = pandas.read_sql_query(
            f"SELECT {', '.join(METRIC_COLUMNS)} FROM metrics WHERE run_id = ? ORDER BY id",
            self._conn(),
            params=(run_id,),
        )
        try:
            _int_columns(frame).to_csv(path, index=False)
        except OSError as e:
            raise UserError(f"cannot write CSV file {str(path)!r}: {e.strerror or e}") from None
        return len(frame)

    def log_event(self, run_id: str, message: str) -> None:
        """A timestamped log line shown with the run (``"phase 2 started: ..."``)."""
        self._write(
            "INSERT INTO events (run_id, time, message) VALUES (?, ?, ?)",
            (run_id, time.time(), str(message)),
        )

    def events(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        """``[{"id", "time", "message"}]`` in order; ``after`` an id to fetch only newer."""
        self._require(run_id)
        rows = self._conn().execute(
            "SELECT id, time, message FROM events WHERE run_id = ? AND id > ? ORDER BY id",
            (run_id, after),
        )
        return [dict(r) for r in rows]

    def set_progress(self, run_id: str, arm: str, progress: dict[str, Any]) -> None:
        """Replace the arm's progress (phase, epoch, epochs_total, step, eta_s, ...)."""
        self._write(
            "INSERT INTO progress (run_id, arm, data, updated) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (run_id, arm) DO UPDATE SET data = excluded.data,"
            " updated = excluded.updated",
            (run_id, arm, _dumps(progress), time.time()),
        )

    def _progress(self, run_ids: list[str] | None) -> dict[str, dict[str, Any]]:
        sql, params = "SELECT run_id, arm, data FROM progress", ()
        if run_ids is not None:
            sql += f" WHERE run_id IN ({','.join('?' * len(run_ids))})"
            params = tuple(run_ids)
        out: dict[str, dict[str, Any]] = {}
        for run_id, arm, data in self._conn().execute(sql, params):
            out.setdefault(run_id, {})[arm] = json.loads(data)
        return out

    def save_result(self, run_id: str, arm: str, result: dict[str, Any]) -> None:
        """Store (replace) the arm's final result: ``confusion`` (list of lists),
        ``classes``, ``predictions`` ([{path, label, predicted, probabilities}]), ..."""
        self._write(
            "INSERT INTO results (run_id, arm, data) VALUES (?, ?, ?)"
            " ON CONFLICT (run_id, arm) DO UPDATE SET data = excluded.data",
            (run_id, arm, _dumps(result)),
        )

    def result(self, run_id: str, arm: str) -> dict[str, Any] | None:
        self._require(run_id)
        row = (
            self._conn()
            .execute("SELECT data FROM results WHERE run_id = ? AND arm = ?", (run_id, arm))
            .fetchone()
        )
        return None if row is None else json.loads(row[0])


# --- helpers --------------------------------------------------------------------------------


_ADD_COLUMN = re.compile(r"\s*ALTER TABLE (\w+) ADD COLUMN (\w+)", re.IGNORECASE)


def _already_applied(conn: sqlite3.Connection, sql: str) -> bool:
    """Whether ``sql`` adds a column the table already has (a store written by a
    development version that numbered its steps differently): then it is skipped, so an
    upgrade never fails on a column that is there."""
    match = _ADD_COLUMN.match(sql)
    if match is None:
        return False
    table, column = match.groups()
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}; one of {', '.join(STATUSES)}")


def _run(row: sqlite3.Row, progress: dict[str, Any]) -> Run:
    data = dict(row)
    data["config"] = json.loads(data["config"])
    data["summary"] = None if data["summary"] is None else json.loads(data["summary"])
    data["progress"] = progress
    return Run.from_dict(data)


def _int_columns(frame: pandas.DataFrame) -> pandas.DataFrame:
    """Integer columns as nullable ``Int64`` (read_sql_query makes floats of them where
    any value is NULL, so a CSV would say ``step`` 3.0)."""
    for column in ("epoch", "step", "global_step"):
        if column in frame.columns:
            frame[column] = frame[column].astype("Int64")
    return frame


def _plain(value: Any) -> Any:
    """``value`` as strict-JSON-ready Python: numpy -> lists/numbers, Path -> str,
    NaN/inf -> None (so every reader, the CLI's ``--json`` included, gets valid JSON)."""
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _dumps(value: Any) -> str:
    return json.dumps(_plain(value), allow_nan=False)


def _num(value: Any) -> float | None:
    """A float for SQLite, or None for None/NaN (SQLite has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
