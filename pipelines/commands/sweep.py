"""``python -m pipelines sweep --param KEY=RANGE ... [--json]``: run a sweep and wait for it.

Builds the :class:`~pipelines.sweeps.SweepSpec` from ``--space FILE`` (JSON or TOML) and the
flags (a flag wins over the file; ``--param`` replaces the file's parameter of the same
key), checks all of it before anything exists (``error: ...``, exit 2), starts
``--workers`` local worker processes (default ``MAX_RUNNING_EXPERIMENTS``) and follows the
study until every trial has ended, printing each trial's end on stderr. With ``--json``
stdout gets exactly ``{"sweep_id", "best": {"params", "value", "run_id"} | null, "trials":
[{"number", "state", "params", "value", "run_id"}]}``. Ctrl-C stops the sweep (running
trials stop like a run's Stop); a second Ctrl-C leaves it stopping. ``--workers 0`` only
creates the sweep, for ``sweep-worker`` processes elsewhere to run.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from typing import Any

from pipelines.commands import add_set_option
from pipelines.errors import UserError

FOLLOW_S = 1.0


def register(sub) -> None:
    from pipelines.sweeps.space import OBJECTIVES, PRUNERS, SAMPLERS

    p = sub.add_parser(
        "sweep",
        help="explore a space of configs (Optuna): one run per trial",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument(
        "--param",
        action="append",
        metavar="KEY=RANGE",
        help="a dimension: key=low:high, key=low:high:log or key=a,b,c (repeatable)",
    )
    p.add_argument("--space", metavar="FILE", help="the space (and settings) from JSON or TOML")
    p.add_argument("--config", metavar="FILE", help="JSON file with the fixed config fields")
    add_set_option(
        p, "fix one config field for every trial, e.g. --set phase1.epochs=3 (repeatable)"
    )
    p.add_argument("--trials", type=int, help="the trial budget (default: the whole grid, or 20)")
    p.add_argument("--sampler", help=f"one of {', '.join(SAMPLERS)} (default tpe)")
    p.add_argument(
        "--objective", help=f"one of {', '.join(OBJECTIVES)} (default best ImageNet val acc)"
    )
    p.add_argument("--pruner", help=f"one of {', '.join(PRUNERS)} (default median)")
    p.add_argument("--seed", type=int, help="the sampler's seed (default 0)")
    p.add_argument(
        "--workers", type=int, help="local worker processes (default: MAX_RUNNING_EXPERIMENTS)"
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage URL (default: SWEEP_STORAGE, else embedded)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.set_defaults(func=run, needs_tensorflow=False)


def build_spec(args) -> Any:
    """The spec from ``--space`` and the flags (not yet validated)."""
    from pipelines.sweeps.space import SweepSpec, load_space, parse_param
    from pipelines.training.config import ExperimentConfig

    spec = load_space(args.space) if args.space else SweepSpec(params=())
    params = {p.key: p for p in spec.params}
    flags = [parse_param(text) for text in args.param or []]
    seen: set[str] = set()
    for p in flags:
        if p.key in seen:
            raise UserError(f"--param {p.key}: given twice; give each key once")
        seen.add(p.key)
        params[p.key] = p
    fixed: dict[str, Any] = dict(spec.fixed) if isinstance(spec.fixed, dict) else {}
    if args.config:
        fixed.update(ExperimentConfig.from_json_file(args.config).to_dict())
    for item in args.set or []:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got {item!r}")
        key, _, value = item.partition("=")
        fixed[key.strip()] = value.strip()
    changes = {
        k: getattr(args, k)
        for k in ("trials", "sampler", "objective", "pruner", "seed")
        if getattr(args, k) is not None
    }
    return replace(spec, params=tuple(params.values()), fixed=fixed, **changes)


def result(sweep_id: str, storage: str | None) -> dict[str, Any]:
    """The ``--json`` object."""
    from pipelines.sweeps import best_trial, sweep_trials

    keys = ("number", "state", "params", "value", "run_id")
    best = best_trial(sweep_id, storage)
    return {
        "sweep_id": sweep_id,
        "best": None if best is None else {k: best[k] for k in ("params", "value", "run_id")},
        "trials": [{k: t[k] for k in keys} for t in sweep_trials(sweep_id, storage)],
    }


def run(args) -> int:
    from pipelines.sweeps import start_sweep, sweep_state_of, sweep_trials
    from pipelines.sweeps.space import point_text

    spec = build_spec(args)
    sweep_id = start_sweep(spec, args.storage, args.workers)
    print(f"sweep {sweep_id}: {spec.budget()} trials, {spec.sampler} sampler", file=sys.stderr)
    if args.workers == 0:
        print(
            f"no local workers; join with: python -m pipelines sweep-worker --sweep {sweep_id}",
            file=sys.stderr,
        )
    else:
        shown: set[int] = set()
        stopping = False
        while True:
            try:
                state = sweep_state_of(sweep_id, args.storage)
                for t in sweep_trials(sweep_id, args.storage):
                    if t["state"] in ("COMPLETE", "PRUNED", "FAIL") and t["number"] not in shown:
                        shown.add(t["number"])
                        value = "" if t["value"] is None else f" {t['value']:.4f}"
                        why = f" ({t['error']})" if t["state"] == "FAIL" and t["error"] else ""
                        print(
                            f"trial {t['number']} {t['state']}{value}: "
                            f"{point_text(t['params'])}{why}",
                            file=sys.stderr,
                        )
                if state in ("finished", "stopped"):
                    break
                time.sleep(FOLLOW_S)
            except KeyboardInterrupt:
                if stopping:
                    print(f"sweep {sweep_id} is stopping; not waiting for it", file=sys.stderr)
                    break
                stopping = True
                from pipelines.sweeps import stop_sweep

                stop_sweep(sweep_id, args.storage)
                print("stopping the sweep (Ctrl-C again to leave it)", file=sys.stderr)
    out = result(sweep_id, args.storage)
    if args.json:
        print(json.dumps(out))
    else:
        best = out["best"]
        print(f"sweep {sweep_id}: {len(out['trials'])} trials")
        if best is not None:
            print(
                f"  best {best['value']:.4f}: {point_text(best['params'])} (run {best['run_id']})"
            )
        print(f"see it with: python -m pipelines sweeps show {sweep_id}")
    return 0
