"""``python -m pipelines sweeps list|show ID|stop ID [--storage URL] [--json]``.

``list``: every sweep in the storage, newest first (``--json``: ``[{"sweep_id", "state",
"trials", "best_value", "created", "budget"}]``). ``show``: a sweep's spec and trials
(``--json``: ``{"sweep_id", "state", "spec", "best", "trials"}``); it first fails and
re-enqueues trials whose worker died. ``stop``: no new trial starts and running trials stop
like a run's Stop. None of them imports TensorFlow.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime


def register(sub) -> None:
    p = sub.add_parser("sweeps", help="list, show or stop sweeps")
    actions = p.add_subparsers(dest="sweeps_command", required=True, metavar="ACTION")
    for name, func, text in (
        ("list", run_list, "every sweep, newest first"),
        ("show", run_show, "a sweep's spec and trials"),
        ("stop", run_stop, "stop a sweep: running trials stop, no new ones start"),
    ):
        q = actions.add_parser(name, help=text)
        if name != "list":
            q.add_argument("sweep_id", metavar="ID")
        q.add_argument("--storage", metavar="URL", help="Optuna storage URL")
        q.add_argument("--json", action="store_true", help="print JSON")
        q.set_defaults(func=func)
    p.set_defaults(needs_tensorflow=False)


def _when(ts) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def run_list(args) -> int:
    from pipelines.sweeps import list_sweeps

    rows = list_sweeps(args.storage)
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no sweeps yet; start one with: python -m pipelines sweep --param ...")
    for r in rows:
        best = "-" if r["best_value"] is None else f"{r['best_value']:.4f}"
        print(
            f"{r['sweep_id']}  {r['state']:<9} {r['trials']:>4} trials  best {best}  "
            f"{_when(r['created'])}"
        )
    return 0


def run_show(args) -> int:
    from pipelines.commands.sweep import result
    from pipelines.sweeps import reap_sweep, sweep_spec, sweep_state_of, sweep_trials
    from pipelines.sweeps.space import point_text

    reap_sweep(args.sweep_id, args.storage)
    spec = sweep_spec(args.sweep_id, args.storage)
    state = sweep_state_of(args.sweep_id, args.storage)
    if args.json:
        out = result(args.sweep_id, args.storage)
        out["trials"] = sweep_trials(args.sweep_id, args.storage)
        print(json.dumps({"state": state, "spec": spec.to_dict(), **out}))
        return 0
    print(f"sweep {args.sweep_id}: {state}, {spec.sampler} sampler, objective {spec.objective}")
    print("  space: " + "  ".join(p.text() for p in spec.params))
    for t in sweep_trials(args.sweep_id, args.storage):
        value = "-" if t["value"] is None else f"{t['value']:.4f}"
        print(
            f"  {t['number']:>4} {t['state']:<8} {value:>7}  {point_text(t['params'])}"
            f"  run {t['run_id'] or '-'}" + (f"  ({t['error']})" if t["error"] else "")
        )
    return 0


def run_stop(args) -> int:
    from pipelines.sweeps import stop_sweep

    stop_sweep(args.sweep_id, args.storage)
    print(f"sweep {args.sweep_id}: stopping", file=sys.stderr)
    return 0
