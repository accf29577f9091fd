"""Pixel scalings that backbones expect, by the names the catalogue uses.

Images travel through the engine as ``uint8`` RGB; each backbone's catalogue entry names
the scaling that turns them into its float input. Works on NumPy arrays and tf tensors.
"""

from __future__ import annotations

SCALINGS = {
    "minus1_1": "(x - 127.5) / 127.5, i.e. [-1, 1] (EfficientNet-Lite, Keras MobileNet)",
    "0_1": "x / 255, i.e. [0, 1] (the TF Hub image convention)",
    "imagenet_mean_std": "(x / 255 - mean) / std with the ImageNet RGB mean and std",
    "raw_0_255": "x unchanged as float, [0, 255] (models that scale inside)",
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_scaling(name: str) -> str:
    """Return ``name`` if it is a known scaling, else raise ``ValueError`` listing them."""
    if name not in SCALINGS:
        raise ValueError(f"unknown pixel scaling {name!r}; use one of {', '.join(SCALINGS)}")
    return name


def scale_pixels(images, scaling: str):
    """Map uint8 (or float in [0, 255]) RGB ``images`` to float32 as ``scaling`` says."""
    check_scaling(scaling)
    if hasattr(images, "dtype") and type(images).__module__.startswith("tensorflow"):
        import tensorflow as tf

        x = tf.cast(images, tf.float32)
    else:
        import numpy as np

        x = np.asarray(images, dtype=np.float32)
    if scaling == "minus1_1":
        return (x - 127.5) / 127.5
    if scaling == "0_1":
        return x / 255.0
    if scaling == "imagenet_mean_std":
        return (x / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return x * 1.0
