"""Export a trained arm: the SavedModel as it is, or ONNX through tf2onnx, checked.

Each finished (or stopped) run keeps, per arm, an inference SavedModel at
``runs/<run_id>/<arm>/savedmodel``: float RGB pixels in [0, 255], shape
``[batch, size, size, 3]`` → ``probabilities``; the backbone's pixel scaling is inside.
ONNX is the seminar's way to leave TensorFlow behind: the converted file is run with
onnxruntime on validation images and compared with TensorFlow; the largest absolute
difference of the probabilities must stay below :data:`PARITY_TOLERANCE`.

For the dashboard's downloads: :func:`onnx_cached` converts once and keeps the file in
``runs/<run_id>/exports/<arm>/`` (:func:`onnx_ready` reads it back), :func:`savedmodel_zip`
and :func:`metrics_csv` return bytes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from pipelines.errors import UserError

FORMATS = ("savedmodel", "onnx")
PARITY_TOLERANCE = 1e-4
PARITY_IMAGES = 8
ONNX_OPSET = 17


def model_dir(store, run_id: str, arm: str) -> Path:
    """The arm's inference SavedModel, built from its saved weights on first request."""
    run = store.get_run(run_id)
    if run.config is None:
        raise UserError(f"run {run_id} can't be exported: {run.config_problem}")
    if arm not in run.config.arms:
        raise UserError(f"run {run_id} has no {arm} arm; it trained {', '.join(run.config.arms)}")
    folder = Path(store.artefact_dir(run_id)) / arm
    if not (folder / "arm.json").is_file() and not _task_networks(folder):
        raise UserError(
            f"run {run_id} has no trained {arm} model yet (status {run.status}); "
            "export works once a run has completed or been stopped"
        )
    return build_inference_model(folder)


def built_model(store, run_id: str, arm: str) -> Path | None:
    """The arm's inference SavedModel if :func:`model_dir` has built it already, else None;
    builds nothing."""
    if arm not in ("imagenet", "random"):
        return None
    target = Path(store.artefact_dir(run_id, create=False)) / arm / "savedmodel"
    return target if (target / "saved_model.pb").is_file() else None


def build_inference_model(folder: Path) -> Path:
    """``folder/savedmodel`` from ``arm.json`` and the ``.npz`` weights (atomically, once).

    The SavedModel takes float RGB pixels in [0, 255], ``[batch, size, size, 3]``, and
    returns ``{"probabilities": [batch, classes]}``; the backbone's scaling is inside.
    """
    target = folder / "savedmodel"
    if (target / "saved_model.pb").is_file():
        return target
    import tensorflow as tf
    import tf_keras as keras

    from pipelines.backbones.pixels import scale_pixels

    # A HydraNet: one output per task, named by it. ``shared``: one network whose heads
    # give them; ``separate``: one network per task (``folder/<task>/``), side by side.
    networks = [folder] if (folder / "arm.json").is_file() else _task_networks(folder)
    metas = [json.loads((f / "arm.json").read_text()) for f in networks]
    size, scaling = metas[0]["image_size"], metas[0]["scaling"]
    models, names = [], []
    for f, meta in zip(networks, metas, strict=True):
        backbone, head = _network(f, meta)
        images = keras.Input((size, size, 3), name="images")
        models.append(keras.Model(images, head(backbone(images))))
        names += [t["name"] for t in meta.get("tasks") or []] or ["probabilities"]

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
    def serve(images):
        x = scale_pixels(images, scaling)
        logits = []
        for model in models:
            out = model(x, training=False)
            logits += out if isinstance(out, list) else [out]
        return {name: tf.nn.softmax(y) for name, y in zip(names, logits, strict=True)}

    module = tf.__internal__.tracking.AutoTrackable()
    module.variables = [v for model in models for v in model.variables]
    module.serve = serve
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        tf.saved_model.save(module, tmp, signatures={"serving_default": serve})
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "saved_model.pb").is_file():
                raise
        os.makedirs(tmp, exist_ok=True)  # TemporaryDirectory cleans up a folder it expects
    return target


def _task_networks(folder: Path) -> list[Path]:
    """A ``separate`` HydraNet run's per-task network folders (empty: none)."""
    if not folder.is_dir():
        return []
    return sorted(p.parent for p in folder.glob("*/arm.json"))


def _network(folder: Path, meta: dict):
    """The trained ``(backbone, head)`` saved in ``folder`` (a HydraNet: one head per task,
    a list of outputs)."""
    from pipelines.backbones import load_layer
    from pipelines.training.arms import build_head

    backbone = load_layer(
        meta["backbone"],
        weights=meta["weights"],
        seed=meta["seed"],
        bn_training=meta["bn_training"],
        image_size=meta["image_size"],
        splittable=True,
        reuse_blocks=meta.get("reuse_blocks"),
    )
    if (folder / "backbone.npz").is_file():
        _assign(backbone.module_variables, folder / "backbone.npz")
    if meta.get("tasks"):
        from pipelines.training.hydra import build_heads

        tasks = [(t["name"], len(t["classes"])) for t in meta["tasks"]]
        head = build_heads(meta["feature_dim"], tasks, meta["dropout"], meta["seed"])
    else:
        head = build_head(meta["feature_dim"], len(meta["classes"]), meta["dropout"], meta["seed"])
    _assign(head.variables, folder / "head.npz")
    return backbone, head


def _assign(variables, npz: Path) -> None:
    with np.load(npz, allow_pickle=False) as data:
        values = [data[f"arr_{i}"] for i in range(len(data.files))]
    if len(values) != len(variables):
        raise UserError(f"{npz} holds {len(values)} arrays for {len(variables)} variables")
    for v, value in zip(variables, values, strict=True):
        v.assign(value)


def _check_out(out: Path) -> None:
    if out.exists() and (out.is_file() or any(out.iterdir())):
        raise UserError(f"{out} already exists; choose a new path so nothing is overwritten")


def export(store, run_id: str, arm: str, fmt: str, out: str | Path) -> dict:
    """Write the arm's model to ``out``; return ``{"path", "format", ...}`` (ONNX: parity)."""
    if fmt not in FORMATS:
        raise UserError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    source = model_dir(store, run_id, arm)
    out = Path(out)
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "savedmodel":
        shutil.copytree(source, out, dirs_exist_ok=True)
        return {"path": str(out), "format": fmt}
    images = _validation_images(store, run_id, arm)
    return {"path": str(out), "format": fmt, **to_onnx(source, out, images)}


def to_onnx(savedmodel: Path, out: Path, images: np.ndarray) -> dict:
    """Convert ``savedmodel`` to ONNX at ``out`` (atomically) and check it on ``images``."""
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    model = tf.saved_model.load(str(savedmodel))
    spec = model.signatures["serving_default"].structured_input_signature[1]["images"]
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp_file = Path(tmp) / "model.onnx"
        tf2onnx.convert.from_function(
            model.serve,
            input_signature=(tf.TensorSpec(spec.shape, tf.float32, name="images"),),
            opset=ONNX_OPSET,
            output_path=str(tmp_file),
        )
        session = ort.InferenceSession(str(tmp_file), providers=["CPUExecutionProvider"])
        tf_out = {k: v.numpy() for k, v in model.serve(tf.constant(images)).items()}
        names = [o.name for o in session.get_outputs()]
        if sorted(names) != sorted(tf_out):
            raise UserError(
                f"the ONNX model's outputs ({', '.join(names)}) are not the SavedModel's "
                f"({', '.join(tf_out)}); not written. Export as savedmodel instead"
            )
        onnx_out = session.run(names, {session.get_inputs()[0].name: images})
        diff = max(float(np.abs(o - tf_out[n]).max()) for n, o in zip(names, onnx_out, strict=True))
        if diff >= PARITY_TOLERANCE:
            raise UserError(
                f"the ONNX model disagrees with TensorFlow by {diff:.2e} (limit "
                f"{PARITY_TOLERANCE:g}); not written. Export as savedmodel instead"
            )
        shutil.move(tmp_file, out)
    return {
        "parity_max_abs_diff": diff,
        "parity_images": len(images),
        "opset": ONNX_OPSET,
        "outputs": names,
    }


def _validation_images(store, run_id: str, arm: str) -> np.ndarray:
    """A few of the run's validation images at its size, float [0, 255]; random if gone."""
    from PIL import Image

    size = int(store.get_run(run_id).summary["image_size"])
    result = store.result(run_id, arm) or {}
    images = []
    for p in (result.get("predictions") or [])[:PARITY_IMAGES]:
        try:
            with Image.open(p["path"]) as im:
                images.append(np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR)))
        except OSError:
            continue
    if not images:  # the data set moved: parity on seeded noise images still proves the file
        rng = np.random.default_rng(0)
        images = list(rng.integers(0, 256, (PARITY_IMAGES, size, size, 3), dtype=np.uint8))
    return np.stack(images).astype(np.float32)


def _onnx_folder(store, run_id: str, arm: str, *, create: bool = True) -> Path:
    return Path(store.artefact_dir(run_id, create=create)) / "exports" / arm


def onnx_ready(store, run_id: str, arm: str) -> dict | None:
    """The ONNX export :func:`onnx_cached` made earlier for this arm (its :func:`export`
    result, ``path`` an existing file), or None if there is none (yet)."""
    done = _onnx_folder(store, run_id, arm, create=False) / "onnx.json"
    if not done.is_file():
        return None
    info = json.loads(done.read_text())
    return info if Path(info["path"]).is_file() else None


def onnx_cached(store, run_id: str, arm: str) -> dict:
    """The arm's model as ONNX, converted (and parity-checked) on the first call only and
    kept in ``runs/<run_id>/exports/<arm>/``; return :func:`export`'s result
    (``{"path", "format", "parity_max_abs_diff", ...}``). Later calls return the same file
    without converting again; a half-made or deleted export is made afresh."""
    if (info := onnx_ready(store, run_id, arm)) is not None:
        return info
    folder = _onnx_folder(store, run_id, arm)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    info = export(store, run_id, arm, "onnx", folder / f"{run_id}-{arm}.onnx")
    (folder / "onnx.json").write_text(json.dumps(info))
    return info


def savedmodel_zip(store, run_id: str, arm: str) -> bytes:
    """The arm's inference SavedModel folder (see :func:`model_dir`) as zip bytes, its
    files under ``savedmodel/``."""
    folder = model_dir(store, run_id, arm)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, Path("savedmodel") / file.relative_to(folder))
    return buffer.getvalue()


def metrics_csv(store, run_id: str) -> bytes:
    """All metric rows of a run as CSV bytes (:meth:`RunStore.export_csv`)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metrics.csv"
        store.export_csv(run_id, path)
        return path.read_bytes()
