"""``python -m pipelines runs list|show|export|delete``: the run store from the shell.

None of these import TensorFlow; they read the store any process may be writing to. Each
reaps first (:func:`pipelines.runs.lifecycle.reap`), so a run whose worker died is shown
``interrupted`` and can be deleted. Configs are shown as stored (``Run.config_dict``), so a
run whose config this version no longer parses is still listed and shown.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime
from typing import Any

from pipelines.errors import UserError
from pipelines.runs import lifecycle
from pipelines.runs.store import RunStore


def register(subparsers) -> None:
    p = subparsers.add_parser("runs", help="list, show, export or delete stored runs")
    sub = p.add_subparsers(dest="runs_command", required=True, metavar="ACTION")

    q = sub.add_parser("list", help="every run, newest first")
    q.add_argument("--json", action="store_true", help="print a JSON list")
    q.set_defaults(func=run_list)

    q = sub.add_parser("show", help="a run's config, status and per-arm epoch curves")
    q.add_argument("run_id", metavar="RUN_ID")
    q.add_argument("--json", action="store_true", help="print a JSON object")
    q.set_defaults(func=run_show)

    q = sub.add_parser("export", help="write all of a run's metric rows to a CSV file")
    q.add_argument("run_id", metavar="RUN_ID")
    q.add_argument("--csv", required=True, metavar="FILE", help="the CSV file to write")
    q.set_defaults(func=run_export)

    q = sub.add_parser("delete", help="delete a finished run, its metrics and its files")
    q.add_argument("run_id", metavar="RUN_ID")
    q.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    q.set_defaults(func=run_delete)

    p.set_defaults(needs_tensorflow=False)


def list_rows(store: RunStore) -> list[dict[str, Any]]:
    """One JSON-ready row per run, newest first (the ``runs list --json`` shape); reaps
    first."""
    lifecycle.reap(store)
    best = store.best_val_accuracy()
    balanced = store.best_val_accuracy("val_balanced_accuracy")
    return [
        {
            "run_id": run.run_id,
            "status": run.status,
            "created": iso(run.created),
            "updated": iso(run.updated),
            "dataset": run.config_dict.get("dataset"),
            "backbone": run.config_dict.get("backbone"),
            "arms": run.config_dict.get("arms", []),
            "best_val_accuracy": best.get(run.run_id, {}),
            "best_val_balanced_accuracy": balanced.get(run.run_id, {}),
            "error": run.error,
            "sweep_id": run.sweep_id,
            "trial": run.trial,
            "group_name": run.group_name,
        }
        for run in store.list_runs()
    ]


def show_dict(store: RunStore, run_id: str) -> dict[str, Any]:
    """The run with its epoch curves per arm and its events (the ``runs show --json``
    shape); timestamps as ISO 8601 strings, NaN as null; reaps the run first."""
    lifecycle.reap(store, run_id)
    run = store.get_run(run_id).to_dict()  # the JSON shape, config as stored
    frame = store.curves(run_id, kind="epoch")
    arms = list(dict.fromkeys([*run["config"].get("arms", []), *frame["arm"]]))
    curves = {
        arm: [_clean(r) for r in frame[frame["arm"] == arm].drop(columns="arm").to_dict("records")]
        for arm in arms
    }
    for rows in curves.values():
        for r in rows:
            r["time"] = iso(r["time"])
    events = [{"time": iso(e["time"]), "message": e["message"]} for e in store.events(run_id)]
    return {
        **{k: run[k] for k in ("run_id", "status", "error", "stop_requested", "worker_pid")},
        **{k: run[k] for k in ("sweep_id", "trial", "exercise_id", "group_name")},
        **{k: iso(run[k]) for k in ("created", "updated", "heartbeat")},
        "config": run["config"],
        "progress": run["progress"],
        "summary": run["summary"],
        "curves": curves,
        "events": events,
    }


def run_list(args: argparse.Namespace) -> int:
    rows = list_rows(RunStore())
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no runs yet")
        return 0
    print(
        f"{'run id':22} {'status':11} {'created':19} {'backbone':20} {'series/sweep':18} "
        "best val accuracy"
    )
    for r in rows:
        best = "  ".join(f"{arm} {acc:.3f}" for arm, acc in r["best_val_accuracy"].items())
        created = r["created"][:19].replace("T", " ")
        series = f"{r['sweep_id']} #{r['trial']}" if r["sweep_id"] else "-"
        print(
            f"{r['run_id']:22} {r['status']:11} {created:19} {r['backbone'] or '-':20} "
            f"{series:18} {best or '-'}"
        )
    return 0


def run_show(args: argparse.Namespace) -> int:
    shown = show_dict(RunStore(), args.run_id)
    if args.json:
        print(json.dumps(shown, indent=1))
        return 0
    print(f"Run:      {shown['run_id']}")
    stopping = "  (stop requested)" if shown["stop_requested"] else ""
    print(f"Status:   {shown['status']}{stopping}")
    print(f"Created:  {shown['created']}   updated {shown['updated']}")
    if shown["sweep_id"]:
        print(f"Series:   {shown['sweep_id']}, trial {shown['trial']}")
    if shown["group_name"]:
        print(f"Group:    {shown['group_name']} (exercise {shown['exercise_id']})")
    if shown["error"]:
        print(f"Error:    {shown['error']}")
    print("Config:   " + json.dumps(shown["config"], separators=(", ", ": ")))
    for arm, progress in shown["progress"].items():
        print(f"Progress: {arm}: " + ", ".join(f"{k}={v}" for k, v in progress.items()))
    for arm, rows in shown["curves"].items():
        print(f"\n{arm}")
        if not rows:
            print("  (no epochs yet)")
            continue
        print(f"  {'phase':18} epoch    loss     acc  val_loss val_acc  epoch_s  img/s")
        for r in rows:
            print(
                f"  {r['phase'] or '-':18} {_fmt(r['epoch'], 'd'):>5} {_fmt(r['loss']):>7} "
                f"{_fmt(r['accuracy']):>7} {_fmt(r['val_loss']):>9} {_fmt(r['val_accuracy']):>7} "
                f"{_fmt(r['epoch_s'], '.1f'):>8} {_fmt(r['images_per_s'], '.0f'):>6}"
            )
    if shown["events"]:
        print("\nEvents")
        for e in shown["events"]:
            print(f"  {e['time'][11:19]}  {e['message']}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    count = RunStore().export_csv(args.run_id, args.csv)
    print(f"wrote {count} metric rows of run {args.run_id} to {args.csv}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    store = RunStore()
    lifecycle.reap(store, args.run_id)
    run = store.get_run(args.run_id)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError(f"not deleting run {args.run_id} without confirmation; pass --yes")
        answer = input(f"delete run {args.run_id} ({run.status}) and its files? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not deleted")
            return 1
    store.delete_run(args.run_id)
    print(f"deleted run {args.run_id}")
    return 0


def iso(timestamp: float | None) -> str | None:
    """Unix seconds as local ISO 8601 with offset, e.g. ``2025-01-31T14:05:09+01:00``."""
    if timestamp is None or (isinstance(timestamp, float) and math.isnan(timestamp)):
        return None
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """A DataFrame record made JSON-ready: NaN/NA -> None, numpy scalars -> Python."""
    import pandas

    out = {}
    for k, v in row.items():
        out[k] = None if pandas.isna(v) else v.item() if hasattr(v, "item") else v
    return out


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)
