"""The warm worker pool: worker processes that stay alive between runs.

A fresh worker process pays for importing TensorFlow and reading the backbone's weights
before its first batch; a pool worker pays once and then takes queued runs one after
another, so a Start on a warm pool shows its first epoch within seconds.

* **Pool workers** are ``python -m pipelines worker --pool`` processes (:func:`serve`),
  registered in the store's ``workers`` table (pid, start time, runs done, current run,
  memory; :meth:`~pipelines.runs.store.RunStore.pool_workers`). A live pool exists when
  :func:`pipelines.runs.lifecycle.live_pool_workers` is not empty.
* **A run on the pool** is created ``queued`` with no worker
  (:meth:`pipelines.runs.jobs.JobManager.start` does so whenever a live pool exists, and
  ``python -m pipelines train`` submits to it and follows the run). An idle pool worker
  claims the oldest such run (:func:`pipelines.runs.lifecycle.claim_next_queued`) and runs
  it through :func:`pipelines.runs.worker.run_worker`, exactly as a one-run worker would:
  the slot (``MAX_RUNNING_EXPERIMENTS``), heartbeat, Stop, SIGTERM (stops the run, not the
  worker), a deleted store and failure recording all hold per run. While it runs, the
  worker's stdout and stderr go to the run's ``worker.log``; between runs to
  ``RUNS_DIR/pool.log``.
* **Recycling**: a pool worker exits between runs - never during one - after
  ``WARM_WORKER_RUNS`` runs (default 20) or once its resident memory exceeds
  ``WARM_WORKER_MAX_MB`` (default 4000); it also exits when asked to retire
  (:func:`pipelines.runs.lifecycle.retire_pool_workers`), on SIGTERM/SIGINT while idle,
  when its run store is deleted or replaced, and when the process that spawned it (the
  dashboard server) has gone and it is idle.
* **Supervision**: :func:`ensure_pool` (called by :class:`pipelines.runs.jobs.JobManager`
  whenever it polls runs, if its ``warm_workers`` is above 0) forgets dead pool workers
  and spawns replacements. A killed pool worker's run is reaped ``interrupted`` like any
  worker's; the queued runs behind it wait for the replacement (a queued run with no worker
  is not reaped while a live pool exists).

What stays warm in a pool worker: TensorFlow and the training modules (imported before the
first run), each built-in backbone's built Keras blocks with a copy of their ImageNet
weights, restored before each reuse (:func:`pipelines.backbones.keras_backbone.keep_warm`;
building them costs seconds, restoring milliseconds), the feature cache's rows
(:mod:`pipelines.training.feature_cache`), the weights fingerprints and the checked-file
digests. Heads, optimizers and traced steps are made per run.

``WARM_WORKERS`` (a whole number >= 0) is the pool size; 0 keeps one process per run.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

import pipelines
from pipelines import settings
from pipelines.errors import UserError
from pipelines.runs import lifecycle
from pipelines.runs.store import RunStore

WARM_WORKERS_ENV = "WARM_WORKERS"
WARM_WORKER_RUNS_ENV = "WARM_WORKER_RUNS"
WARM_WORKER_MAX_MB_ENV = "WARM_WORKER_MAX_MB"
DEFAULT_WARM_WORKER_RUNS = 20
DEFAULT_WARM_WORKER_MAX_MB = 4000.0
PARENT_ENV = "PIPELINES_POOL_PARENT"  # "pid:start time" of the supervisor that spawned it
POOL_LOG = "pool.log"
WORKER_LOG = "worker.log"
IDLE_POLL_S = 0.2  # how often an idle worker looks for a queued run
BEAT_S = 2.0  # how often an idle worker records itself and reaps


def warm_workers_from_env(default: int = 0) -> int:
    """``WARM_WORKERS`` (a whole number >= 0): how many pool workers a supervisor keeps."""
    return settings.whole_number_env(WARM_WORKERS_ENV, default, 0)


def max_runs_from_env() -> int:
    """``WARM_WORKER_RUNS`` (>= 1, default 20): runs before a pool worker is recycled."""
    return settings.whole_number_env(WARM_WORKER_RUNS_ENV, DEFAULT_WARM_WORKER_RUNS, 1)


def max_mb_from_env() -> float:
    """``WARM_WORKER_MAX_MB`` (> 0, default 4000): resident memory (MB) past which a pool
    worker is recycled after its current run."""
    raw = os.environ.get(WARM_WORKER_MAX_MB_ENV, "").strip()
    if not raw:
        return DEFAULT_WARM_WORKER_MAX_MB
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise UserError(f"{WARM_WORKER_MAX_MB_ENV} must be a number of MB above 0, not {raw!r}")
    return value


def live(store: RunStore) -> bool:
    """Whether a live pool serves ``store`` (at least one pool worker process alive)."""
    return bool(lifecycle.live_pool_workers(store))


def worker_env(store: RunStore, max_running: int) -> dict[str, str]:
    """The environment of a worker process for ``store`` (pool or one-run), without the
    dashboard's secrets (:data:`pipelines.settings.SECRET_ENV`)."""
    package_parent = str(Path(pipelines.__file__).resolve().parent.parent)
    return {
        **{k: v for k, v in os.environ.items() if k.lower() not in settings.SECRET_ENV},
        "RUNS_DIR": str(store.root.resolve()),
        "MAX_RUNNING_EXPERIMENTS": str(max_running),
        "PYTHONPATH": os.pathsep.join(
            p for p in (package_parent, os.environ.get("PYTHONPATH")) if p
        ),
    }


def ensure_pool(store: RunStore, size: int, max_running: int) -> list[subprocess.Popen]:
    """Keep ``size`` live pool workers for ``store``: forget dead ones, spawn the missing
    (in new sessions, logging to ``RUNS_DIR/pool.log``). Returns the processes spawned,
    for the caller to collect once they exit."""
    procs: list[subprocess.Popen] = []
    if size <= 0:
        lifecycle.reap_pool(store)
        return procs
    me = psutil.Process()
    env = {**worker_env(store, max_running), PARENT_ENV: f"{me.pid}:{me.create_time()}"}

    def spawn() -> int:
        try:
            with open(store.root / POOL_LOG, "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "pipelines", "worker", "--pool"],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # a Ctrl-C in the server's terminal is not its
                )
        except OSError as e:
            raise UserError(f"could not start a pool worker process: {e}") from None
        procs.append(proc)
        return proc.pid

    lifecycle.top_up_pool(store, size, spawn)
    return procs


def serve(
    store: RunStore | None = None,
    *,
    max_running: int | None = None,
    max_runs: int | None = None,
    max_mb: float | None = None,
    idle_exit_s: float | None = None,
) -> int:
    """Be a pool worker: take queued runs one after another until recycled or told to go
    (see the module's docstring). ``idle_exit_s``: also exit after this long without a
    run (tests). Returns 0."""
    from pipelines.runs.jobs import max_running_from_env
    from pipelines.runs.worker import run_worker

    store = store or RunStore()
    limit = max_running or max_running_from_env()
    max_runs = max_runs or max_runs_from_env()
    max_mb = max_mb or max_mb_from_env()
    pid = os.getpid()
    parent = _parent_from_env()
    warm_up()
    identity = lifecycle.file_identity(store.path)
    lifecycle.register_pool_worker(store, pid)
    _log(f"pool worker {pid} ready (recycled after {max_runs} runs or {max_mb:.0f} MB)")
    exiting = threading.Event()
    runs_done, beat, idle_since = 0, 0.0, time.monotonic()
    why = "asked to stop"
    try:
        with _exit_on_signals(exiting):
            while not exiting.is_set():
                if lifecycle.file_identity(store.path) != identity:
                    why = f"the run store {store.path} was deleted or replaced"
                    break
                now = time.monotonic()
                if now - beat >= BEAT_S:
                    beat = now
                    if lifecycle.pool_worker_state(store, pid, None, runs_done, _rss_mb()):
                        why = "asked to retire"
                        break
                    if parent is not None and not lifecycle.process_alive(*parent):
                        why = f"the process that started it ({parent[0]}) has ended"
                        break
                    lifecycle.reap(store)
                if idle_exit_s is not None and now - idle_since > idle_exit_s:
                    why = f"idle for {idle_exit_s:g} s"
                    break
                run_id = lifecycle.claim_next_queued(store, pid)
                if run_id is None:
                    time.sleep(IDLE_POLL_S)
                    continue
                lifecycle.pool_worker_state(store, pid, run_id, runs_done, _rss_mb())
                with output_to(store.artefact_dir(run_id) / WORKER_LOG):
                    try:
                        run_worker(run_id, store, limit, echo=True)
                    except UserError as e:  # refused before the claim: nothing recorded
                        print(f"error: {e}", file=sys.stderr)
                between_runs()
                runs_done += 1
                rss = _rss_mb()
                _log(f"pool worker {pid}: run {run_id} ended ({runs_done} done, {rss:.0f} MB)")
                retire = lifecycle.pool_worker_state(store, pid, None, runs_done, rss)
                beat = idle_since = time.monotonic()
                if runs_done >= max_runs:
                    why = f"recycled after {runs_done} runs"
                    break
                if rss > max_mb:
                    why = f"recycled: {rss:.0f} MB resident, above {max_mb:.0f} MB"
                    break
                if retire:
                    why = "asked to retire"
                    break
    finally:
        with contextlib.suppress(Exception):  # the store may be gone
            lifecycle.unregister_pool_worker(store, pid)
        _log(f"pool worker {pid} exits: {why}")
    return 0


# --- internals ------------------------------------------------------------------------------


def warm_up() -> None:
    """Import what every run needs (TensorFlow and the trainer) before the first run."""
    from pipelines.runs.worker import TEST_WORKLOAD_ENV

    if os.environ.get(TEST_WORKLOAD_ENV, "").strip():  # tests: the workload needs none
        return
    import pipelines.training.loop  # noqa: F401
    from pipelines.backbones import keras_backbone

    keras_backbone.keep_warm()


def between_runs() -> None:
    """What a finished run held may serve the next (kept backbone blocks)."""
    module = sys.modules.get("pipelines.backbones.keras_backbone")
    if module is not None:
        module.release_warm()


def _parent_from_env() -> tuple[int, float] | None:
    raw = os.environ.get(PARENT_ENV, "")
    pid, _, started = raw.partition(":")
    try:
        return int(pid), float(started)
    except ValueError:
        return None


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


@contextmanager
def output_to(path: Path) -> Iterator[None]:
    """This process's stdout and stderr (file descriptors 1 and 2, so TensorFlow's own
    output too) appended to ``path`` for the block; unchanged if it can't be opened."""
    try:
        log = open(path, "ab")  # noqa: SIM115 - closed below, after the descriptors return
    except OSError:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        for fd in saved:
            os.dup2(log.fileno(), fd)
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        log.close()


@contextmanager
def _exit_on_signals(exiting: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT between runs: exit once idle. (During a run, the run's own handlers
    from :func:`pipelines.runs.worker.run_worker` take over: a signal stops the run.)"""
    with lifecycle.signals_handled(lambda signum, frame: exiting.set()):
        yield
