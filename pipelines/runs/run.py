"""A run as the store reads it: :class:`Run`, a frozen record, and the run statuses.

The store builds one per read (:meth:`pipelines.runs.store.RunStore.get_run`,
``list_runs``, ``runs_with_status``); nothing about it writes. Its dicts (``summary``,
``progress``, ``config_dict``) are the stored JSON: read them, never change them.

**A config that no longer parses.** ``config`` is the stored config parsed with
:meth:`ExperimentConfig.from_dict`. A run stored by an older version may hold a config this
one refuses (a field renamed or removed, a check made stricter); such a run stays readable:
``config`` is None, ``config_problem`` says why, and ``config_dict`` always holds the config
exactly as stored. Listing code shows what it can; the worker refuses to train it (the run
fails with ``config_problem``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.errors import UserError
from pipelines.training.config import ExperimentConfig

STATUSES = ("queued", "running", "completed", "failed", "stopped", "interrupted", "pruned")
ACTIVE = ("queued", "running")
# pruned: a sweep's trial stopped early by its pruner (pipelines.sweeps), rows kept.
TERMINAL = ("completed", "failed", "stopped", "interrupted", "pruned")


@dataclass(frozen=True)
class Run:
    """One run: its config, status, worker, times (Unix seconds), summary and progress."""

    run_id: str
    status: str
    config: ExperimentConfig | None  # None: the stored config no longer parses
    created: float
    updated: float
    worker_pid: int | None = None
    worker_started: float | None = None  # the worker's start time, against pid reuse
    heartbeat: float | None = None
    stop_requested: bool = False
    error: str | None = None
    summary: dict[str, Any] | None = None
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)  # per arm
    config_dict: dict[str, Any] = field(default_factory=dict)  # as stored
    config_problem: str | None = None  # why ``config`` is None
    sweep_id: str | None = None  # the series or sweep it belongs to, if any
    trial: int | None = None  # its number within that series or sweep
    exercise_id: str | None = None  # the group exercise whose group started it, if any
    group_name: str | None = None  # that group's name

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Run:
        """From :meth:`to_dict`'s shape (``config`` a dict); the config is parsed here."""
        config_dict = dict(data["config"])
        try:
            config, problem = ExperimentConfig.from_dict(config_dict), None
        except UserError as e:
            config, problem = None, f"the stored config no longer parses: {e}"
        return cls(
            run_id=data["run_id"],
            status=data["status"],
            config=config,
            created=data["created"],
            updated=data["updated"],
            worker_pid=data.get("worker_pid"),
            worker_started=data.get("worker_started"),
            heartbeat=data.get("heartbeat"),
            stop_requested=bool(data.get("stop_requested")),
            error=data.get("error"),
            summary=data.get("summary"),
            progress=data.get("progress") or {},
            config_dict=config_dict,
            config_problem=problem,
            sweep_id=data.get("sweep_id"),
            trial=data.get("trial"),
            exercise_id=data.get("exercise_id"),
            group_name=data.get("group_name"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``run_id, created, updated, status, config`` (as stored), ``worker_pid,
        worker_started, heartbeat, stop_requested, error, summary, progress, sweep_id, trial,
        exercise_id, group_name`` (None for a run outside any series, sweep or exercise)."""
        return {
            "run_id": self.run_id,
            "created": self.created,
            "updated": self.updated,
            "status": self.status,
            "config": self.config_dict,
            "worker_pid": self.worker_pid,
            "worker_started": self.worker_started,
            "heartbeat": self.heartbeat,
            "stop_requested": self.stop_requested,
            "error": self.error,
            "summary": self.summary,
            "progress": self.progress,
            "sweep_id": self.sweep_id,
            "trial": self.trial,
            "exercise_id": self.exercise_id,
            "group_name": self.group_name,
        }

    @property
    def total_epochs(self) -> int:
        """``phase1.epochs + phase2.epochs`` (read from ``config_dict`` where the config no
        longer parses; 0 where even that fails)."""
        if self.config is not None:
            return self.config.phase1.epochs + self.config.phase2.epochs
        try:
            return sum(int(self.config_dict[p]["epochs"]) for p in ("phase1", "phase2"))
        except (KeyError, TypeError, ValueError):
            return 0

    @property
    def active(self) -> bool:
        """Queued or running (as stored: a dead worker's run until it is reaped)."""
        return self.status in ACTIVE

    @property
    def finished(self) -> bool:
        """Completed, failed, stopped, interrupted or pruned."""
        return self.status in TERMINAL
