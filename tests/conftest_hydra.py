"""HydraNet fixtures: a two-task data set where each task is decided by its own, known image
feature - ``light``: whether the image is dark or bright overall; ``colour``: whether the
red or the blue channel dominates. Some images carry only one of the two labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def two_task_image(light: int, colour: int, index: int, size: int = 32) -> Image.Image:
    rng = np.random.default_rng([light, colour, index])
    yy, xx = np.mgrid[0:size, 0:size]
    texture = 0.85 + 0.15 * (((yy + xx + index) // 3) % 2)  # the same for every class
    tint = np.array([1.0, 0.35, 0.2]) if colour == 0 else np.array([0.2, 0.35, 1.0])
    level = 90.0 if light == 0 else 240.0
    pixels = level * texture[..., None] * tint + rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def make_two_task_folder(root: Path, *, train: int = 24, validation: int = 8) -> Path:
    """``root/{train,validation}/imgN.png`` plus ``labels.csv`` (tasks ``light``, ``colour``);
    images 4, 9, 14, ... (``i % 5 == 4``) lack their ``colour`` label, images 6, 13, 20
    (``i % 7 == 6``) their ``light`` label: never both below 34 images a split, and every
    combination of labels occurs."""
    rows = ["path,light,colour"]
    for split, n in (("train", train), ("validation", validation)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            light, colour = i % 2, (i // 2) % 2
            two_task_image(light, colour, i + (1000 if split == "validation" else 0)).save(
                root / split / f"img{i:03d}.png"
            )
            s = "" if i % 7 == 6 else ("dark", "bright")[light]
            c = "" if i % 5 == 4 else ("red", "blue")[colour]
            rows.append(f"{split}/img{i:03d}.png,{s},{c}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root
