"""The Runs page's data, without Streamlit: one table row per run, curves to overlay."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd

from pipelines.runs.run import Run

COLUMNS = [
    "run",
    "status",
    "created",
    "dataset",
    "backbone",
    "image_size",
    "train_per_class",
    "epochs",
    "phase1.lr",
    "phase2.lr",
    "reuse_blocks",
    "phase2.unfreeze_blocks",
    "batch_size",
    "best_imagenet",
    "best_random",
    "best_imagenet_balanced",
    "best_random_balanced",
    "wall_s",
]


def _dataset_name(dataset: str) -> str:
    """A folder path as its last part (an upload as ``upload …<hash>``)."""
    text = str(dataset)
    if "/" not in text and "\\" not in text:
        return text
    parts = Path(text).parts
    if "uploads" in parts:
        digest = (
            parts[parts.index("uploads") + 1] if parts.index("uploads") + 1 < len(parts) else ""
        )
        return f"upload {digest[:8]}"
    return Path(text).name or text


def history_frame(
    runs: Sequence[Run],
    best: Mapping[str, Mapping[str, float]],
    balanced: Mapping[str, Mapping[str, float]] | None = None,
) -> pd.DataFrame:
    """One row per run (newest first, as given) with its status, key hyperparameters, each
    arm's best validation accuracy (``best``) and best balanced validation accuracy
    (``balanced``; empty for runs from before it was measured) and the wall time; columns
    :data:`COLUMNS`. A run whose stored config no longer parses has its hyperparameter
    columns empty."""
    rows = []
    for run in runs:
        c = run.config
        summary = run.summary or {}
        scores = best.get(run.run_id, {})
        fair = (balanced or {}).get(run.run_id, {})
        row = {
            "run": run.run_id,
            "status": run.status,
            "created": datetime.fromtimestamp(run.created),
            "best_imagenet": scores.get("imagenet"),
            "best_random": scores.get("random"),
            "best_imagenet_balanced": fair.get("imagenet"),
            "best_random_balanced": fair.get("random"),
            "wall_s": summary.get("wall_s"),
        }
        if c is not None:
            row |= {
                "dataset": _dataset_name(c.dataset),
                "backbone": c.backbone,
                "image_size": c.image_size or summary.get("image_size"),
                "train_per_class": c.train_per_class,
                "epochs": f"{c.phase1.epochs} + {c.phase2.epochs}",
                "phase1.lr": c.phase1.lr,
                "phase2.lr": c.phase2.lr,
                "reuse_blocks": c.reuse_blocks,
                "phase2.unfreeze_blocks": c.phase2.unfreeze_blocks,
                "batch_size": c.batch_size,
            }
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    integers = ("image_size", "train_per_class", "batch_size", "reuse_blocks")
    for column in (*integers, "phase2.unfreeze_blocks"):
        frame[column] = frame[column].astype("Int64")
    return frame


def overlay_curves(store, run_ids: Sequence[str]) -> dict[str, pd.DataFrame]:
    """``{run_id: epoch rows}`` for the runs to overlay, in the order given."""
    return {run_id: store.curves(run_id, kind="epoch") for run_id in run_ids}
