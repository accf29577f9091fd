"""A sweep worker: one long-lived process that takes trial after trial of one sweep.

``python -m pipelines sweep-worker --sweep ID [--storage URL]`` (what
:func:`pipelines.sweeps.start_sweep` spawns, and what another machine runs to join a sweep)
calls :func:`work`. Like a warm pool worker (:mod:`pipelines.runs.pool`), it imports
TensorFlow and keeps the built-in backbones' blocks warm once, then runs each trial in this
same process (:func:`pipelines.sweeps.trial.run_trial`, through the run function every
worker uses), so the feature cache's rows stay in memory: trials on the same frozen backbone
and data compute their features once. Between trials it releases what a finished run held,
as a pool worker does.

The loop: fail and re-enqueue trials whose worker died (:func:`reap_trials`), take a waiting
trial and run it; when none waits but others still run elsewhere, wait for them (one may
die and come back as a waiting trial); leave when nothing waits or runs, or once the sweep
is stopped. SIGTERM/SIGINT stop the trial in progress like a run's Stop (its run ends
``stopped``) and the worker leaves after it; killing the worker leaves its run
``interrupted`` (the run store's reaping) and its trial failed and re-enqueued for the
others (:func:`reap_trials`, by any worker that looks).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

from pipelines.runs.store import RunStore
from pipelines.sweeps.study import load_study, reap_trials, requeue, study_spec, take_trial

IDLE_POLL_S = 1.0  # how often a worker with nothing to take looks again


def work(
    sweep_id: str,
    storage: str | None = None,
    *,
    store: RunStore | None = None,
    max_running: int | None = None,
    max_trials: int | None = None,
) -> int:
    """Take and run the sweep's trials until none is left (see the module docstring);
    ``max_trials``: leave after that many (tests). Returns how many trials it ran."""
    from optuna.trial import TrialState

    from pipelines.runs.jobs import max_running_from_env
    from pipelines.runs.pool import between_runs, warm_up
    from pipelines.sweeps.trial import run_trial
    from pipelines.training.boundary_cache import keep_depths

    store = store or RunStore()
    limit = max_running or max_running_from_env()
    study = load_study(sweep_id, storage)
    spec = study_spec(study)
    warm_up()
    keep_depths(spec.fine_tuning_depths())  # the first feature pass stores every boundary
    leaving = threading.Event()
    done = 0
    _say(f"sweep worker {os.getpid()} joins {sweep_id}")
    with _leave_on_signals(leaving) as signals:
        while not leaving.is_set() and (max_trials is None or done < max_trials):
            if study.user_attrs.get("stopped"):
                _say("the sweep was stopped")
                break
            reap_trials(study)
            trial = take_trial(study, spec)
            if trial is None:
                running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if not running:
                    break
                time.sleep(IDLE_POLL_S)
                study = load_study(sweep_id, storage)  # attrs are read once per object
                continue
            _say(f"trial {trial.number} starts")
            state = run_trial(study, trial, spec, store, limit, sweep_id)
            between_runs()
            done += 1
            _say(f"trial {trial.number}: {state}")
            if signals.signalled():
                ended = study._storage.get_trial(trial._trial_id)
                again = not ended.user_attrs.get("stopped_by_user")  # a user skipped it
                if state == "FAIL" and again and not _sweep_stopped(sweep_id, storage):
                    requeue(study, ended)
                _say("leaving on a signal; its trial was stopped and waits for another worker")
                break
            study = load_study(sweep_id, storage)
    _say(f"sweep worker {os.getpid()} leaves after {done} trial(s)")
    return done


def _sweep_stopped(sweep_id: str, storage: str | None) -> bool:
    return bool(load_study(sweep_id, storage).user_attrs.get("stopped"))


def _say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


class _leave_on_signals:
    """SIGTERM/SIGINT: leave once the trial in progress has ended. Between trials the
    handler here sets ``leaving``; during a trial the run's own handlers
    (:func:`pipelines.runs.worker.run_worker`) stop the run, and the signal also reaches
    the wake-up pipe read by :meth:`signalled` after the trial."""

    def __init__(self, leaving: threading.Event) -> None:
        self.leaving = leaving
        self.previous: dict[int, Any] = {}
        self.pipe: tuple[int, int] | None = None
        self.wakeup = -1

    def __enter__(self) -> _leave_on_signals:
        if threading.current_thread() is not threading.main_thread():
            return self

        def handler(signum: int, frame: Any) -> None:
            self.leaving.set()

        for s in (signal.SIGTERM, signal.SIGINT):
            self.previous[s] = signal.signal(s, handler)
        self.pipe = os.pipe()
        os.set_blocking(self.pipe[0], False)
        os.set_blocking(self.pipe[1], False)
        self.wakeup = signal.set_wakeup_fd(self.pipe[1], warn_on_full_buffer=False)
        return self

    def signalled(self) -> bool:
        """Whether SIGTERM or SIGINT arrived since the last look (also during a trial)."""
        if self.pipe is None:
            return False
        try:
            data = os.read(self.pipe[0], 1024)
        except BlockingIOError:
            return False
        if {signal.SIGTERM, signal.SIGINT} & set(data):
            self.leaving.set()
        return self.leaving.is_set()

    def __exit__(self, *exc: Any) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h)
        if self.pipe is not None:
            signal.set_wakeup_fd(self.wakeup)
            for fd in self.pipe:
                os.close(fd)
