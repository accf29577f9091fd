"""``python -m pipelines data``: what a data set holds, what was skipped and why."""

from __future__ import annotations

import argparse
import json

from pipelines.data import DEFAULT_DATASET, inspect_dataset
from pipelines.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "data",
        help="report a data set's classes, counts, skipped files and image sizes",
        description=(
            "Report a data set: classes, per-split per-class counts, skipped files with "
            "reasons, and image sizes. Exits 2 if it cannot be trained on."
        ),
    )
    p.add_argument(
        "--dataset",
        default=DEFAULT_DATASET,
        metavar="NAME|PATH|ZIP",
        help=(
            f"{DEFAULT_DATASET} (default; from DATASETS_DIR, else TensorFlow Datasets), "
            "chest_xray_pneumonia (far from ImageNet; from DATASETS_DIR only), a "
            "folder with one sub-folder per class (optionally inside train/ and validation/), "
            "a .zip of one, or a TFDS image-classification name"
        ),
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run, needs_tensorflow=False)


def run(args: argparse.Namespace) -> int:
    report = inspect_dataset(args.dataset)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    if report["problems"]:
        raise UserError("this data set cannot be trained on: " + "; ".join(report["problems"]))
    return 0


def format_report(report: dict) -> str:
    """The human-readable form of :func:`pipelines.data.inspect_dataset`'s report."""
    classes = report["classes"]
    train, val = report["splits"]["train"], report["splits"]["validation"]
    lines = [
        f"Data set: {report['dataset']}",
        f"Source:   {report['source']}",
        f"Layout:   {report['layout']}",
        f"Classes:  {len(classes)} (labels 0..{len(classes) - 1} in this order)",
        "",
    ]
    width = max([len("class"), len("total")] + [len(c) for c in classes])
    lines.append(f"  {'class':<{width}}  {'train':>7}  {'validation':>10}")
    for c in classes:
        lines.append(f"  {c:<{width}}  {train[c]:>7}  {val[c]:>10}")
    lines.append(f"  {'total':<{width}}  {sum(train.values()):>7}  {sum(val.values()):>10}")
    for name, task in report.get("tasks", {}).items():  # several tasks: rows above are
        counts = ", ".join(f"{c} {n}" for c, n in task["splits"]["train"].items())
        lines.append(f"Task:     {name}: train {counts}")  # combinations of their labels
    lines += ["", _sizes_line(report["image_sizes"])]
    skipped = report["skipped"]
    lines.append(f"Skipped:  {len(skipped) or 'nothing'}")
    lines += [f"  {s['path']}: {s['reason']}" for s in skipped]
    lines += [f"Note:     {n}" for n in report["notes"]]
    return "\n".join(lines)


def _sizes_line(stats: dict) -> str:
    if not stats["count"]:
        return "Images:   none usable"
    w, h = stats["width"], stats["height"]
    kinds = ", ".join(f"{n} {m}" for m, n in stats["modes"].items())
    formats = ", ".join(f"{n} {f}" for f, n in stats["formats"].items())
    common = ", ".join(f"{c['size']} ({c['count']})" for c in stats["most_common"])
    if w["min"] == w["max"] and h["min"] == h["max"]:
        dims = f"all {w['min']}x{h['min']}"
    else:
        dims = (
            f"width {w['min']}-{w['max']} (mean {w['mean']}), height {h['min']}-{h['max']} "
            f"(mean {h['mean']}); most common {common}"
        )
    return f"Images:   {stats['count']} usable, {dims}; {formats}; modes {kinds}"
