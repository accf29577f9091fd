"""One trial: an ordinary run in the run store, reported to the sweep's study as it trains.

:func:`run_trial` takes a trial a worker has taken (:func:`pipelines.sweeps.study.take_trial`):

1. draws its parameters (``trial.suggest_*`` under the config's dotted names; a grid's trial
   already carries its point) and builds the experiment config; a config refused here
   fails the trial with the reason and no run;
2. creates the run, tagged with the sweep id and trial number and already claimed by this
   process (:func:`pipelines.runs.lifecycle.create_claimed`), so no pool worker takes it;
3. runs it through :func:`pipelines.runs.worker.run_worker`, the function every worker
   uses (slot, heartbeat, Stop, signals, failure recording), with the store wrapped in
   :class:`TrialReporter`: after each epoch of every arm it records both arms' validation
   accuracy per epoch on the trial (``curves``, so a machine without this run store can
   show it live), reports the epoch's objective as an intermediate value and asks the
   pruner; a pruned trial's run is asked to stop and ends ``pruned``, every row kept;
4. tells the study how it ended: ``COMPLETE`` with the objective, ``PRUNED``, or ``FAIL``
   (the run failed or was stopped; ``run_status`` and ``error`` say which and why). A run
   stopped from outside the sweep (its Stop on the Runs page or the run view) marks the
   trial ``stopped_by_user``: the configuration is skipped, not run again.

The objective (:func:`objective`): ``best`` / ``final`` validation accuracy of the ImageNet
arm (of the random arm where only that one trains), or ``gap``: ImageNet's best minus
random's best. Each epoch's intermediate value is the same quantity over the epochs so far.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from pipelines.errors import UserError
from pipelines.runs import lifecycle
from pipelines.runs.store import RunStore
from pipelines.sweeps.space import Param, SweepSpec, point_text
from pipelines.sweeps.study import STOPPED_BY_USER, SWEEP_STOPPED

if TYPE_CHECKING:
    import optuna

STOP_POLL_S = 2.0  # how often a trial looks for the sweep's Stop in the study
_LOG_EPOCH = inspect.signature(RunStore.log_epoch)


def suggest(trial: optuna.Trial, p: Param) -> Any:
    """The trial's value for ``p`` (its fixed value where the trial was enqueued with one)."""
    if p.kind == "int":
        return trial.suggest_int(p.key, int(p.low), int(p.high), log=p.log)
    if p.kind == "float":
        return trial.suggest_float(p.key, float(p.low), float(p.high), log=p.log)
    return trial.suggest_categorical(p.key, list(p.choices))


def objective(spec_objective: str, curves: dict[str, list[float]]) -> float | None:
    """The objective over per-arm validation accuracy curves (None where not defined yet)."""
    arm = "imagenet" if curves.get("imagenet") else "random"
    if spec_objective == "gap":
        if not curves.get("imagenet") or not curves.get("random"):
            return None
        return max(curves["imagenet"]) - max(curves["random"])
    values = curves.get(arm) or []
    if not values:
        return None
    return values[-1] if spec_objective == "final" else max(values)


class TrialReporter:
    """The run store for the trial's run, plus reporting each epoch to the Optuna trial
    (curves, intermediate value, pruning). Everything else passes through to ``store``."""

    def __init__(self, store: RunStore, trial: optuna.Trial, spec: SweepSpec, arms: list[str]):
        self._store, self._trial, self._spec, self._arms = store, trial, spec, list(arms)
        self.curves: dict[str, list[float]] = {arm: [] for arm in self._arms}
        self.reported = -1
        self.pruned = False
        self.run_id: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def log_epoch(self, *args: Any, **kwargs: Any) -> None:
        self._store.log_epoch(*args, **kwargs)
        row = _LOG_EPOCH.bind(self._store, *args, **kwargs).arguments
        arm, value = row["arm"], row["val_accuracy"]
        if arm in self.curves:
            self.curves[arm].append(None if value is None else float(value))
        self._epoch_done(row["run_id"])

    def _epoch_done(self, run_id: str) -> None:
        """Once every arm has reported epoch ``reported + 1``: record and maybe prune."""
        done = min(len(c) for c in self.curves.values())
        if done <= self.reported + 1:
            return
        self.reported = done - 1
        with contextlib.suppress(Exception):  # the study is a window; the run is the record
            self._trial.set_user_attr("curves", self.curves)
            self._trial.set_user_attr("beat", time.time())
        clean = {a: [v for v in c[:done] if v is not None] for a, c in self.curves.items()}
        value = objective(self._spec.objective, clean)
        if value is None or self.pruned:
            return
        self._trial.report(value, self.reported)
        if self._trial.should_prune():
            self.pruned = True
            self._store.log_event(
                run_id,
                f"pruned by the sweep after epoch {self.reported + 1}: its objective "
                f"{value:.3f} is below the median of the earlier trials",
            )
            lifecycle.request_stop(self._store, run_id)


def run_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    spec: SweepSpec,
    store: RunStore,
    max_running: int,
    sweep_id: str,
) -> str:
    """Run ``trial`` as a run in ``store`` (see the module docstring); the Optuna state it
    was told (``COMPLETE``, ``PRUNED``, ``FAIL``)."""
    from optuna.trial import TrialState

    from pipelines.runs.pool import WORKER_LOG, output_to
    from pipelines.runs.worker import run_worker
    from pipelines.training.preflight import check_experiment

    point = {p.key: suggest(trial, p) for p in spec.params}
    try:
        config = check_experiment(spec.config_for(point))
    except UserError as e:
        trial.set_user_attr("error", str(e))
        trial.set_user_attr("run_status", "refused")
        study.tell(trial, state=TrialState.FAIL)
        return "FAIL"
    run_id = lifecycle.create_claimed(store, config, os.getpid(), sweep_id, trial.number)
    trial.set_user_attr("run_id", run_id)
    store.log_event(run_id, f"sweep {sweep_id}, trial {trial.number}: {point_text(point)}")
    reporter = TrialReporter(store, trial, spec, config.arms)
    watch = _SweepWatch(study, trial, store, run_id)
    watch.start()
    try:
        with output_to(store.artefact_dir(run_id) / WORKER_LOG):
            try:
                run_worker(run_id, reporter, max_running, echo=True, pruned=lambda: reporter.pruned)
            except UserError as e:  # refused before its claim: nothing recorded in the run
                trial.set_user_attr("error", str(e))
    finally:
        watch.done.set()
        watch.join(timeout=5)
    run = store.get_run(run_id)
    trial.set_user_attr("run_status", run.status)
    trial.set_user_attr("curves", reporter.curves)
    if run.error:
        trial.set_user_attr("error", run.error)
    if run.status == "stopped" and run.stop_requested:
        if _sweep_stopped(study):
            trial.set_user_attr("error", SWEEP_STOPPED)
        else:  # its run's own Stop (Runs page, run view): a user skipped this configuration
            trial.set_user_attr("stopped_by_user", True)
            trial.set_user_attr("error", STOPPED_BY_USER)
    if run.status == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
        return "PRUNED"
    clean = {a: [v for v in c if v is not None] for a, c in reporter.curves.items()}
    value = objective(spec.objective, clean)
    if run.status == "completed" and value is not None:
        study.tell(trial, values=value)
        return "COMPLETE"
    study.tell(trial, state=TrialState.FAIL)
    return "FAIL"


def _sweep_stopped(study: optuna.Study) -> bool:
    """Whether the sweep was stopped (read afresh: a Stop may be seconds old)."""
    return bool(study._storage.get_study_user_attrs(study._study_id).get("stopped"))


class _SweepWatch(threading.Thread):
    """While the trial runs: beat on the trial (so other machines know its worker lives)
    and stop the run once the sweep is stopped (:func:`pipelines.sweeps.stop_sweep`)."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial, store: RunStore, run_id: str):
        super().__init__(daemon=True)
        self.study, self.trial, self.store, self.run_id = study, trial, store, run_id
        self.done = threading.Event()

    def run(self) -> None:
        from pipelines.sweeps.study import BEAT_S

        storage, study_id = self.study._storage, self.study._study_id
        beat = time.monotonic()
        try:
            while not self.done.wait(STOP_POLL_S):
                with contextlib.suppress(Exception):  # a storage hiccup must not end the run
                    if storage.get_study_user_attrs(study_id).get("stopped"):
                        lifecycle.request_stop(self.store, self.run_id)
                        return
                    if time.monotonic() - beat >= BEAT_S:
                        beat = time.monotonic()
                        storage.set_trial_user_attr(self.trial._trial_id, "beat", time.time())
        finally:
            self.store.close()
