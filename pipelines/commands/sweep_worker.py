"""``python -m pipelines sweep-worker --sweep ID [--storage URL]``: join a sweep.

Takes the sweep's waiting trials one after another in this process until none is left
(:mod:`pipelines.sweeps.worker`); each trial's run goes to this machine's run store
(``RUNS_DIR``). On another machine, give the shared storage's URL (``--storage`` or
``SWEEP_STORAGE``, e.g. ``postgresql://user:password@host/db``). SIGTERM or Ctrl-C stops the
trial in progress and leaves; its trial waits for another worker.
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "sweep-worker",
        help="take a sweep's trials one after another (also on another machine)",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("--sweep", required=True, metavar="ID", help="the sweep id")
    p.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage URL (default: SWEEP_STORAGE, else embedded)",
    )
    p.set_defaults(func=run, needs_tensorflow=False)


def run(args) -> int:
    from pipelines.sweeps.worker import work

    work(args.sweep, args.storage)
    return 0
