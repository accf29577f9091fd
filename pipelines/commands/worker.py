"""``python -m pipelines worker RUN_ID`` / ``python -m pipelines worker --pool``.

``RUN_ID``: run one stored experiment in this process; what
:class:`pipelines.runs.jobs.JobManager` spawns for each run without a pool. The exit status is
0 completed, 1 failed, 2 refused input, 3 stopped (see :mod:`pipelines.runs.worker`).

``--pool``: be a warm pool worker (:mod:`pipelines.runs.pool`): take queued runs one after
another until recycled; what the job manager spawns when ``WARM_WORKERS`` is above 0.
Rarely typed by hand.
"""

from __future__ import annotations

import argparse

from pipelines.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "worker",
        help="run a queued experiment from the run store (what the dashboard starts)",
        description=(
            "Run one stored experiment in this process: wait for a free slot, train, record "
            "the outcome. Exit status 0 completed, 1 failed, 2 refused input, 3 stopped. "
            "With --pool, stay alive and take queued runs one after another."
        ),
    )
    p.add_argument("run_id", metavar="RUN_ID", nargs="?")
    p.add_argument(
        "--pool", action="store_true", help="be a warm pool worker (no RUN_ID): see WARM_WORKERS"
    )
    # Training imports TensorFlow itself; a worker that only waits in the queue need not.
    p.set_defaults(func=run, needs_tensorflow=False)


def run(args: argparse.Namespace) -> int:
    if args.pool == (args.run_id is not None):
        raise UserError("give either RUN_ID or --pool")
    if args.pool:
        from pipelines.runs.pool import serve

        return serve()
    from pipelines.runs.worker import run_worker

    return run_worker(args.run_id, echo=True)
