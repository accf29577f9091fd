"""``python -m pipelines classify --backbone ID IMAGE... [--json]``: ImageNet top-5.

"What does the pretrained network see?" - the backbone's own ImageNet classifier on any
image, before any transfer learning.
"""

from __future__ import annotations

import json

import numpy as np

from pipelines.backbones import imagenet, resolve
from pipelines.data.images import read_image_file


def classify_files(backbone: str, paths: list[str], top: int = 5) -> list[dict]:
    """``[{"image": path, "top5": [{class_index, label, probability}, ...]}]`` per file."""
    size = resolve(backbone).input_size
    batch = np.stack([read_image_file(p, size) for p in paths])
    return [
        {"image": str(p), "top5": row}
        for p, row in zip(paths, imagenet.top_k(backbone, batch, top), strict=True)
    ]


def run(args) -> int:
    results = classify_files(args.backbone, args.images, top=args.top)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for r in results:
        print(r["image"])
        for t in r["top5"]:
            print(f"  {t['probability']:6.1%}  {t['class_index']:4d}  {t['label']}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("classify", help="ImageNet top-5 of a backbone on images")
    p.add_argument("--backbone", default="efficientnet_lite0", help="catalogue id or handle")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top", type=int, default=5, help="how many classes per image")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=run)
