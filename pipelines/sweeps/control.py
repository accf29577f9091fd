"""Start, watch and stop sweeps: what the CLI and the dashboard call.

Everything a sweep is lives in its study (:mod:`pipelines.sweeps.study`), so any process
with the storage URL can read or stop it; each trial's run lives in the run store of the
machine that ran it. :func:`start_sweep` creates the study and spawns local worker
processes (``python -m pipelines sweep-worker``, in new sessions, logging to
``RUNS_DIR/sweeps/<sweep_id>/worker-<n>.log``) and returns at once. The storage URL
reaches them through ``SWEEP_STORAGE`` in their environment, never on their command line
(where other users of the machine could read its password).

Reads (:func:`list_sweeps`, :func:`sweep_trials`, :func:`sweep_spec`, :func:`best_trial`)
never write. Trials whose worker died are failed and re-enqueued by the workers; with no
worker left, :func:`reap_sweep` does it (``sweeps show`` calls it).

Stopping: :func:`stop_sweep` asks (running trials stop after their current batch, like a
run's Stop); :func:`force_stop` is the escape when a worker does not stop when asked: it
SIGKILLs this machine's processes that still run the sweep's trials, as a run's Force stop
does (:meth:`pipelines.runs.jobs.JobManager.kill`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from pipelines import settings
from pipelines.errors import UserError
from pipelines.sweeps.space import SweepSpec
from pipelines.sweeps.study import (
    STORAGE_ENV,
    SWEEP_STOPPED,
    create_study,
    load_study,
    open_storage,
    reap_trials,
    storage_url,
    study_spec,
    sweep_state,
    trial_dict,
)

SWEEPS_DIR = "sweeps"  # under RUNS_DIR: the local workers' logs
KILLED = "killed: its worker did not stop when asked"  # as a killed run's (JobManager.kill)
KILL_WAIT_S = 5.0  # how long force_stop waits for killed workers to be gone


def check_spec(spec: SweepSpec) -> SweepSpec:
    """:meth:`SweepSpec.validate` plus the cheap pre-run checks of every backbone and data
    set the space can reach (:func:`pipelines.training.preflight.check_experiment`)."""
    from pipelines.training.preflight import check_experiment

    spec = spec.validate()
    checked: set[tuple] = set()
    points = list(spec.grid_points()) if spec.sampler == "grid" else list(spec._corner_points())
    for point in points:
        config = spec.config_for(point)
        key = (config.dataset, config.backbone, config.reuse_blocks)
        if key not in checked:
            checked.add(key)
            check_experiment(config)
    return spec


def start_sweep(spec: SweepSpec, storage: str | None = None, workers: int | None = None) -> str:
    """Check ``spec``, create the sweep and start ``workers`` local worker processes
    (default: ``MAX_RUNNING_EXPERIMENTS``); return the sweep id at once. ``workers=0``
    starts none (workers join with ``python -m pipelines sweep-worker``). A refused spec or
    an unreachable storage raises :class:`UserError` before anything exists."""
    from pipelines.runs.jobs import max_running_from_env

    if workers is not None and (isinstance(workers, bool) or workers < 0):
        raise UserError(f"workers: must be 0 or more, not {workers!r}")
    count = max_running_from_env() if workers is None else workers
    spec = check_spec(spec)
    sweep_id = create_study(spec, storage)
    spawn_workers(sweep_id, count, storage)
    return sweep_id


def spawn_workers(sweep_id: str, count: int, storage: str | None = None) -> list[subprocess.Popen]:
    """Start ``count`` worker processes for the sweep; they may run ``count`` trials at once
    (``MAX_RUNNING_EXPERIMENTS`` raised to ``count`` for them)."""
    from pipelines.runs.jobs import max_running_from_env
    from pipelines.runs.pool import worker_env
    from pipelines.runs.store import RunStore

    store = RunStore()
    env = worker_env(store, max(count, max_running_from_env()))
    env[STORAGE_ENV] = storage_url(storage)
    logs = settings.runs_dir() / SWEEPS_DIR / sweep_id
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for n in range(count):
        try:
            with open(logs / f"worker-{n}.log", "ab") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "pipelines", "sweep-worker", "--sweep", sweep_id],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                        start_new_session=True,
                    )
                )
        except OSError as e:
            raise UserError(f"could not start a sweep worker process: {e}") from None
    return procs


def list_sweeps(storage: str | None = None) -> list[dict[str, Any]]:
    """Every sweep in the storage, newest first: ``{"sweep_id", "state" (running, stopping,
    stopped, finished), "trials" (how many exist, retries included), "best_value" (None
    until a trial completed), "created" (Unix s), "budget", "stopped_at" (Unix s of the
    first Stop, or None)}``."""
    from optuna.trial import TrialState

    st = open_storage(storage)
    out = []
    for study in st.get_all_studies():
        attrs = study.user_attrs
        if "spec" not in attrs:  # not one of ours
            continue
        trials = st.get_all_trials(study._study_id, deepcopy=False)
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        out.append(
            {
                "sweep_id": study.study_name,
                "state": sweep_state(trials, bool(attrs.get("stopped"))),
                "trials": len(trials),
                "best_value": max((t.value for t in done), default=None),
                "created": attrs.get("created"),
                "budget": attrs.get("budget"),
                "stopped_at": attrs.get("stopped_at"),
            }
        )
    out.sort(key=lambda s: s["created"] or 0, reverse=True)
    return out


def sweep_trials(sweep_id: str, storage: str | None = None) -> list[dict[str, Any]]:
    """The sweep's trials by number: ``{"number", "state" (WAITING, RUNNING, COMPLETE,
    PRUNED, FAIL: Optuna's names), "params" ({dotted key: value}), "value" (the objective;
    a pruned trial's last reported one; None otherwise), "run_id" (in the run store of
    ``host``), "started", "finished" (Unix s or None), "curves" ({"imagenet": [val acc per
    epoch], "random": [...]}, live while it runs), "run_status", "error", "host",
    "retry_of", "stopped_by_user" (its run was stopped by a user: skipped, not re-run)}``."""
    study = load_study(sweep_id, storage)
    return [trial_dict(t) for t in study.get_trials(deepcopy=False)]


def sweep_spec(sweep_id: str, storage: str | None = None) -> SweepSpec:
    """The spec the sweep was started with."""
    return study_spec(load_study(sweep_id, storage))


def sweep_state_of(sweep_id: str, storage: str | None = None) -> str:
    """running, stopping, stopped or finished (see :func:`list_sweeps`)."""
    study = load_study(sweep_id, storage)
    return sweep_state(study.get_trials(deepcopy=False), bool(study.user_attrs.get("stopped")))


def best_trial(sweep_id: str, storage: str | None = None) -> dict[str, Any] | None:
    """The completed trial with the highest objective (as :func:`sweep_trials` shows it),
    or None while none has completed."""
    done = [t for t in sweep_trials(sweep_id, storage) if t["state"] == "COMPLETE"]
    done = [t for t in done if t["value"] is not None]
    return max(done, key=lambda t: (t["value"], -t["number"])) if done else None


def stop_sweep(sweep_id: str, storage: str | None = None) -> None:
    """Stop the sweep: no new trial starts, and each running trial's run stops like a run's
    Stop (its worker sees the request within 2 s, on any machine); waiting trials are
    failed with "the sweep was stopped" (and so are the running ones once stopped). Runs
    of this machine's store are also asked directly."""
    from optuna.trial import TrialState

    from pipelines.runs import lifecycle
    from pipelines.runs.store import RunStore

    study = load_study(sweep_id, storage)
    if not study.user_attrs.get("stopped"):
        study.set_user_attr("stopped_at", time.time())
    study.set_user_attr("stopped", True)
    st = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            st.set_trial_user_attr(t._trial_id, "error", SWEEP_STOPPED)
            st.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except Exception:  # noqa: BLE001 - a worker took it meanwhile: it sees "stopped"
            continue
    store = RunStore()
    for run in store.runs_in_sweep(sweep_id):
        if run.active:
            lifecycle.request_stop(store, run.run_id)
            lifecycle.drop_unclaimed(store, run.run_id)


def force_stop(
    sweep_id: str, storage: str | None = None, wait_s: float = KILL_WAIT_S
) -> dict[str, list[int]]:
    """Stop the sweep (:func:`stop_sweep`) and SIGKILL this machine's processes that still
    run its trials (the worker recorded on each running trial, and the worker of each of
    its active runs in this machine's store). Each such run ends ``stopped`` with the
    reason, as a run's Force stop leaves it (its rows so far are kept); its trial is failed
    with the same reason and not run again. Trials running on other machines can't be
    killed from here: they stop when their worker next looks (within 2 s), or are failed
    once it has been silent for ``STALE_AFTER_S``.

    Returns ``{"killed": [pids], "trials": [trial numbers failed], "elsewhere": [numbers
    of trials still running on other machines]}``."""
    from optuna.trial import TrialState

    from pipelines.runs import lifecycle
    from pipelines.runs.store import RunStore

    stop_sweep(sweep_id, storage)
    study = load_study(sweep_id, storage)
    store = RunStore()
    host = socket.gethostname()
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    here = [t for t in running if (t.user_attrs.get("worker") or {}).get("host") == host]
    workers: dict[int, float | None] = {}
    for t in here:
        who = t.user_attrs["worker"]
        if who.get("pid"):
            workers[int(who["pid"])] = who.get("started")
    runs = [r for r in store.runs_in_sweep(sweep_id) if r.active and r.worker_pid]
    for run in runs:
        workers[run.worker_pid] = run.worker_started
    killed = []
    for pid, started in workers.items():
        if pid != os.getpid() and lifecycle.process_alive(pid, started):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed.append(pid)
    deadline = time.monotonic() + wait_s
    while any(lifecycle.process_alive(p, workers[p]) for p in killed):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for run in runs:
        if run.worker_pid in killed:
            lifecycle.finish(store, run.run_id, "stopped", KILLED)
    failed = []
    st = study._storage
    for t in here:
        if int(t.user_attrs["worker"].get("pid", 0)) not in killed:
            continue  # it ended by itself meanwhile; reaped below if its trial still runs
        try:
            st.set_trial_user_attr(t._trial_id, "error", KILLED)
            st.set_trial_user_attr(t._trial_id, "run_status", "stopped")
            if st.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                failed.append(t.number)
        except Exception:  # noqa: BLE001 - it finished between the look and the kill
            continue
    failed += reap_trials(study)  # a stopped sweep re-enqueues nothing
    ours = {t.number for t in here} | set(failed)
    elsewhere = [t.number for t in running if t.number not in ours]
    return {"killed": sorted(killed), "trials": sorted(failed), "elsewhere": elsewhere}


def reap_sweep(sweep_id: str, storage: str | None = None) -> list[int]:
    """Fail and re-enqueue the trials whose worker died (see
    :func:`pipelines.sweeps.study.reap_trials`); the trial numbers."""
    return reap_trials(load_study(sweep_id, storage))
