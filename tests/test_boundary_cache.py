"""The on-disk boundary cache: a second fine-tuning run at the same depth skips decoding and
the bottom pass, trains the same curves, and misses on a different cut, depth, size or weights.

(``tests/test_training.py`` checks that the boundary itself gives the full pass's curves.)
"""

import numpy as np

from pipelines.backbones import resolve
from pipelines.training.arms import Arm
from pipelines.training.boundary_cache import boundary_activations, boundary_key
from pipelines.training.feature_cache import clear_memory
from tests.conftest_engine import tiny_config

CURVE_COLUMNS = ["loss", "accuracy", "val_loss", "val_accuracy"]


def _events(store, run_id) -> str:
    return " ".join(e["message"] for e in store.events(run_id))


def test_second_run_reads_the_boundary_from_disk_with_the_same_curves(
    tiny_data, lite0_handle, store, monkeypatch, tmp_path
):
    import pipelines.training.arms
    from pipelines.data import clear_cache
    from pipelines.data import dataset as dataset_mod
    from pipelines.runs.worker import EXIT_COMPLETED, run_worker

    monkeypatch.setenv("FEATURE_CACHE_DIR", str(tmp_path / "features"))  # a cold start
    extra = ("dropout=0", "arms=imagenet", "phase2.epochs=2", "phase2.lr=1e-3", "seed=3")
    first = store.create_run(tiny_config(tiny_data, *extra))
    assert run_worker(first, store) == EXIT_COMPLETED
    # Its feature pass kept the boundary on the way, so fine-tuning ran no bottom pass.
    assert "the same pass kept the boundary activations for fine-tuning the top 2" in _events(
        store, first
    )
    assert "train 24/24, validation 8/8 from disk" in _events(store, first)
    assert list((tmp_path / "features" / "boundary").rglob("*.npz"))

    clear_cache()  # as in a new process: nothing decoded in memory
    second = store.create_run(tiny_config(tiny_data, *extra))
    assert run_worker(second, store) == EXIT_COMPLETED
    assert "train 24/24, validation 8/8 from disk" in _events(store, second)
    assert dataset_mod._decode_cached.cache_info().currsize == 0  # nothing was decoded

    monkeypatch.setattr(pipelines.training.arms, "BOUNDARY_MAX_BYTES", 0)  # the full pass
    full = store.create_run(tiny_config(tiny_data, *extra))
    assert run_worker(full, store) == EXIT_COMPLETED
    assert "would need" in _events(store, full)
    a, b, c = (
        store.curves(r, kind="epoch")[CURVE_COLUMNS].to_numpy(float) for r in (first, second, full)
    )
    np.testing.assert_array_equal(a, b)  # float32 on disk: exactly the in-memory numbers
    np.testing.assert_allclose(b, c, rtol=1e-3, atol=1e-4)


def test_a_fine_tuning_run_without_a_feature_pass_runs_the_bottom(
    tiny_data, lite0_handle, store, monkeypatch, tmp_path
):
    from pipelines.runs.worker import EXIT_COMPLETED, run_worker

    monkeypatch.setenv("FEATURE_CACHE_DIR", str(tmp_path / "features"))
    run = store.create_run(tiny_config(tiny_data, "arms=imagenet", "phase1.epochs=0"))
    assert run_worker(run, store) == EXIT_COMPLETED
    assert "train 0/24, validation 0/8 from disk" in _events(store, run)
    assert "kept the boundary" not in _events(store, run)


def test_the_feature_pass_gives_the_same_numbers_as_the_separate_passes(
    tiny_data, lite0_handle, monkeypatch, tmp_path
):
    """Features and boundaries from the one capturing pass equal the plain feature pass and
    the bottom pass (the same blocks, variables and graph ops)."""
    from pipelines.data import load_dataset
    from pipelines.training.boundary_cache import boundary_cache

    monkeypatch.setenv("FEATURE_CACHE_DIR", str(tmp_path / "features"))
    config = tiny_config(tiny_data, "phase2.unfreeze_blocks=3")
    data = load_dataset(tiny_data, image_size=32, seed=config.seed)
    for name in ("imagenet", "random"):
        arm = Arm(name, config, resolve("efficientnet_lite0"), 32, 2)
        arm._prepare_features(data)
        plain = arm.backbone_features(data.train_images)
        np.testing.assert_allclose(arm._features["train"], plain, rtol=1e-5, atol=1e-6)
        first = len(arm.backbone.blocks) - 3
        bottom, _ = arm.backbone.split(first)
        key = boundary_key(arm._feature_key(), first=first, unfreeze_blocks=3)
        stored, missing = boundary_cache(key).get(data.train_digests)
        assert missing == []
        want = arm._run(bottom, data.train_images, scale=True)
        np.testing.assert_allclose(stored, want, rtol=1e-5, atol=1e-5)


def test_a_process_told_of_more_depths_keeps_them_too(
    tiny_data, lite0_handle, store, monkeypatch, tmp_path
):
    """A sweep worker names its trials' depths (keep_depths): the first feature pass keeps
    each boundary, so a later run at another depth runs no bottom pass either."""
    from pipelines.runs.worker import EXIT_COMPLETED, run_worker
    from pipelines.training import boundary_cache as bc

    monkeypatch.setenv("FEATURE_CACHE_DIR", str(tmp_path / "features"))
    monkeypatch.setattr(bc, "_extra_depths", frozenset())
    bc.keep_depths([0, 1, 3, None])
    assert bc.extra_depths() == {1, 3}
    first = store.create_run(tiny_config(tiny_data, "arms=imagenet"))
    assert run_worker(first, store) == EXIT_COMPLETED
    assert "fine-tuning the top 1, 2, 3 block(s)" in _events(store, first)
    deeper = store.create_run(
        tiny_config(tiny_data, "arms=imagenet", "phase1.epochs=0", "phase2.unfreeze_blocks=3")
    )
    assert run_worker(deeper, store) == EXIT_COMPLETED
    assert "train 24/24, validation 8/8 from disk" in _events(store, deeper)


def test_another_depth_misses(tiny_data, lite0_handle, store, monkeypatch, tmp_path):
    from pipelines.runs.worker import EXIT_COMPLETED, run_worker

    monkeypatch.setenv("FEATURE_CACHE_DIR", str(tmp_path / "features"))
    base = ("arms=imagenet", "phase1.epochs=0", "phase2.epochs=1")
    first = store.create_run(tiny_config(tiny_data, *base, "phase2.unfreeze_blocks=2"))
    assert run_worker(first, store) == EXIT_COMPLETED
    deeper = store.create_run(tiny_config(tiny_data, *base, "phase2.unfreeze_blocks=3"))
    assert run_worker(deeper, store) == EXIT_COMPLETED
    assert "train 0/24, validation 0/8 from disk" in _events(store, deeper)
    again = store.create_run(tiny_config(tiny_data, *base, "phase2.unfreeze_blocks=3"))
    assert run_worker(again, store) == EXIT_COMPLETED
    assert "train 24/24, validation 8/8 from disk" in _events(store, again)


def test_key_depends_on_cut_depth_image_size_and_weights():
    spec = resolve("efficientnet_lite0")

    def key(arm="imagenet", *sets, first=15, depth=2):
        config = tiny_config("unused", *sets)
        feature_key = Arm(arm, config, spec, config.image_size, 2)._feature_key()
        return boundary_key(feature_key, first=first, unfreeze_blocks=depth)

    base = key()
    assert base == key()
    assert base == key("imagenet", "seed=5")  # ImageNet weights ignore the seed
    others = [
        key(first=14),
        key(depth=3),
        key("imagenet", "reuse_blocks=17"),
        key("imagenet", "image_size=64"),
        key("random"),
        key("random", "seed=5"),
    ]
    assert len({base, *others}) == 1 + len(others)


class _Split:
    """A data set stand-in whose pixels count their decodes."""

    def __init__(self, n_train: int, n_val: int):
        self.train_digests = [f"t{i}" for i in range(n_train)]
        self.val_digests = [f"v{i}" for i in range(n_val)]
        self.decoded = 0

    @property
    def train_images(self):
        self.decoded += 1
        return np.arange(len(self.train_digests) * 2, dtype=np.float32).reshape(-1, 2)

    @property
    def val_images(self):
        self.decoded += 1
        return -np.arange(len(self.val_digests) * 2, dtype=np.float32).reshape(-1, 2)


def test_a_failed_write_costs_only_the_recomputation(tmp_path):
    root = tmp_path / "cache"
    root.write_text("a file where the cache folder should be")  # every write fails
    calls = []

    def bottom(images):
        calls.append(len(images))
        return images * 2

    data = _Split(3, 2)
    acts, note = boundary_activations("k", data, bottom, root=root)
    np.testing.assert_array_equal(acts["train"], data.train_images * 2)
    np.testing.assert_array_equal(acts["validation"], data.val_images * 2)
    assert note == "train 0/3, validation 0/2 from disk"
    clear_memory()  # another process: nothing was kept on disk, so it computes again
    acts, _ = boundary_activations("k", data, bottom, root=root)
    assert calls == [3, 2, 3, 2]


def test_a_subset_reads_its_rows_and_decodes_nothing(tmp_path):
    calls = []

    def bottom(images):
        calls.append(len(images))
        return images + 1

    full = _Split(4, 2)
    want, _ = boundary_activations("k", full, bottom, root=tmp_path)
    subset = _Split(2, 2)
    got, note = boundary_activations("k", subset, bottom, root=tmp_path)
    assert note == "train 2/2, validation 2/2 from disk" and subset.decoded == 0
    np.testing.assert_array_equal(got["train"], want["train"][:2])
    assert calls == [4, 2]
