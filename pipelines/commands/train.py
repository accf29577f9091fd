"""``python -m pipelines train [--config FILE] [--set key=value ...] [--json]``.

Runs one experiment in the foreground. Where a live warm pool serves the run store
(:mod:`pipelines.runs.pool`, e.g. the dashboard's), the run is submitted to it and followed
from the store: the same epoch lines and events on stderr, the same result; Ctrl-C asks the
run to stop (a second Ctrl-C leaves it stopping and returns). Otherwise this process is the
run's worker in the store, so killing it leaves the run ``interrupted`` (with its rows) rather
than stuck in ``running``; Ctrl-C stops it gracefully (a second Ctrl-C at once). Progress goes
to stderr; with ``--json`` stdout gets exactly one JSON object at the end.

A refused config, backbone or data set (:func:`pipelines.training.preflight.check_experiment`)
creates no run; a problem only loading finds (depth, image size, batch size, unusable
images) leaves a ``failed`` run with the reason. Either way: ``error: ...``, exit 2.
"""

from __future__ import annotations

import json
import os
import sys
import time

from pipelines.commands import add_set_option
from pipelines.errors import UserError
from pipelines.training.config import ExperimentConfig

PHASES = {"feature_extraction": "feature extraction", "fine_tuning": "fine-tuning"}
FOLLOW_S = 0.2  # how often a run on the pool is read back


class _Reporting:
    """The run store, plus a progress line on stderr for what the trainer reports."""

    def __init__(self, store, arms: list[str]):
        self._store, self._arms = store, arms
        self._last = 0.0
        self._acc: dict[str, float] = {}
        self._tty = sys.stderr.isatty()

    def __getattr__(self, name):
        return getattr(self._store, name)

    def set_progress(self, run_id, arm, progress):
        self._store.set_progress(run_id, arm, progress)
        now = time.monotonic()
        if arm != self._arms[-1] or now - self._last < 0.25:
            return
        self._last = now
        accs = "  ".join(f"{a} val {self._acc[a]:.3f}" for a in self._arms if a in self._acc)
        line = (
            f"{PHASES.get(progress['phase'], progress['phase'])}: epoch "
            f"{progress['epoch'] + 1}/{progress['epochs_total']}, step "
            f"{progress['step']}/{progress['steps_per_epoch']}, "
            f"ETA {progress['eta_s']:.0f}s  {accs}"
        )
        if self._tty:
            print(f"\r{line:<100}", end="", file=sys.stderr, flush=True)

    def log_epoch(self, run_id, arm, **row):
        self._store.log_epoch(run_id, arm, **row)
        self.print_epoch(arm, row)

    def print_epoch(self, arm, row):
        self._acc[arm] = row["val_accuracy"]
        task = f" {row['task']}" if row.get("task") else ""  # a HydraNet's head
        print(
            f"\r{arm:>8}{task} epoch {row['epoch'] + 1} ({PHASES[row['phase']]}): "
            f"loss {row['loss']:.4f} "
            f"acc {row['accuracy']:.4f}  val_loss {row['val_loss']:.4f} "
            f"val_acc {row['val_accuracy']:.4f}  {row['epoch_s']:.1f}s{' ' * 10}",
            file=sys.stderr,
            flush=True,
        )

    def log_event(self, run_id, message):
        self._store.log_event(run_id, message)
        self.print_event(message)

    def print_event(self, message):
        print(f"\r{message}{' ' * 20}", file=sys.stderr, flush=True)


def _follow(store, run_id: str, arms: list[str]) -> int:
    """Follow a run on the warm pool from the store until it has finished, printing its
    events and epoch rows as the foreground worker would; the worker's exit code."""
    from pipelines.runs import lifecycle
    from pipelines.runs.worker import EXIT_COMPLETED, EXIT_FAILED, EXIT_STOPPED

    out = _Reporting(store, arms)
    seen_event, seen_rows, stopping = 0, 0, False
    while True:
        try:
            lifecycle.reap(store, run_id)
            run = store.get_run(run_id)
            for event in store.events(run_id, after=seen_event):
                seen_event = event["id"]
                out.print_event(event["message"])
            rows = store.curves(run_id)
            for row in rows.iloc[seen_rows:].to_dict("records"):
                out.print_epoch(row.pop("arm"), {k: v for k, v in row.items() if k != "time"})
            seen_rows = len(rows)
            if not run.active:
                break
            time.sleep(FOLLOW_S)
        except KeyboardInterrupt:
            if stopping:
                print(f"run {run_id} is stopping; not waiting for it", file=sys.stderr)
                return EXIT_STOPPED
            stopping = True
            lifecycle.request_stop(store, run_id)
            lifecycle.drop_unclaimed(store, run_id)
            print("stopping after the current batch (Ctrl-C again to leave it)", file=sys.stderr)
    return {"completed": EXIT_COMPLETED, "stopped": EXIT_STOPPED}.get(run.status, EXIT_FAILED)


def _claimed_here(store, run_id: str) -> bool:
    """Claim the run for this process; False if a pool worker claimed it first."""
    from pipelines.runs import lifecycle

    try:
        lifecycle.claim_worker(store, run_id, os.getpid())
    except UserError:
        if store.get_run(run_id).worker_pid not in (None, os.getpid()):
            return False
        raise
    return True


def run(args) -> int:
    from pipelines.runs import pool
    from pipelines.runs.store import RunStore
    from pipelines.runs.worker import EXIT_COMPLETED, run_worker
    from pipelines.training.preflight import check_experiment

    config = ExperimentConfig.from_json_file(args.config) if args.config else ExperimentConfig()
    config = check_experiment(config.with_overrides(args.set or []))
    store = RunStore()
    run_id = store.create_run(config)
    print(f"run {run_id}: {config.backbone} on {config.dataset}", file=sys.stderr)
    if pool.live(store) or not _claimed_here(store, run_id):
        # A pool worker takes it (the check comes after creating the run, so there is no
        # gap), or a pool that started just now already has.
        print(f"run {run_id}: on the warm worker pool", file=sys.stderr)
        code = _follow(store, run_id, config.arms)
    else:
        code = run_worker(run_id, _Reporting(store, config.arms))
    run = store.get_run(run_id)
    if run.status == "failed":
        raise UserError(f"run {run_id} failed: {run.error}")
    if run.active:  # the store could not record the end
        raise UserError(f"run {run_id} ended, but the run store could not record it (see above)")
    summary = run.summary or {}
    keys = (
        "final_val_accuracy",
        "best_val_accuracy",
        "final_val_balanced_accuracy",
        "best_val_balanced_accuracy",
        "epochs",
        "wall_s",
    )
    arms = {name: {k: arm.get(k) for k in keys} for name, arm in summary.get("arms", {}).items()}
    for name, arm in summary.get("arms", {}).items():
        if "tasks" in arm:  # several tasks: each head's accuracies (the arm's are means)
            arms[name]["tasks"] = arm["tasks"]
    extra = {k: summary[k] for k in ("hydra", "cost") if k in summary}
    if args.json:
        print(json.dumps({"run_id": run_id, "status": run.status, "arms": arms, **extra}))
    else:
        print(f"run {run_id} {run.status}")
        for name, arm in arms.items():
            print(
                f"  {name:>8}: final val acc {arm['final_val_accuracy']:.4f}, best "
                f"{arm['best_val_accuracy']:.4f} (balanced "
                f"{arm['best_val_balanced_accuracy']:.4f}), {arm['epochs']} epochs, "
                f"{arm['wall_s']:.1f}s"
            )
            for task, acc in arm.get("tasks", {}).items():
                print(
                    f"  {'':>8}  {task}: final val acc {acc['final_val_accuracy']:.4f} "
                    f"(balanced {acc['final_val_balanced_accuracy']:.4f})"
                )
        if "cost" in extra:
            cost = extra["cost"]
            print(
                f"  HydraNet {cost['hydra']}: {cost['networks']} network(s), "
                f"{cost['wall_s']:.1f}s, {cost['backbone_forward_images']:,} images through "
                f"the backbone, {cost['parameters']:,} parameters, peak memory "
                f"{cost['peak_memory_bytes'] / 2**20:.0f} MB"
            )
        print(f"see it with: python -m pipelines runs show {run_id}")
    return 0 if code == EXIT_COMPLETED else code


def register(sub) -> None:
    p = sub.add_parser("train", help="run an experiment in the foreground")
    p.add_argument(
        "--config", help="JSON file with config fields (see pipelines/training/config.py)"
    )
    add_set_option(p, "override one field, e.g. --set phase2.unfreeze_blocks=2 (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.set_defaults(func=run)
