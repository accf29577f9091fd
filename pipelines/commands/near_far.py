"""``python -m pipelines near-far [--set k=v ...] [--cuts 3,6,...] [--datasets A,B] [--json]``.

The "Near or far: how many layers to take over" series in the foreground: one run per data
set x cut (``reuse_blocks``), both arms, one run after another in this process (each run's
worker, as ``train`` is), then the table of best validation accuracy per data set, arm and
cut (:func:`pipelines.runs.series.depth_table`); with ``--json`` stdout gets exactly that
list. The lesson's defaults are :data:`pipelines.runs.series.NEAR_FAR_DEFAULTS`; ``--set``
changes them.

Every config is checked before the first run exists (an unknown data set, a cut outside the
backbone's blocks, an empty list: ``error: ...``, exit 2). All runs are created at once,
tagged with one sweep id, and claimed by this process, so killing it leaves them
``interrupted``; Ctrl-C stops the run in progress and marks the rest ``stopped``.
"""

from __future__ import annotations

import json
import os
import sys

from pipelines.commands import add_set_option
from pipelines.errors import UserError
from pipelines.runs.series import NEAR_FAR_CUTS, NEAR_FAR_DATASETS, NEAR_FAR_NAME


def _cuts(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise UserError(
            f"--cuts: give whole numbers of blocks separated by commas (e.g. 3,6,9), not {text!r}"
        ) from None


def run(args) -> int:
    from pipelines.commands.train import _Reporting
    from pipelines.runs import lifecycle
    from pipelines.runs.series import (
        depth_table,
        format_table,
        near_far_base,
        near_far_configs,
        new_sweep_id,
    )
    from pipelines.runs.store import RunStore
    from pipelines.runs.worker import EXIT_COMPLETED, run_worker

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    configs = near_far_configs(near_far_base(args.set or []), datasets, _cuts(args.cuts))
    store = RunStore()
    sweep_id = new_sweep_id(NEAR_FAR_NAME)
    run_ids = [
        store.create_run(config, sweep_id=sweep_id, trial=trial)
        for trial, config in enumerate(configs)
    ]
    for run_id in run_ids:  # this process works on all of them: a kill leaves none queued
        lifecycle.claim_worker(store, run_id, os.getpid())
    print(f"series {sweep_id}: {len(run_ids)} runs", file=sys.stderr)
    worst = EXIT_COMPLETED
    for trial, (run_id, config) in enumerate(zip(run_ids, configs, strict=True)):
        print(
            f"run {trial + 1}/{len(run_ids)} {run_id}: {config.dataset}, "
            f"reuse_blocks={config.reuse_blocks}",
            file=sys.stderr,
        )
        try:
            code = run_worker(run_id, _Reporting(store, config.arms))
        except KeyboardInterrupt:
            _stop_rest(store, run_ids[trial + 1 :])
            raise
        run = store.get_run(run_id)
        if run.status == "failed":
            print(f"run {run_id} failed: {run.error}", file=sys.stderr)
        if code != EXIT_COMPLETED:
            worst = code
        if run.status == "stopped":
            _stop_rest(store, run_ids[trial + 1 :])
            break
    rows = depth_table(store.runs_in_sweep(sweep_id))
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"series {sweep_id}")
        print(format_table(rows))
    return 0 if worst == EXIT_COMPLETED else worst


def _stop_rest(store, run_ids: list[str]) -> None:
    from pipelines.runs import lifecycle

    for run_id in run_ids:
        lifecycle.finish(store, run_id, "stopped", "the series was stopped")


def register(sub) -> None:
    p = sub.add_parser(
        "near-far",
        help="the near-or-far series: accuracy against the blocks taken over",
        description=__doc__.split("\n\n")[1],
    )
    add_set_option(p, "override one field of the lesson's config, e.g. --set phase1.epochs=3")
    p.add_argument(
        "--cuts",
        default=",".join(map(str, NEAR_FAR_CUTS)),
        help="blocks to take over, comma-separated (default %(default)s)",
    )
    p.add_argument(
        "--datasets",
        default=",".join(NEAR_FAR_DATASETS),
        help="data sets, comma-separated (default %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print the table as one JSON list")
    p.set_defaults(func=run)
