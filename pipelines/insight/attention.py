"""Where an arm looks: a heat map per image from a finished run's trained weights.

Two methods, the one used named in every result:

* **Grad-CAM** (Selvaraju et al., 2017) on the last kept block, for backbones whose blocks
  are reachable (the built-ins, :class:`pipelines.backbones.keras_backbone.KerasBackbone`):
  the block's feature maps weighted by the class score's mean gradient per channel,
  summed, ReLU. With the head on globally pooled features this is the class activation
  map. Its grid is the block's (7 x 7 at 224 px for the whole backbone, finer at a cut).
* **SmoothGrad** (Smilkov et al., 2017) for any other backbone (a TF Hub SavedModel's
  graph can't be opened at a block): the gradient of the class score with respect to the
  input pixels, averaged over :data:`SMOOTHGRAD_SAMPLES` noisy copies
  (σ = :data:`SMOOTHGRAD_NOISE` of the pixel range, seeded), absolute values summed over
  the colour channels, clipped at the 99th percentile.

Maps are ``float32`` ``[size, size]`` in [0, 1] at the model's input size (1 = the most
attended pixel). The class explained is the arm's prediction unless a ``target`` is given.
:func:`overlay` draws a map over its image (for the CLI's PNGs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipelines.errors import UserError
from pipelines.insight.arm_model import ArmModel, arm_folder, load_arm

METHODS = ("grad-cam", "smoothgrad")
METHOD_TITLES = {"grad-cam": "Grad-CAM", "smoothgrad": "SmoothGrad"}
SMOOTHGRAD_SAMPLES = 16
SMOOTHGRAD_NOISE = 0.15
SMOOTHGRAD_CLIP_PERCENTILE = 99.0


@dataclass
class Explanation:
    """One image's heat map from one arm."""

    arm: str
    method: str  # one of METHODS
    layer: str  # what the map is computed on: a block's name, or "input pixels"
    map: np.ndarray  # float32 [size, size] in [0, 1]
    grid: int  # cells per side of the map before upsampling (the input size for SmoothGrad)
    target: int  # the class explained
    predicted: int
    probabilities: list[float]

    def to_dict(self, classes: list[str]) -> dict:
        """JSON-ready, without the map itself: names of the classes included."""
        out = {k: v for k, v in asdict(self).items() if k != "map"}
        out.update(
            method_title=METHOD_TITLES[self.method],
            target_class=classes[self.target],
            predicted_class=classes[self.predicted],
        )
        return out


def default_method(model: ArmModel) -> str:
    """Grad-CAM where the backbone's blocks are reachable, else SmoothGrad."""
    return "grad-cam" if getattr(model.backbone, "can_split", False) else "smoothgrad"


def explain_run(
    store,
    run_id: str,
    arm: str,
    images: np.ndarray,
    *,
    method: str | None = None,
    target: int | None = None,
) -> list[Explanation]:
    """:func:`explain` with the finished run's ``arm`` (see :func:`arm_folder` for what is
    refused); ``images`` uint8 ``[n, size, size, 3]`` at the run's image size."""
    return explain(load_arm(arm_folder(store, run_id, arm)), images, method=method, target=target)


def explain(
    model: ArmModel,
    images: np.ndarray,
    *,
    method: str | None = None,
    target: int | None = None,
    seed: int = 0,
) -> list[Explanation]:
    """One :class:`Explanation` per image (uint8 RGB ``[n, size, size, 3]`` at
    ``model.image_size``). ``method``: None for :func:`default_method`; Grad-CAM needs a
    backbone with reachable blocks. ``target``: a class index, None for each image's
    predicted class."""
    method = method or default_method(model)
    if method not in METHODS:
        raise UserError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if method == "grad-cam" and not getattr(model.backbone, "can_split", False):
        raise UserError(
            "Grad-CAM needs a backbone whose blocks can be reached (the built-ins); this "
            "one is a TF Hub SavedModel: use smoothgrad"
        )
    classes = model.classes
    if target is not None and not 0 <= target < len(classes):
        raise UserError(f"target class {target} is not one of the {len(classes)} classes")
    images = np.asarray(images)
    size = model.image_size
    if images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise UserError(f"images must be [n, {size}, {size}, 3] RGB, not {list(images.shape)}")
    if method == "grad-cam":
        return [_grad_cam(model, image, target) for image in images]
    return [_smoothgrad(model, image, target, seed) for image in images]


def _scaled(model: ArmModel, x):
    from pipelines.backbones.pixels import scale_pixels

    return scale_pixels(x, model.scaling)


def _conv_model(model: ArmModel):
    """The kept blocks without pooling: the last block's feature maps (built once)."""
    if "conv" not in model._parts:
        from pipelines.backbones import efficientnet_lite as lite

        model._parts["conv"] = lite.chain(model.backbone.block_models, pool=False, name="conv")
    return model._parts["conv"]


def _grad_cam(model: ArmModel, image: np.ndarray, target: int | None) -> Explanation:
    import tensorflow as tf

    conv = _conv_model(model)
    x = _scaled(model, tf.constant(image[None], tf.float32))
    with tf.GradientTape() as tape:
        maps = conv(x, training=False)
        tape.watch(maps)
        logits = model.head(tf.reduce_mean(maps, axis=(1, 2)), training=False)
        probs = tf.nn.softmax(logits)[0].numpy()
        predicted = int(np.argmax(probs))
        chosen = predicted if target is None else target
        score = logits[0, chosen]
    grads = tape.gradient(score, maps)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))[0]
    grid = int(cam.shape[0])
    size = model.image_size
    heat = tf.image.resize(cam[..., None], (size, size), method="bilinear")[..., 0].numpy()
    return Explanation(
        model.arm,
        "grad-cam",
        model.backbone.block_models[-1].name,
        _unit(heat),
        grid,
        chosen,
        predicted,
        [float(p) for p in probs],
    )


def _smoothgrad(model: ArmModel, image: np.ndarray, target: int | None, seed: int) -> Explanation:
    import tensorflow as tf

    clean = tf.constant(image[None], tf.float32)
    probs = tf.nn.softmax(model.head(model.backbone(_scaled(model, clean)), training=False))
    probs = probs[0].numpy()
    predicted = int(np.argmax(probs))
    chosen = predicted if target is None else target
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, SMOOTHGRAD_NOISE * 255.0, (SMOOTHGRAD_SAMPLES, *image.shape))
    noisy = tf.constant(image[None].astype(np.float32) + noise.astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(noisy)
        logits = model.head(model.backbone(_scaled(model, noisy)), training=False)
        score = tf.reduce_sum(logits[:, chosen])
    grads = tape.gradient(score, noisy).numpy().mean(axis=0)
    heat = np.abs(grads).sum(axis=-1)
    top = np.percentile(heat, SMOOTHGRAD_CLIP_PERCENTILE)
    if top > 0:
        heat = np.minimum(heat, top)
    return Explanation(
        model.arm,
        "smoothgrad",
        "input pixels",
        _unit(heat),
        int(image.shape[0]),
        chosen,
        predicted,
        [float(p) for p in probs],
    )


def _unit(heat: np.ndarray) -> np.ndarray:
    """``heat`` scaled to [0, 1] by its maximum (all zeros stay zeros)."""
    heat = np.maximum(np.asarray(heat, np.float32), 0.0)
    top = float(heat.max()) if heat.size else 0.0
    return heat / top if top > 0 else heat


def mass_inside(heat: np.ndarray, region: np.ndarray) -> float:
    """The share of the map's total in ``region`` (a boolean mask of its shape); 0 for an
    empty map."""
    total = float(heat.sum())
    return float(heat[region].sum()) / total if total > 0 else 0.0


# --- drawing -------------------------------------------------------------------------------

# "Turbo"-like anchors (Mikhailov, 2019), blue (0) to red (1), interpolated linearly.
_ANCHORS = np.array(
    [
        [48, 18, 59],
        [70, 107, 227],
        [40, 188, 235],
        [50, 241, 151],
        [164, 252, 60],
        [237, 208, 58],
        [251, 128, 34],
        [210, 48, 5],
        [122, 4, 3],
    ],
    np.float32,
)


def colorize(heat: np.ndarray) -> np.ndarray:
    """A [0, 1] map as uint8 RGB (dark blue → red)."""
    pos = np.clip(heat, 0.0, 1.0) * (len(_ANCHORS) - 1)
    low = np.floor(pos).astype(int)
    high = np.minimum(low + 1, len(_ANCHORS) - 1)
    frac = (pos - low)[..., None]
    return (_ANCHORS[low] * (1 - frac) + _ANCHORS[high] * frac).astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``heat`` (colour-mapped) over uint8 RGB ``image``; stronger where the map is high."""
    weight = alpha * (0.35 + 0.65 * np.clip(heat, 0.0, 1.0))[..., None]
    mixed = image.astype(np.float32) * (1 - weight) + colorize(heat).astype(np.float32) * weight
    return np.clip(mixed, 0, 255).astype(np.uint8)


# --- files (the CLI) -------------------------------------------------------------------------


def write_files(
    out: Path, stem: str, image: np.ndarray, explanation: Explanation
) -> tuple[Path, Path]:
    """``out/<stem>.<arm>.png`` (the overlay, with the image beside it) and
    ``out/<stem>.<arm>.npy`` (the raw map); refuses to overwrite."""
    from PIL import Image

    png = out / f"{stem}.{explanation.arm}.png"
    npy = out / f"{stem}.{explanation.arm}.npy"
    for path in (png, npy):
        if path.exists():
            raise UserError(f"{path} already exists; choose another --out folder")
    side = np.concatenate([image, overlay(image, explanation.map)], axis=1)
    Image.fromarray(side).save(png)
    np.save(npy, explanation.map.astype(np.float32), allow_pickle=False)
    return png, npy
