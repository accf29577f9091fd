"""The pages' one door to the engine: cached stores, catalogue, block tables, data set
reports, uploads, models; and the one way engine errors reach the user.

Components and views (``dashboard/components``, ``dashboard/views``) import nothing from
``pipelines`` and never hold the store: they call the functions here, and show a failure
through :func:`shown_errors` (a block of calls, shown with ``st.error``) or :func:`attempt`
(one call, its error's text returned). The work itself is done by plain functions in
``pipelines/`` (``data.uploads``, ``data.samples``, ``training.predict``,
``training.export``); this module adds the Streamlit caches around them.

Nothing here trains. Runs are started and stopped through :class:`pipelines.runs.jobs.JobManager`
(worker processes); everything shown is read from :class:`pipelines.runs.store.RunStore`,
whose reads never write: :func:`status`, :func:`selected_run` and :func:`list_runs` reap
(:func:`pipelines.runs.lifecycle.reap`) first, so a run whose worker died shows
``interrupted``.
Every door that changes something (start, stop, delete, upload, export builds, loading a
backbone that is not built in, classifying an uploaded image) is wrapped in
:func:`dashboard.roles.presenter_only` (or calls :func:`dashboard.roles.require_presenter`):
on a shared server a viewer's call is refused here, the one place, whatever the page
rendered or a client sent. A new state-changing door gets the decorator too.
Locations are read from :mod:`pipelines.settings` on every call, so the cache keys include
them (tests point them at temporary folders).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import roles
from dashboard.roles import presenter_only
from pipelines import settings
from pipelines.backbones.blocks import freeze_report as freeze_report
from pipelines.errors import UserError as UserError
from pipelines.numerics import is_imbalanced as is_imbalanced
from pipelines.runs import exercise as _exercise
from pipelines.runs import lifecycle, pool
from pipelines.runs.exercise import Exercise as Exercise
from pipelines.runs.exercise import Group as Group
from pipelines.runs.jobs import JobManager
from pipelines.runs.run import ACTIVE as ACTIVE
from pipelines.runs.run import Run as Run
from pipelines.runs.store import RunStore
from pipelines.training.config import ExperimentConfig

# The job manager is shared by every session's thread; it keeps a dict of its children.
_JOBS_LOCK = threading.Lock()


def error_text(error: BaseException) -> str:
    """A user's error as its message; anything else as ``Type: message``."""
    if isinstance(error, UserError):
        return str(error)
    return f"{type(error).__name__}: {error}"


@contextmanager
def shown_errors(where: Any = None) -> Iterator[None]:
    """Run a block of engine calls; show a failure with ``st.error`` instead of a traceback.

    Streamlit's own control flow (``st.rerun``, ``st.stop``) derives from BaseException and
    passes through.
    """
    try:
        yield
    except Exception as e:  # noqa: BLE001 - every failure becomes a message in the UI
        (where or st).error(error_text(e))


class Attempt(NamedTuple):
    """What :func:`attempt` got: the call's ``value`` (None if it failed) and ``error``, the
    failure's text as shown to the user (None if it worked)."""

    value: Any
    error: str | None


def attempt(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Attempt:
    """Call ``fn(*args, **kwargs)``; a failure becomes its :func:`error_text` instead of an
    exception, for a caller that shows it somewhere of its own (a warning, a list, a
    message kept in Session State for the next run of the page)."""
    try:
        return Attempt(fn(*args, **kwargs), None)
    except Exception as e:  # noqa: BLE001 - every failure becomes a message in the UI
        return Attempt(None, error_text(e))


def _runs_root() -> str:
    return _resolved(str(settings.runs_dir()), os.getcwd())


@functools.lru_cache(maxsize=16)
def _resolved(path: str, cwd: str) -> str:
    # Every live refresh of every session asks for the store; resolving is a realpath()
    # walk of system calls, so it is done once per setting and working folder.
    return str(Path(cwd, path).resolve())


@st.cache_resource(show_spinner=False)
def _store(root: str) -> RunStore:
    return RunStore(Path(root))


@st.cache_resource(show_spinner=False)
def _jobs(root: str) -> JobManager:
    # The dashboard keeps one warm worker by default (WARM_WORKERS=0: one process per run).
    return JobManager(_store(root), warm_workers=pool.warm_workers_from_env(default=1))


@st.cache_resource(show_spinner=False)
def _pool(root: str) -> int:
    with _JOBS_LOCK:
        return _jobs(root).ensure_pool()


def start_pool() -> None:
    """Start the warm worker pool once per server and runs folder, so the first Start is
    already warm (``app.py`` calls it on every page; later calls cost nothing). The job
    manager replaces dead pool workers whenever it polls runs. A failure shows nowhere:
    Start then spawns a worker per run."""
    attempt(_pool, _runs_root())


def store() -> RunStore:
    """The run store at ``RUNS_DIR`` (one per folder, shared by all sessions)."""
    return _store(_runs_root())


def store_problem() -> str | None:
    """Why the run store can't be read now (``RUNS_DIR`` is a file, its database is not
    SQLite, ...), or None. ``app.py`` shows it on every page. One small query, so a file
    broken while the server runs is noticed too (the store object itself is cached)."""
    return attempt(lambda: store().runs_with_status("running")).error


def store_or_stop() -> RunStore:
    """:func:`store`, or the page stopped if it can't be read (``app.py`` has shown why)."""
    if store_problem() is not None:
        st.stop()
    return store()


def store_root() -> str:
    """The run store's folder (resolved ``RUNS_DIR``): a cache key for what is read from it."""
    return _runs_root()


def require_store() -> None:
    """Stop the page if the run store can't be read (``app.py`` has shown why)."""
    store_or_stop()


def get_run(run_id: str) -> Run:
    """The run as stored (not reaped: see :func:`status`); UserError if there is none."""
    return store().get_run(run_id)


def best_val_accuracy(metric: str = "val_accuracy") -> dict[str, dict[str, float]]:
    """``{run_id: {arm: best validation accuracy}}`` of every run (``metric``:
    ``val_accuracy`` or ``val_balanced_accuracy``)."""
    return store().best_val_accuracy(metric)


def events(run_id: str) -> list[dict[str, Any]]:
    """The run's log events, oldest first."""
    return store().events(run_id)


def result(run_id: str, arm: str) -> dict[str, Any] | None:
    """The arm's stored results (confusion matrix, predictions), or None."""
    return store().result(run_id, arm)


def overlay_curves(run_ids: list[str]) -> dict[str, pd.DataFrame]:
    """``{run_id: epoch rows}`` of the runs to overlay (see :mod:`dashboard.history`)."""
    from dashboard import history

    return history.overlay_curves(store(), run_ids)


@presenter_only("stop")
def request_stop(run_id: str) -> None:
    """Ask the run's worker to stop after its current batch (a run still waiting for a
    busy pool stops at once)."""
    lifecycle.request_stop(store(), run_id)
    lifecycle.drop_unclaimed(store(), run_id)


@presenter_only("start")
def start(config: ExperimentConfig) -> str:
    """Queue ``config`` and spawn its worker process; return the run id."""
    with _JOBS_LOCK:
        return _jobs(_runs_root()).start(config)


@presenter_only("start")
def start_near_far() -> str:
    """Queue the "Near or far" series (the lesson's defaults: both named data sets, every
    third block of EfficientNet-Lite0, both arms); return its sweep id. Every config is
    checked before the first run is queued."""
    from pipelines.runs import series

    configs = series.near_far_configs(
        series.near_far_base(), series.NEAR_FAR_DATASETS, series.NEAR_FAR_CUTS
    )
    with _JOBS_LOCK:
        sweep_id, _ = series.start_series(_jobs(_runs_root()), configs, series.NEAR_FAR_NAME)
    return sweep_id


@presenter_only("start")
def start_lr_find(config: ExperimentConfig, phase: int, arm: str) -> str:
    """Start the learning-rate finder for ``arm`` in ``phase`` of ``config`` in its own
    process (:func:`pipelines.runs.lr_jobs.start`: checked first); return its id."""
    from pipelines.runs import lr_jobs

    return lr_jobs.start(config, phase=phase, arm=arm)


def lr_find_result(job_id: str) -> dict[str, Any]:
    """The finder's result so far (:func:`pipelines.runs.lr_jobs.read`): ``ended`` says
    whether it is still going."""
    from pipelines.runs import lr_jobs

    return lr_jobs.read(job_id)


@presenter_only("stop")
def stop_lr_find(job_id: str) -> None:
    """Stop the finder within 2 s (:func:`pipelines.runs.lr_jobs.stop`)."""
    from pipelines.runs import lr_jobs

    lr_jobs.stop(job_id)


def lr_find_active(ended: str | None) -> bool:
    """Whether a finder whose result says ``ended`` is still going."""
    from pipelines.runs.lr_jobs import FINAL

    return ended not in FINAL


@presenter_only("start")
def start_hydra() -> str:
    """Queue the HydraNet preset: ``shared`` against ``separate`` on the chest X-rays' two
    tasks, as one series (their link for the cost panel); return the shared run's id."""
    from pipelines.runs import series
    from pipelines.training.hydra import PRESET_NAME, preset_configs

    configs = preset_configs()  # each checked as the jobs queue it
    with _JOBS_LOCK:
        _, run_ids = series.start_series(_jobs(_runs_root()), configs, PRESET_NAME)
    return run_ids[0]


def hydra_costs(run_id: str) -> dict[str, dict[str, Any]]:
    """The measured cost of a HydraNet run and of its counterpart (the other ``hydra``
    mode: the same series, else the newest finished run that differs only in it), by
    mode: ``{"shared": cost, "separate": cost}``, each as the run's summary stores it."""
    s = store()
    run = s.get_run(run_id)
    out: dict[str, dict[str, Any]] = {}
    if (cost := (run.summary or {}).get("cost")) is not None:
        out[cost["hydra"]] = {**cost, "run_id": run_id}
    if run.config is None:
        return out
    other = "separate" if run.config.hydra == "shared" else "shared"
    wanted = {**run.config.to_dict(), "hydra": other}
    if run.sweep_id:
        candidates = s.runs_in_sweep(run.sweep_id)
    else:
        candidates = [r for r in s.list_runs() if r.config is not None]
    for r in candidates:
        cost = (r.summary or {}).get("cost")
        if r.config is not None and cost and r.config.to_dict() == wanted:
            out[other] = {**cost, "run_id": r.run_id}
            break
    return out


def sweep_ids() -> list[str]:
    """Every series (sweep id) in the store, newest first. The trials of a sweep
    (:mod:`pipelines.sweeps`, ids ``sweep-…``) are tagged the same way but have their own
    page, so they are left out."""
    return [i for i in store().sweep_ids() if not i.startswith("sweep-")]


# --- sweeps: Optuna studies (pipelines.sweeps) in SWEEP_STORAGE or RUNS_DIR's journal ------


@presenter_only("start")
def start_sweep(spec: Any, workers: int | None = None) -> str:
    """Start the sweep's trial workers (:func:`pipelines.sweeps.start_sweep`, validated
    there again) and return its id at once; the trials are ordinary runs in the store."""
    from pipelines import sweeps

    return sweeps.start_sweep(spec, workers=workers)


def sweeps() -> list[dict[str, Any]]:
    """Every sweep, newest first: ``sweep_id, state, trials, best_value, created``."""
    from pipelines import sweeps as engine

    return engine.list_sweeps()


def sweep_trials(sweep_id: str) -> list[dict[str, Any]]:
    """The sweep's trials as the study has them (remote workers' too); see
    :func:`pipelines.sweeps.sweep_trials`."""
    from pipelines import sweeps as engine

    return engine.sweep_trials(sweep_id)


def sweep_spec(sweep_id: str) -> Any:
    """The sweep's :class:`pipelines.sweeps.SweepSpec`."""
    from pipelines import sweeps as engine

    return engine.sweep_spec(sweep_id)


@presenter_only("stop")
def stop_sweep(sweep_id: str) -> None:
    """End the sweep: no new trials; running ones stop like a run's Stop."""
    from pipelines import sweeps as engine

    engine.stop_sweep(sweep_id)


@presenter_only("stop")
def force_stop_sweep(sweep_id: str) -> dict[str, list[int]]:
    """Kill this machine's workers that still run the sweep's trials after its Stop
    (:func:`pipelines.sweeps.force_stop`): their runs end stopped, rows kept; the trials
    fail and are not run again. ``{"killed", "trials", "elsewhere"}``."""
    from pipelines import sweeps as engine

    return engine.force_stop(sweep_id)


def trial_config(sweep_id: str, params: dict[str, Any]) -> ExperimentConfig:
    """The experiment config of the sweep's trial with ``params`` (the fixed part with the
    trial's values), also for a trial whose run lives on another machine."""
    return sweep_spec(sweep_id).config_for(dict(params))


def finished_runs() -> list[Run]:
    """Completed runs with a training time in their summary (for the sweep's estimate)."""
    return [
        r
        for r in store().runs_with_status("completed")
        if r.config is not None and (r.summary or {}).get("wall_s")
    ]


def max_running() -> int:
    """How many runs may train at once (``MAX_RUNNING_EXPERIMENTS``): a sweep's default
    number of workers."""
    from pipelines.runs.jobs import max_running_from_env

    return max_running_from_env()


class SeriesView(NamedTuple):
    """What the Series chart shows: the table's ``rows``, whether any run is still
    ``active``, and the balanced-accuracy chance level per data set (1 / classes)."""

    rows: list[dict[str, Any]]
    active: bool
    balanced_chance: dict[str, float]


def series_view(sweep_id: str) -> SeriesView:
    """The series' table (:func:`pipelines.runs.series.depth_table`), reaped first, with
    the best epoch so far of runs still going."""
    from pipelines.runs.series import depth_table

    s = store()
    lifecycle.reap(s)
    runs = s.runs_in_sweep(sweep_id)
    active = any(r.active for r in runs)
    best = None
    if active:
        best = {m: s.best_val_accuracy(m) for m in ("val_accuracy", "val_balanced_accuracy")}
    chance = {}
    for run in runs:
        classes = (run.summary or {}).get("classes")
        if classes:
            chance[str(run.config_dict.get("dataset", ""))] = 1 / len(classes)
    return SeriesView(depth_table(runs, best), active, chance)


# --- group exercises (pipelines.runs.exercise) ---------------------------------------------
# This session's group lives in Session State only (never in the URL): a reload forgets it,
# and the group's code continues it (join_group with code).
_MY_GROUP = "_groups.mine"
BOARD_SNAPSHOT_S = 0.25


def exercise_now() -> Exercise | None:
    """The open exercise, else the newest closed one (its board stays), else None."""
    return _exercise.current(store())


@presenter_only("exercise")
def open_exercise(name: str, rules: dict[str, Any]) -> Exercise:
    """Open an exercise with :class:`pipelines.runs.exercise.Rules` given as a dict."""
    opened = _exercise.open_exercise(store(), name, _exercise.Rules.from_dict(rules))
    _board.clear()
    return opened


@presenter_only("exercise")
def close_exercise(exercise_id: str) -> list[str]:
    """Close it; its queued runs are cancelled with the reason (rows kept). Their ids."""
    cancelled = _exercise.close(store(), exercise_id)
    _board.clear()
    return cancelled


@presenter_only("stop")
def stop_group_run(exercise_id: str, group: str) -> str | None:
    """Ask any group's active run to stop (the presenter's control); its id or None."""
    return _exercise.stop_group_run(store(), exercise_id, group)


def join_group(exercise_id: str, name: str, side: str | None = None, code: str = "") -> Group:
    """Join the exercise as a new group (``code`` empty) or continue as the group ``name``
    with its code; this session is then that group. A viewer's action, within the rules."""
    s = store()
    if str(code or "").strip():
        group = _exercise.rejoin(s, exercise_id, name, code)
    else:
        group = _exercise.join(s, exercise_id, name, side)
    st.session_state[_MY_GROUP] = {"exercise_id": exercise_id, "name": group.name}
    st.session_state[_MY_GROUP + ".code"] = group.code
    _board.clear()  # the group sees itself on the board at once
    return group


def leave_group() -> None:
    """This session is no group any more (the group stays; its code continues it)."""
    st.session_state.pop(_MY_GROUP, None)
    st.session_state.pop(_MY_GROUP + ".code", None)


def my_group_code() -> str | None:
    """The code of this session's group, shown to its members only."""
    return st.session_state.get(_MY_GROUP + ".code")


def my_group() -> tuple[Exercise, Group] | None:
    """This session's exercise and group, while that exercise is the current one."""
    mine = st.session_state.get(_MY_GROUP)
    exercise = exercise_now() if mine else None
    if exercise is None or exercise.exercise_id != mine["exercise_id"]:
        return None
    found = attempt(_exercise.group, store(), exercise.exercise_id, mine["name"]).value
    return None if found is None else (exercise, _public(found))


def group_config() -> ExperimentConfig:
    """The settings this session's group starts from (the exercise's, its side's arm)."""
    mine = my_group()
    if mine is None:
        raise UserError("join a group of the exercise first (Groups page)")
    exercise, group = mine
    return exercise.rules.config_for(group.side)


def check_group_choice(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` if this session's group may start it, else UserError naming the field
    outside the exercise's rules (the form says so before Start; Start checks again)."""
    mine = my_group()
    if mine is None:
        raise UserError("join a group of the exercise first (Groups page)")
    exercise, group = mine
    return exercise.rules.check(config, group.side)


def _require_group() -> None:
    """The rule of a group's own doors: this session joined the current exercise."""
    if my_group() is None:
        raise UserError("join a group of the exercise first (Groups page)")


@roles.guarded(_require_group, "a group of the open exercise: its own run, within the rules")
def start_group_run(config: ExperimentConfig) -> str:
    """Queue ``config`` as this session's group's run, within the exercise's rules and
    with at most one queued or running run per group; the run id. Only the session's own
    group: the group is not a parameter a client could name."""
    exercise, group = my_group()
    with _JOBS_LOCK:
        jobs = _jobs(_runs_root())
        run_id = _exercise.start_run(jobs, exercise.exercise_id, group.name, config)
    _board.clear()
    return run_id


@roles.guarded(_require_group, "a group of the open exercise: its own run")
def stop_my_group_run() -> str | None:
    """Ask this session's group's own active run to stop; its id or None."""
    exercise, group = my_group()
    return _exercise.stop_group_run(store(), exercise.exercise_id, group.name)


class Board(NamedTuple):
    """What the Groups board shows at one moment; shared by every session, read-only.
    ``groups`` carry no codes; ``runs`` are the exercise's runs, oldest first;
    ``curves`` the epoch rows of each group's latest run; ``best`` every run's best
    validation accuracy per arm; ``read_at`` when it was read (Unix s)."""

    exercise: Exercise | None
    groups: list[Group]
    runs: list[Run]
    curves: dict[str, pd.DataFrame]
    best: dict[str, dict[str, float]]
    read_at: float


def board() -> Board:
    """The current exercise's board as the store had it at most ``BOARD_SNAPSHOT_S`` ago."""
    now = time.time()
    return _board(_runs_root(), math.floor(now / BOARD_SNAPSHOT_S))


@st.cache_resource(show_spinner=False, max_entries=4)
def _board(root: str, tick: int) -> Board:
    s = _store(root)
    # Through the job manager, as the live view does: it tops the pool up before it
    # reaps, so runs queued for a pool worker that was just recycled are not orphans.
    if _JOBS_LOCK.acquire(blocking=False):
        try:
            _jobs(root).queued()
        finally:
            _JOBS_LOCK.release()
    else:
        lifecycle.reap(s)
    exercise = _exercise.current(s)
    if exercise is None:
        return Board(None, [], [], {}, {}, time.time())
    groups = [_public(g) for g in _exercise.groups(s, exercise.exercise_id)]
    runs = s.runs_of_exercise(exercise.exercise_id)
    latest = {r.run_id for r in {r.group_name: r for r in runs}.values()}
    curves, best = {}, {}
    for run in runs:  # a few small indexed reads; the whole store's metrics are not scanned
        frame = s.curves(run.run_id)
        if run.run_id in latest:
            curves[run.run_id] = frame.astype({"arm": object})
        values = frame.dropna(subset=["val_accuracy"]).groupby("arm")["val_accuracy"].max()
        best[run.run_id] = {str(arm): float(v) for arm, v in values.items()}
    return Board(exercise, groups, runs, curves, best, time.time())


def _public(group: Group) -> Group:
    """The group without its code (the board and pages never need it)."""
    return dataclasses.replace(group, code=None)


def status(run_id: str) -> Run:
    """The run from the store, reaped first; also collects exited workers this server
    started - unless another session is doing that right now: every watching session asks
    every second, and none should wait for another."""
    if _JOBS_LOCK.acquire(blocking=False):
        try:
            return _jobs(_runs_root()).status(run_id)
        finally:
            _JOBS_LOCK.release()
    lifecycle.reap(store(), run_id)
    return store().get_run(run_id)


def curves(run_id: str, kind: str = "epoch") -> pd.DataFrame:
    """:meth:`RunStore.curves` with plain object columns for text: pandas' Arrow-backed
    strings make every per-arm comparison of a small frame cost milliseconds."""
    frame = store().curves(run_id, kind=kind)
    text = [c for c in ("arm", "phase") if c in frame.columns]
    return frame.astype(dict.fromkeys(text, object)) if text else frame


@presenter_only("stop")
def kill(run_id: str) -> None:
    """SIGKILL the run's worker and mark it stopped (rows so far are kept)."""
    with _JOBS_LOCK:
        _jobs(_runs_root()).kill(run_id)


@presenter_only("delete")
def delete_run(run_id: str) -> None:
    """Delete a finished run, its rows and files (reaped first, so a dead one can go)."""
    with _JOBS_LOCK:
        _jobs(_runs_root()).delete(run_id)


def list_runs() -> list[Run]:
    """Every run, newest first, reaped first."""
    s = store()
    lifecycle.reap(s)
    return s.list_runs()


def selected_run() -> str | None:
    """The run to show: ``?run=`` in the URL, else this session's last, else the newest
    queued or running run. None when there is none (or it was deleted). A ``?run=`` that
    names no run is left in ``st.session_state["missing_run"]`` for the page to say so."""
    s = store_or_stop()
    wanted = st.query_params.get("run")
    for candidate in (wanted, st.session_state.get("current_run")):
        if candidate:
            try:
                s.get_run(candidate)
                return candidate
            except UserError:
                if candidate == wanted:
                    st.session_state["missing_run"] = wanted
                continue
    lifecycle.reap(s)
    active = [r for r in s.list_runs() if r.active]
    return active[0].run_id if active else None


@st.cache_data(show_spinner=False)
def catalogue() -> list[dict[str, Any]]:
    """The backbone catalogue as dicts (``offline`` included), built-ins first."""
    from pipelines.backbones import catalogue as engine_catalogue

    return [spec.to_dict() for spec in engine_catalogue()]


@st.cache_data(show_spinner=False, max_entries=16)
def block_table(backbone: str, cache_dir: str) -> list:
    """The backbone's blocks (see ``pipelines.backbones.block_table``). A built-in that is
    built already is read without TensorFlow; the first call for one builds it (seconds).
    ``cache_dir`` is part of the key."""
    from pipelines.backbones import block_table as engine_block_table

    return engine_block_table(backbone)


def native_size(backbone: str) -> int | None:
    """The backbone's own input size, or None if it can't be resolved (a folder since
    deleted)."""
    from pipelines.backbones import resolve

    return attempt(lambda: resolve(backbone).input_size).value


def blocks_for(backbone: str) -> list:
    return block_table(backbone, str(settings.backbone_cache_dir()))


@st.cache_data(show_spinner=False, max_entries=16)
def block_widths(backbone: str) -> list[int] | None:
    """Each block's output width for a backbone that can be cut (the built-ins), read from
    the weights without TensorFlow; None for one that can't (``reuse_blocks``)."""
    from pipelines.backbones import block_widths as engine_block_widths

    return engine_block_widths(backbone)


def named_dataset(dataset: str) -> dict[str, Any] | None:
    """Title, citation, licence and notes of a named data set (``assets/datasets.json``),
    or None for a folder or zip."""
    from dataclasses import asdict

    from pipelines.data.sources import named

    entry = named(dataset)
    return asdict(entry) if entry is not None else None


@st.cache_data(show_spinner=False, ttl=600, max_entries=32)
def inspect(dataset: str, datasets_dir: str) -> dict[str, Any]:
    """``pipelines.data.inspect_dataset`` report; ``datasets_dir`` is part of the key."""
    from pipelines.data import inspect_dataset

    return inspect_dataset(dataset)


def inspect_current(dataset: str) -> dict[str, Any]:
    return inspect(dataset, str(settings.datasets_dir() or ""))


@st.cache_data(show_spinner=False, ttl=600, max_entries=16)
def samples(dataset: str, datasets_dir: str) -> dict[str, list[np.ndarray]]:
    """:func:`pipelines.data.samples.samples`; ``datasets_dir`` is part of the key."""
    from pipelines.data.samples import samples as engine_samples

    return engine_samples(dataset)


def samples_current(dataset: str) -> dict[str, list[np.ndarray]]:
    return samples(dataset, str(settings.datasets_dir() or ""))


@st.cache_data(show_spinner=False, max_entries=512)
def thumbnail(path: str, px: int) -> np.ndarray | None:
    """:func:`pipelines.data.samples.thumbnail` (None: moved or unreadable)."""
    from pipelines.data.samples import thumbnail as engine_thumbnail

    return engine_thumbnail(path, px)


def upload_cap_mb() -> int:
    """The upload limit in MB: Streamlit's ``server.maxUploadSize`` (``.streamlit/
    config.toml``). The browser refuses bigger files; :func:`save_upload` checks again."""
    return int(st.get_option("server.maxUploadSize"))


@presenter_only("upload")
def save_upload(name: str, data: bytes) -> Path:
    """:func:`pipelines.data.uploads.save_upload` with this server's :func:`upload_cap_mb`."""
    from pipelines.data.uploads import save_upload as engine_save_upload

    return engine_save_upload(name, data, upload_cap_mb())


def upload_skipped(dataset: str) -> list[dict[str, str]]:
    """:func:`pipelines.data.uploads.upload_skipped`."""
    from pipelines.data.uploads import upload_skipped as engine_upload_skipped

    return engine_upload_skipped(dataset)


def is_builtin(backbone: str) -> bool:
    """Whether ``backbone`` is a built-in catalogue id (a known image model)."""
    return any(b["id"] == backbone and b.get("builtin") for b in catalogue())


@st.cache_data(show_spinner=False, max_entries=16)
def _backbone_problem(backbone: str, image_size: int | None, mtime: float) -> str | None:
    from pipelines.backbones import load_layer

    return attempt(load_layer, backbone, image_size=image_size).error


def backbone_problem(backbone: str, image_size: int | None) -> str | None:
    """Why a backbone outside the built-ins can't train on ``image_size`` images (the
    engine's own check: it is loaded and called on one blank image - not an image model,
    wrong output rank, a size its signature refuses), or None. Built-ins are not loaded.
    Cached per backbone, size and the folder's modification time."""
    if is_builtin(backbone):
        return None
    roles.require_presenter("backbone")  # loading one runs its graph, maybe downloads it
    path = Path(backbone).expanduser()
    mtime = path.stat().st_mtime if path.is_dir() else 0.0
    return _backbone_problem(backbone, image_size, mtime)


def model_dir(run_id: str, arm: str) -> Path:
    """:func:`pipelines.training.export.model_dir`: the arm's inference SavedModel, built
    from its weights on the first request (seconds). Building it is the presenter's; one
    already built is anyone's."""
    from pipelines.training.export import model_dir as engine_model_dir

    if not model_built(run_id, arm):
        roles.require_presenter("export")
    return engine_model_dir(store(), run_id, arm)


@presenter_only("try")
def predict(run_id: str, arm: str, image: np.ndarray) -> list[float]:
    """Class probabilities of one uint8 RGB image (already at the model's size) from the
    arm's inference SavedModel (:func:`pipelines.training.predict.predict`; the model is
    loaded once per server)."""
    from pipelines.training.predict import predict as engine_predict

    return engine_predict(model_dir(run_id, arm), image)


@presenter_only("try")
def imagenet_top5(backbone: str, image_bytes: bytes) -> list[dict[str, Any]]:
    """The backbone's own ImageNet top-5 for an image file's bytes."""
    from pipelines.training.predict import imagenet_top5 as engine_top5

    return engine_top5(backbone, image_bytes)


@presenter_only("upload")
def decode(data: bytes, size: int, name: str = "that file") -> np.ndarray:
    """:func:`pipelines.training.predict.decode`: the file as a ``size`` x ``size`` uint8
    RGB array, or a UserError saying why not."""
    from pipelines.training.predict import decode as engine_decode

    return engine_decode(data, size, name)


@st.cache_data(show_spinner=False, max_entries=16)
def metrics_csv(run_id: str, root: str, updated: float) -> bytes:
    """All metric rows of a run as CSV bytes (``updated`` keys the cache)."""
    from pipelines.training.export import metrics_csv as engine_metrics_csv

    return engine_metrics_csv(_store(root), run_id)


def model_built(run_id: str, arm: str) -> bool:
    """Whether the arm's inference SavedModel is built already (:func:`model_dir` builds
    it), so a viewer may download it."""
    from pipelines.training.export import built_model

    return built_model(store(), run_id, arm) is not None


def savedmodel_zip(run_id: str, arm: str, root: str) -> bytes:
    """The arm's inference SavedModel folder as zip bytes
    (:func:`pipelines.training.export.savedmodel_zip`). Anyone may download one that is
    built; building it (the first request) is the presenter's."""
    if not model_built(run_id, arm):
        roles.require_presenter("export")
    return _savedmodel_zip(run_id, arm, root)


@st.cache_data(show_spinner=False, max_entries=8)
def _savedmodel_zip(run_id: str, arm: str, root: str) -> bytes:
    from pipelines.training.export import savedmodel_zip as engine_savedmodel_zip

    return engine_savedmodel_zip(_store(root), run_id, arm)


@presenter_only("export")
def onnx_export(run_id: str, arm: str) -> dict[str, Any]:
    """Convert the arm's model to ONNX once (kept in the run's folder) and return
    ``{"path", "parity_max_abs_diff", ...}`` (:func:`pipelines.training.export.onnx_cached`)."""
    from pipelines.training.export import onnx_cached

    return onnx_cached(store(), run_id, arm)


def onnx_ready(run_id: str, arm: str) -> dict[str, Any] | None:
    """The ONNX export made earlier for this arm, if any."""
    from pipelines.training.export import onnx_ready as engine_onnx_ready

    return engine_onnx_ready(store(), run_id, arm)


# --- what each arm learned (pipelines.insight) ------------------------------------------------


def validation_image(path: str, size: int) -> np.ndarray:
    """A validation image as the run saw it: ``size`` x ``size`` uint8 RGB (UserError if it
    has moved or can't be read)."""
    from pipelines.data.images import read_image_file

    return read_image_file(path, size)


@st.cache_data(show_spinner=False, max_entries=128)
def _attention(run_id: str, arm: str, image: np.ndarray, root: str, updated: float) -> dict:
    from pipelines.insight.arm_model import arm_folder, load_arm
    from pipelines.insight.attention import explain

    model = load_arm(arm_folder(_store(root), run_id, arm))
    (found,) = explain(model, image[None])
    return found.to_dict(model.classes) | {
        "map": found.map,
        "probability": found.probabilities[found.predicted],
    }


def attention(run: Run, arm: str, image: np.ndarray) -> dict[str, Any]:
    """Where ``arm`` of the finished ``run`` looks in ``image`` (uint8 RGB at the run's
    size): ``{"map", "method", "method_title", "layer", "grid", "predicted_class",
    "target_class", "probability", ...}`` (:mod:`pipelines.insight.attention`: Grad-CAM
    for built-in backbones, SmoothGrad otherwise). Cached per run, arm and image; the
    arm's model is built once per server."""
    return _attention(run.run_id, arm, image, _runs_root(), run.updated)


@st.cache_data(show_spinner=False, max_entries=8)
def _feature_space(run_id: str, root: str, updated: float, projection: str) -> dict:
    from pipelines.insight.features import feature_space as engine_feature_space

    return engine_feature_space(_store(root), run_id, projection=projection)


def feature_space(run: Run, projection: str = "pca") -> dict[str, Any]:
    """The run's feature space (:func:`pipelines.insight.features.feature_space`): both
    arms' validation features before and after training in 2-D, a k-NN accuracy per
    panel. The first call for a run may take a while (a backbone pass over the validation
    set where the feature cache lacks it, and one per fine-tuned arm); its features are
    kept on disk, the result per server."""
    return _feature_space(run.run_id, _runs_root(), run.updated, projection)
