"""Export of a trained arm: SavedModel and ONNX, with onnxruntime parity."""

import numpy as np
import pytest

from pipelines.errors import UserError
from pipelines.training.export import PARITY_TOLERANCE, export, model_dir


def test_savedmodel_is_built_from_weights_and_predicts_like_the_run(finished_run, tmp_path):
    import tensorflow as tf

    store, run_id = finished_run
    for arm in ("imagenet", "random"):
        path = model_dir(store, run_id, arm)
        model = tf.saved_model.load(str(path))
        result = store.result(run_id, arm)
        from PIL import Image

        first = result["predictions"][:4]
        images = np.stack(
            [
                np.asarray(Image.open(p["path"]).convert("RGB").resize((32, 32), Image.BILINEAR))
                for p in first
            ]
        ).astype(np.float32)
        probs = model.serve(images)["probabilities"].numpy()
        stored = np.array([p["probabilities"] for p in first])
        assert np.abs(probs - stored).max() < 1e-3  # the rebuilt model is the trained one
    out = export(store, run_id, "imagenet", "savedmodel", tmp_path / "sm")
    assert (tmp_path / "sm" / "saved_model.pb").is_file() and out["format"] == "savedmodel"


def test_onnx_export_parity(finished_run, tmp_path):
    import onnxruntime as ort

    store, run_id = finished_run
    out = export(store, run_id, "random", "onnx", tmp_path / "random.onnx")
    assert out["parity_max_abs_diff"] < PARITY_TOLERANCE and out["parity_images"] >= 4
    session = ort.InferenceSession(
        str(tmp_path / "random.onnx"), providers=["CPUExecutionProvider"]
    )
    probs = session.run(None, {"images": np.full((1, 32, 32, 3), 128, np.float32)})[0]
    assert probs.shape == (1, 2) and abs(probs.sum() - 1) < 1e-5


def test_export_refusals(finished_run, tmp_path):
    store, run_id = finished_run
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep me")
    with pytest.raises(UserError, match="already exists"):
        export(store, run_id, "imagenet", "savedmodel", tmp_path / "taken")
    assert (tmp_path / "taken" / "x").read_text() == "keep me"
    with pytest.raises(UserError, match="no run with id"):
        export(store, "nope", "imagenet", "onnx", tmp_path / "m.onnx")
    with pytest.raises(UserError, match="format must be one of"):
        export(store, run_id, "imagenet", "tflite", tmp_path / "m.tflite")
