"""Export of a trained arm: SavedModel and ONNX, the ONNX file checked against TensorFlow."""

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


def test_onnx_file_agrees_with_tensorflow_on_the_run_s_images(finished_run, tiny_data, tmp_path):
    """Independent of the check ``export`` makes itself: the written file, run here with
    onnxruntime on every image of the run's data set, decoded as training decodes them."""
    import onnxruntime as ort
    import tensorflow as tf

    from pipelines.data import load_dataset

    store, run_id = finished_run
    out = export(store, run_id, "imagenet", "onnx", tmp_path / "imagenet.onnx")
    assert out["format"] == "onnx" and out["path"] == str(tmp_path / "imagenet.onnx")
    size = store.get_run(run_id).summary["image_size"]
    dataset = load_dataset(tiny_data, image_size=size)
    images = np.concatenate([dataset.val_images, dataset.train_images]).astype(np.float32)

    session = ort.InferenceSession(out["path"], providers=["CPUExecutionProvider"])
    onnx_probs = session.run(None, {session.get_inputs()[0].name: images})[0]
    model = tf.saved_model.load(str(model_dir(store, run_id, "imagenet")))
    tf_probs = model.serve(tf.constant(images))["probabilities"].numpy()

    assert onnx_probs.shape == tf_probs.shape == (len(images), dataset.num_classes)
    np.testing.assert_allclose(onnx_probs, tf_probs, rtol=0, atol=PARITY_TOLERANCE)
    top2 = np.sort(tf_probs, axis=1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > 2 * PARITY_TOLERANCE  # a near-tie may flip either way
    assert decided.sum() >= len(images) // 2
    np.testing.assert_array_equal(onnx_probs.argmax(1)[decided], tf_probs.argmax(1)[decided])

    # Both are the trained arm: the run's own validation probabilities, row for row.
    stored = store.result(run_id, "imagenet")["predictions"]
    assert [p["path"] for p in stored] == [str(p) for p in dataset.val_paths]
    val_probs = onnx_probs[: len(stored)]
    np.testing.assert_allclose(val_probs, [p["probabilities"] for p in stored], atol=1e-3)


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
