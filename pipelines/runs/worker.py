"""Run one stored experiment in this process: claim it, wait for a slot, train, record how
it ended.

``python -m pipelines worker RUN_ID`` (what :class:`pipelines.runs.jobs.JobManager` spawns) and
the CLI's foreground ``train`` both call :func:`run_worker`. The outcome is always in the
store: ``completed``, ``stopped`` (on request; what was trained is kept), ``failed`` (with the
message) or, if this process is killed, ``interrupted`` once whoever polls the run reaps it
(:func:`pipelines.runs.lifecycle.reap`). This module is the worker's side of
:mod:`pipelines.runs.lifecycle`.

Stopping: :func:`pipelines.runs.lifecycle.request_stop` from any process, or SIGTERM/SIGINT
to this one, sets the flag the trainer polls every batch. A second signal once the flag is
set stops at once (the current batch is lost).

The trainer's summary may say ``"stopped": true/false``; that decides between ``stopped``
and ``completed``, else whether a stop was requested does.

Test-only: ``PIPELINES_TEST_WORKLOAD=module:function`` replaces
``pipelines.training.run_experiment`` with a function of the same signature, so the job
mechanics can be tested without TensorFlow. Never set it outside tests.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pipelines.errors import UserError, disk_full_error, is_disk_full
from pipelines.runs import lifecycle
from pipelines.runs.jobs import max_running_from_env
from pipelines.runs.run import Run
from pipelines.runs.store import RunStore
from pipelines.training.config import ExperimentConfig

EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_STOPPED = 3

TEST_WORKLOAD_ENV = "PIPELINES_TEST_WORKLOAD"
TRACEBACK_FILE = "traceback.txt"
SLOT_POLL_S = 0.5
HEARTBEAT_S = 2.0
STOP_POLL_S = 0.5  # how often should_stop() looks at the store; it is called every batch

Workload = Callable[[str, ExperimentConfig, RunStore, Callable[[], bool]], "dict | None"]


class StopFlag:
    """``should_stop()`` for the trainer: True once a stop was requested in the store (read
    at most every ``STOP_POLL_S``) or by a signal to this process."""

    def __init__(self, store: RunStore, run_id: str) -> None:
        self._store, self._run_id = store, run_id
        self._event = threading.Event()
        self._checked = 0.0
        self.signalled = False  # set by a signal; the heartbeat thread writes it to the store
        self.wake = threading.Event()  # wakes the heartbeat thread

    def __call__(self) -> bool:
        if self._event.is_set():
            return True
        now = time.monotonic()
        if now - self._checked >= STOP_POLL_S:
            self._checked = now
            if lifecycle.stop_requested(self._store, self._run_id):
                self._event.set()
        return self._event.is_set()

    def set(self, from_signal: bool = False) -> None:
        self.signalled = self.signalled or from_signal
        self._event.set()
        self.wake.set()

    def is_set(self) -> bool:
        return self._event.is_set()


def run_worker(
    run_id: str,
    store: RunStore | None = None,
    max_running: int | None = None,
    echo: bool = False,
    pruned: Callable[[], bool] | None = None,
) -> int:
    """Run ``run_id`` here and return an exit code (``EXIT_*``).

    ``pruned``: a sweep's trial (:mod:`pipelines.sweeps.trial`) asks its run to stop when
    its pruner says so; if ``pruned()`` is True once the run has stopped, it ends ``pruned``
    instead of ``stopped`` (exit code ``EXIT_STOPPED`` either way).

    Raises :class:`UserError` only before the run is claimed (no such run, already finished,
    another live worker has it); after that every outcome is recorded in the store, and an
    unexpected failure's traceback is written to ``<artefact dir>/traceback.txt``. With
    ``echo``, the worker's own events, refusals and tracebacks also go to stderr (the
    spawned worker's log); without it, this function prints nothing - unless the store
    itself can't be written (a full disk): then the reason goes to stderr, the run stays
    active until this process ends, and is then reaped as ``interrupted``.
    """
    store = store or RunStore()
    limit = max_running or max_running_from_env()
    run = store.get_run(run_id)
    lifecycle.claim_worker(store, run_id, os.getpid())
    flag, done = StopFlag(store, run_id), threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(store, run_id, flag, done), daemon=True)
    beat.start()
    try:
        with _stop_on_signals(flag):
            return _run(store, run, limit, flag, echo, pruned)
    finally:
        done.set()
        flag.wake.set()
        beat.join(timeout=5)


def _run(
    store: RunStore,
    run: Run,
    limit: int,
    flag: StopFlag,
    echo: bool,
    pruned: Callable[[], bool] | None = None,
) -> int:
    run_id = run.run_id
    say = _reporter(store, run_id, echo)
    try:
        return _attempt(store, run, limit, flag, say, pruned)
    except KeyboardInterrupt:
        if _record(store, run_id, "stopped", "stopped at once by a second stop signal"):
            _quietly(say, "stopped at once; the batch in progress was lost")
        return EXIT_STOPPED
    except UserError as e:
        if echo:
            print(f"error: {e}", file=sys.stderr)
        _record(store, run_id, "failed", str(e))
        return EXIT_REFUSED
    except Exception as e:  # noqa: BLE001 - any failure is recorded with its traceback
        text = traceback.format_exc()
        with contextlib.suppress(OSError):  # the disk may be full
            (store.artefact_dir(run_id) / TRACEBACK_FILE).write_text(text)
        if echo:
            print(text, file=sys.stderr, end="")
        _record(store, run_id, "failed", failure_message(e))
        return EXIT_FAILED


def _attempt(
    store: RunStore,
    run: Run,
    limit: int,
    flag: StopFlag,
    say: Callable[[str], None],
    pruned: Callable[[], bool] | None = None,
) -> int:
    """Wait for a slot, run the workload, record how it ended; raises what went wrong."""
    run_id, config = run.run_id, run.config
    if config is None:  # stored by another version of this program
        raise UserError(str(run.config_problem))
    if not _wait_for_slot(store, run_id, limit, flag, say):
        lifecycle.finish(store, run_id, "stopped")
        say("stopped while queued")
        return EXIT_STOPPED
    say(f"started in worker process {os.getpid()}")
    summary = _workload()(run_id, config, store, flag)
    if summary is not None:
        store.set_summary(run_id, summary)
    # The trainer knows best whether it cut training short (a stop may arrive after the
    # last batch); without its word, the flag decides.
    said = summary.get("stopped") if isinstance(summary, dict) else None
    stopped = said if isinstance(said, bool) else flag()
    if stopped and pruned is not None and pruned():
        lifecycle.finish(store, run_id, "pruned")
        say("pruned by its sweep; what was trained so far is kept")
        return EXIT_STOPPED
    if stopped:
        lifecycle.finish(store, run_id, "stopped")
        say("stopped on request; what was trained so far is kept")
        return EXIT_STOPPED
    lifecycle.finish(store, run_id, "completed")
    say("completed")
    return EXIT_COMPLETED


def failure_message(error: BaseException) -> str:
    """What a failed run's record says about an unexpected exception: a full disk in
    words, anything else as ``Type: message``."""
    if is_disk_full(error):
        where = getattr(error, "filename", None)
        return str(disk_full_error(f"writing {where}" if where else "writing the run's files"))
    return f"{type(error).__name__}: {error}"


def _record(store: RunStore, run_id: str, status: str, error: str) -> bool:
    """Record how the run ended; if the store itself can't be written (a full disk), say
    why on stderr - the only place left - and return False: the run is then reaped as
    ``interrupted`` once this process has ended."""
    try:
        lifecycle.finish(store, run_id, status, error)
        return True
    except Exception as e:  # noqa: BLE001 - nothing may escape once the run is claimed
        print(
            f"run {run_id}: could not record that it {status} ({error}): {e}",
            file=sys.stderr,
        )
        return False


def _quietly(say: Callable[[str], None], message: str) -> None:
    with contextlib.suppress(Exception):
        say(message)


def _wait_for_slot(
    store: RunStore, run_id: str, limit: int, flag: StopFlag, say: Callable[[str], None]
) -> bool:
    """Poll until the run holds a running slot (True) or a stop is requested (False)."""
    announced = False
    while not flag():
        lifecycle.reap(store)  # a killed run must not hold its slot forever
        if lifecycle.claim_slot(store, run_id, limit):
            return True
        if not announced:
            say(f"queued: waiting for a free slot (at most {limit} running at once)")
            announced = True
        time.sleep(SLOT_POLL_S)
    return False


def _heartbeat(store: RunStore, run_id: str, flag: StopFlag, done: threading.Event) -> None:
    """Beat every ``HEARTBEAT_S`` until ``done``. Also carries stop requests both ways: a
    signal's request into the store (a signal handler must not use the main thread's
    connection), and the store's request into ``flag`` even while the trainer is busy.
    Stops the run when its store file is deleted or replaced: nobody could see or stop
    it any more, and it would train on unseen (and hold the CPUs)."""
    written = False
    identity = lifecycle.file_identity(store.path)
    try:
        while True:
            flag.wake.wait(HEARTBEAT_S)
            flag.wake.clear()
            if flag.signalled and not written:
                lifecycle.request_stop(store, run_id)
                written = True
            if done.is_set():
                return
            if not flag.is_set() and lifecycle.file_identity(store.path) != identity:
                print(
                    f"stopping: the run store {store.path} was deleted or replaced while "
                    "this run trained",
                    file=sys.stderr,
                )
                flag.set()
                continue
            lifecycle.heartbeat(store, run_id)
            if not flag.is_set() and lifecycle.stop_requested(store, run_id):
                flag.set()
    except UserError as e:  # e.g. a full disk: the run's own outcome says more
        print(f"heartbeat stopped: {e}", file=sys.stderr)
    except Exception:  # noqa: BLE001 - a failed beat must not kill the worker
        traceback.print_exc()
    finally:
        store.close()


@contextmanager
def _stop_on_signals(flag: StopFlag) -> Iterator[None]:
    """SIGTERM/SIGINT set the stop flag; one arriving once it is set stops at once."""

    def handler(signum: int, frame: Any) -> None:
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set(from_signal=True)
        # os.write: print() may not be re-entered from a signal handler.
        os.write(2, b"stopping after the current batch (signal again to stop at once)\n")

    with lifecycle.signals_handled(handler):
        yield


def _reporter(store: RunStore, run_id: str, echo: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        store.log_event(run_id, message)
        if echo:
            print(f"{time.strftime('%H:%M:%S')} run {run_id}: {message}", file=sys.stderr)

    return say


def _workload() -> Workload:
    spec = os.environ.get(TEST_WORKLOAD_ENV, "").strip()
    if spec:
        module, _, name = spec.partition(":")
        return getattr(importlib.import_module(module), name)
    from pipelines.training.loop import run_experiment

    return run_experiment
