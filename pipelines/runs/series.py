"""A series: a small grid of ordinary runs queued together, tagged with one sweep id.

Until sweeps exist, the "Near or far" lesson is a series: one run per data set x cut point
(``reuse_blocks``), both arms in each run. Each run is an ordinary run in the store, tagged
``sweep_id`` (the series) and ``trial`` (its position, from 0), so a later sweep's trials and
these runs read the same way (:meth:`pipelines.runs.store.RunStore.runs_in_sweep`).

Contract:

* :func:`near_far_configs` builds the grid from a base config, data-set major (every cut on
  the first data set, then the next), and refuses - before any run exists - an empty list,
  an unknown data set (not a named one, not a folder or zip here), a cut outside the
  backbone's blocks, or a config :func:`pipelines.training.preflight.check_experiment`
  refuses: :class:`UserError`, one message.
* :func:`start_series` queues each config through :meth:`JobManager.start` (a worker per
  run; they take their turn like any run) and returns ``(sweep_id, run_ids)``.
* :func:`depth_table` reads the runs' summaries (no store, no TensorFlow): one row per run
  and arm, ``reuse_blocks`` as a number (null, the whole backbone, as its block count).
  A run still going has no summary: its ``best`` values come from ``best`` when given
  (``{metric: {run_id: {arm: value}}}``, the store's best epoch so far), else None.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pipelines.errors import UserError
from pipelines.training.config import ARMS, ExperimentConfig

if TYPE_CHECKING:
    from pipelines.runs.jobs import JobManager
    from pipelines.runs.run import Run

NEAR_FAR_NAME = "near-far"
NEAR_FAR_DATASETS = ("horses_or_humans", "chest_xray_pneumonia")
NEAR_FAR_CUTS = (3, 6, 9, 12, 15, 18)  # EfficientNet-Lite0's 18 blocks, every third
# The lesson's conditions: feature extraction only (phase2 off), so each point measures
# how transferable the features at block K are, not how well fine-tuning repairs them.
NEAR_FAR_DEFAULTS = (
    "backbone=efficientnet_lite0",
    "image_size=160",
    "train_per_class=100",
    "phase1.epochs=5",
    "phase2.epochs=0",
    "arms=imagenet,random",
)
METRICS = ("best_val_accuracy", "best_val_balanced_accuracy")
ROW_KEYS = (
    "dataset",
    "arm",
    "reuse_blocks",
    "best_val_accuracy",
    "best_val_balanced_accuracy",
    "chance_accuracy",
    "run_id",
    "status",
)


def near_far_base(overrides: Iterable[str] = ()) -> ExperimentConfig:
    """The lesson's base config (:data:`NEAR_FAR_DEFAULTS`) with ``key=value`` overrides."""
    return ExperimentConfig().with_overrides([*NEAR_FAR_DEFAULTS, *overrides])


def near_far_configs(
    base: ExperimentConfig, datasets: Sequence[str], cuts: Sequence[int]
) -> list[ExperimentConfig]:
    """One validated config per data set x cut (data-set major), else :class:`UserError`."""
    from pipelines.data.sources import known_here, names_text
    from pipelines.training.preflight import check_experiment

    datasets = list(dict.fromkeys(str(d).strip() for d in datasets if str(d).strip()))
    cuts = sorted(set(cuts))
    if not datasets:
        raise UserError(f"datasets: give at least one data set, e.g. {names_text()}")
    if not cuts:
        raise UserError("cuts: give at least one cut point (blocks to take over), e.g. 3,6,9")
    for name in datasets:
        if not known_here(name):
            raise UserError(
                f"datasets: unknown data set {name!r}; name one of {names_text()}, "
                "or a folder or .zip of images"
            )
    configs = []
    for name in datasets:
        for cut in cuts:
            config = ExperimentConfig.from_dict(base.to_dict())
            config.dataset, config.reuse_blocks = name, int(cut)
            configs.append(check_experiment(config))
    return configs


def new_sweep_id(name: str) -> str:
    """``<name>-YYYYMMDD-HHMMSS-xxxx``: the name, when, and 4 random hex digits."""
    slug = "".join(c if c.isalnum() else "-" for c in name.strip().lower()).strip("-")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime())
    return f"{slug or 'series'}-{stamp}-{secrets.token_hex(2)}"


def start_series(
    jobs: JobManager, configs: Sequence[ExperimentConfig], name: str = NEAR_FAR_NAME
) -> tuple[str, list[str]]:
    """Queue every config as a run tagged with a new sweep id and its trial number."""
    if not configs:
        raise UserError("a series needs at least one config")
    sweep_id = new_sweep_id(name)
    run_ids = [
        jobs.start(config, sweep_id=sweep_id, trial=trial) for trial, config in enumerate(configs)
    ]
    return sweep_id, run_ids


@lru_cache(maxsize=16)
def block_count(backbone: str) -> int | None:
    """The backbone's block count (built-ins; read from the weights file), else None."""
    from pipelines.backbones import block_widths

    try:
        widths = block_widths(backbone)
    except UserError:
        return None
    return None if widths is None else len(widths)


def depth_table(
    runs: Iterable[Run], best: dict[str, dict[str, dict[str, float]]] | None = None
) -> list[dict[str, Any]]:
    """Rows ``{dataset, arm, reuse_blocks, best_val_accuracy, best_val_balanced_accuracy,
    chance_accuracy, run_id, status}``, one per run and arm, ordered by data set (first
    seen), arm (imagenet, random) and cut. ``best``: see the module docstring."""
    rows = []
    order: dict[str, int] = {}
    for run in runs:
        config = run.config_dict
        dataset = str(config.get("dataset", ""))
        order.setdefault(dataset, len(order))
        summary = run.summary or {}
        arms_done = summary.get("arms") or {}
        cut = config.get("reuse_blocks")
        if cut is None:
            cut = block_count(str(config.get("backbone", "")))
        for arm in [a for a in ARMS if a in (config.get("arms") or []) or a in arms_done]:
            done = arms_done.get(arm) or {}
            row = {
                "dataset": dataset,
                "arm": arm,
                "reuse_blocks": cut,
                "chance_accuracy": summary.get("chance_accuracy"),
                "run_id": run.run_id,
                "status": run.status,
            }
            for metric in METRICS:
                value = done.get(metric)
                if value is None and best is not None:
                    value = best.get(metric.removeprefix("best_"), {}).get(run.run_id, {}).get(arm)
                row[metric] = value
            rows.append({k: row[k] for k in ROW_KEYS})
    rows.sort(
        key=lambda r: (
            order[r["dataset"]],
            ARMS.index(r["arm"]),
            r["reuse_blocks"] is None,
            r["reuse_blocks"] or 0,
        )
    )
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as an aligned text table (the CLI's output)."""
    header = ("dataset", "arm", "blocks", "best acc", "best bal. acc", "chance", "status", "run")
    lines = [
        (
            r["dataset"],
            r["arm"],
            "all" if r["reuse_blocks"] is None else str(r["reuse_blocks"]),
            _pct(r["best_val_accuracy"]),
            _pct(r["best_val_balanced_accuracy"]),
            _pct(r["chance_accuracy"]),
            r["status"],
            r["run_id"],
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=False)]
    right = {2, 3, 4, 5}
    out = []
    for line in (header, *lines):
        cells = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"
