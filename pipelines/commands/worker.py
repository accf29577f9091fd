"""``python -m pipelines worker RUN_ID``: run one stored experiment in this process.

What :class:`pipelines.runs.jobs.JobManager` spawns for each run; rarely typed by hand. The exit
status is 0 completed, 1 failed, 2 refused input, 3 stopped (see :mod:`pipelines.runs.worker`).
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "worker",
        help="run a queued experiment from the run store (what the dashboard starts)",
        description=(
            "Run one stored experiment in this process: wait for a free slot, train, record "
            "the outcome. Exit status 0 completed, 1 failed, 2 refused input, 3 stopped."
        ),
    )
    p.add_argument("run_id", metavar="RUN_ID")
    # Training imports TensorFlow itself; a worker that only waits in the queue need not.
    p.set_defaults(func=run, needs_tensorflow=False)


def run(args: argparse.Namespace) -> int:
    from pipelines.runs.worker import run_worker

    return run_worker(args.run_id, echo=True)
