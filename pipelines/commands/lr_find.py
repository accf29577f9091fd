"""``python -m pipelines lr-find [--config FILE] [--set key=value ...] --phase 1|2
[--arm imagenet|random] [--low LR] [--high LR] [--steps N] [--json] [--out FILE]``.

The learning-rate range test (:mod:`pipelines.training.lr_find`) for one arm and phase of an
experiment config, in the foreground. With ``--json`` stdout gets one object: ``phase``,
``suggested_lr``, ``rule``, ``lrs``, ``losses`` (and ``smoothed``, ``ended``, the range and
what the head started from). ``--out FILE`` also writes the points so far to FILE about
twice a second and the result at the end (``ended: failed`` with ``error`` for a refusal):
what the dashboard's background finder reads (:mod:`pipelines.runs.lr_jobs`). SIGTERM or
Ctrl-C stops before the next step, with the points so far; a second one at once.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from pipelines.commands import add_set_option
from pipelines.errors import UserError
from pipelines.training.config import ARMS, ExperimentConfig


def register(sub) -> None:
    p = sub.add_parser(
        "lr-find",
        help="the learning-rate range test: which rate to try for phase 1 or 2",
        description=(
            "Train one arm for one short pass with the learning rate rising exponentially "
            "from --low to --high, record the loss, stop once it diverges, and suggest a "
            "rate (the smoothed loss's minimum divided by 10)."
        ),
    )
    p.add_argument("--config", help="JSON file with config fields (as for train)")
    add_set_option(p, "override one config field (repeatable)")
    p.add_argument(
        "--phase",
        type=int,
        choices=(1, 2),
        default=1,
        help="1: the head on the frozen backbone (default); 2: fine-tuning at "
        "phase2.unfreeze_blocks, after phase 1's epochs train the head",
    )
    p.add_argument("--arm", choices=ARMS, help="the arm to test (default: the config's first)")
    p.add_argument("--low", type=float, default=1e-7, help="the first rate (default 1e-7)")
    p.add_argument("--high", type=float, default=10.0, help="the last rate (default 10)")
    p.add_argument("--steps", type=int, default=100, help="steps of the pass (default 100)")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.add_argument("--out", help="also write progress and the result as JSON to this file")
    p.set_defaults(func=run)


def run(args) -> int:
    from pipelines.runs.lr_jobs import write_json
    from pipelines.training.lr_find import find_lr

    out = Path(args.out) if args.out else None
    try:
        config = ExperimentConfig.from_json_file(args.config) if args.config else ExperimentConfig()
        config = config.with_overrides(args.set or [])
        arm = args.arm or config.arms[0]
        flag = threading.Event()
        with _stop_on_signals(flag):
            result = find_lr(
                config,
                phase=args.phase,
                arm=arm,
                low=args.low,
                high=args.high,
                steps=args.steps,
                should_stop=flag.is_set,
                progress=(lambda partial: write_json(out, partial)) if out else None,
                log=lambda message: print(
                    f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr
                ),
            )
    except Exception as e:
        if out is not None:
            message = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
            write_json(out, {"phase": args.phase, "ended": "failed", "error": message})
        raise
    if out is not None:
        write_json(out, result)
    if args.json:
        print(json.dumps(result))
    else:
        _print(result)
    return 0


def _print(result: dict) -> None:
    print(
        f"phase {result['phase']}, {result['arm']} arm: {result['steps']} steps from "
        f"{result['low']:g} to {result['high']:g}, {result['ended']} ({result['wall_s']:.1f}s)"
    )
    if result["suggested_lr"] is None:
        print("no suggestion: too few steps (or stopped); widen the range or add --steps")
    else:
        print(f"suggested learning rate: {result['suggested_lr']:.2g} ({result['rule_text']})")
    print(f"head: {result['head']}")
    for lr, loss, smooth in list(
        zip(result["lrs"], result["losses"], result["smoothed"], strict=True)
    )[:: max(1, result["steps"] // 12)]:
        print(f"  lr {lr:9.2e}  loss {loss:8.4f}  smoothed {smooth:8.4f}")


@contextmanager
def _stop_on_signals(flag: threading.Event):
    """SIGTERM/SIGINT set ``flag`` (the finder stops before its next step); a second one
    stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
