"""``python -m pipelines explain RUN --arm imagenet|random IMAGE... --out DIR [--json]``.

Where a finished run's arm looks in each image: Grad-CAM on the last kept block (built-in
backbones) or SmoothGrad on the input (any other), see :mod:`pipelines.insight.attention`.
Writes per image ``DIR/<name>.<arm>.png`` (the image and the map over it, side by side)
and ``DIR/<name>.<arm>.npy`` (the raw map, float32 in [0, 1] at the run's image size).
Every image is read before the model loads, so a missing or unreadable one fails fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def run(args) -> int:
    from pipelines.data.images import read_image_file
    from pipelines.insight.arm_model import arm_folder, load_arm
    from pipelines.insight.attention import METHOD_TITLES, explain, write_files
    from pipelines.runs.store import RunStore

    store = RunStore()
    folder = arm_folder(store, args.run_id, args.arm)  # unknown or unfinished: refused here
    size = int(json.loads((folder / "arm.json").read_text())["image_size"])
    images = np.stack([read_image_file(p, size) for p in args.images])
    model = load_arm(folder)
    target = _target(args.target, model.classes)
    explanations = explain(model, images, method=args.method, target=target)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stems = _stems(args.images)
    rows = []
    for path, stem, image, e in zip(args.images, stems, images, explanations, strict=True):
        png, npy = write_files(out, stem, image, e)
        files = {"image": str(path), "png": str(png), "npy": str(npy)}
        rows.append(files | e.to_dict(model.classes))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        print(
            f"{r['image']}: {args.arm} arm predicts {r['predicted_class']} "
            f"({r['probabilities'][r['predicted']]:.0%}); {METHOD_TITLES[r['method']]} of "
            f"{r['target_class']} on {r['layer']} ({r['grid']}x{r['grid']}) -> {r['png']}"
        )
    return 0


def _target(name: str | None, classes: list[str]) -> int | None:
    from pipelines.errors import UserError

    if name is None:
        return None
    if name not in classes:
        raise UserError(f"--class {name!r} is not one of the run's classes: {', '.join(classes)}")
    return classes.index(name)


def _stems(paths: list[str]) -> list[str]:
    """File stems, made unique (``a``, ``a-2``) where two images share a name."""
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        stem = Path(p).stem or "image"
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return out


def register(sub) -> None:
    p = sub.add_parser("explain", help="heat maps of where a finished run's arm looks")
    p.add_argument("run_id", metavar="RUN")
    p.add_argument("--arm", choices=["imagenet", "random"], default="imagenet")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs and .npy maps")
    p.add_argument(
        "--method",
        choices=["grad-cam", "smoothgrad"],
        default=None,
        help="default: Grad-CAM for built-in backbones, SmoothGrad for any other",
    )
    p.add_argument(
        "--class", dest="target", metavar="NAME", help="explain this class (default: predicted)"
    )
    p.add_argument("--json", action="store_true", help="print a JSON list, one row per image")
    p.set_defaults(func=run)
