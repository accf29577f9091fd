"""``python -m pipelines sweeps list|show ID|stop ID [--force] [--storage URL] [--json]``.

``list``: every sweep in the storage, newest first (``--json``: ``[{"sweep_id", "state",
"trials", "best_value", "created", "budget", "stopped_at"}]``). ``show``: a sweep's spec and
trials (``--json``: ``{"sweep_id", "state", "spec", "best", "trials"}``); it first fails and
re-enqueues trials whose worker died; a trial stopped from its run shows as ``STOPPED``
(``--json``: state ``FAIL``, ``"stopped_by_user": true``). ``stop``: no new trial starts and
running trials stop like a run's Stop; ``--force`` also kills this machine's workers that
still run its trials (:func:`pipelines.sweeps.force_stop`). None of them imports TensorFlow.
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
        if name == "stop":
            q.add_argument(
                "--force",
                action="store_true",
                help="also kill this machine's worker processes that still run its trials "
                "(their runs end stopped, rows kept; the trials fail and are not run again)",
            )
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
        state = "STOPPED" if t["stopped_by_user"] else t["state"]
        print(
            f"  {t['number']:>4} {state:<8} {value:>7}  {point_text(t['params'])}"
            f"  run {t['run_id'] or '-'}" + (f"  ({t['error']})" if t["error"] else "")
        )
    return 0


def run_stop(args) -> int:
    from pipelines.sweeps import force_stop, stop_sweep
    from pipelines.sweeps.study import STALE_AFTER_S

    if not args.force:
        stop_sweep(args.sweep_id, args.storage)
        print(f"sweep {args.sweep_id}: stopping", file=sys.stderr)
        return 0
    done = force_stop(args.sweep_id, args.storage)
    if args.json:
        print(json.dumps(done))
        return 0
    killed = ", ".join(map(str, done["killed"])) or "none left"
    print(f"sweep {args.sweep_id}: stopped; worker processes killed: {killed}", file=sys.stderr)
    if done["elsewhere"]:
        numbers = ", ".join(f"#{n}" for n in done["elsewhere"])
        print(
            f"trials {numbers} run on other machines: they stop there within seconds, or are "
            f"failed once their worker has been silent for {STALE_AFTER_S:.0f} s",
            file=sys.stderr,
        )
    return 0
