"""The on-disk feature cache: keyed by everything that decides a feature, safe to share."""

import numpy as np

from pipelines.backbones import resolve
from pipelines.training.feature_cache import FeatureCache, cache_key, clear_memory


def test_round_trip_partial_hits_and_a_new_process(tmp_path):
    cache = FeatureCache("k", root=tmp_path)
    assert cache.get(["a", "b"]) == (None, [0, 1])
    cache.put(["a", "b"], np.array([[1, 2], [3, 4]], np.float32))
    features, missing = cache.get(["b", "a"])
    np.testing.assert_array_equal(features, [[3, 4], [1, 2]])
    assert missing == []
    assert cache.get(["a", "c"])[1] == [1]
    cache.put(["c"], np.array([[5, 6]], np.float32))
    clear_memory()
    again = FeatureCache("k", root=tmp_path)  # what another process would see
    np.testing.assert_array_equal(again.get(["c", "a"])[0], [[5, 6], [1, 2]])
    assert not list((tmp_path).rglob("*.tmp"))


def test_a_corrupt_chunk_is_a_miss_not_an_error(tmp_path):
    cache = FeatureCache("k", root=tmp_path)
    cache.put(["a"], np.ones((1, 3), np.float32))
    for chunk in cache.dir.glob("*.npz"):
        chunk.write_bytes(b"garbage")
    assert FeatureCache("k", root=tmp_path).get(["a"])[1] == []  # this process remembers
    clear_memory()  # another process reads the disk only
    assert FeatureCache("k", root=tmp_path).get(["a"]) == (None, [0])


def test_key_depends_on_what_decides_the_features():
    spec = resolve("efficientnet_lite0")
    base = dict(weights="imagenet", seed=0, image_size=224, graph="keras")
    key = cache_key(spec, **base)
    assert key == cache_key(spec, **base)
    assert key == cache_key(spec, **{**base, "seed": 5})  # ImageNet weights ignore the seed
    assert key != cache_key(spec, **{**base, "image_size": 160})
    assert key != cache_key(spec, **{**base, "weights": "random"})
    random = cache_key(spec, **{**base, "weights": "random"})
    assert random != cache_key(spec, **{**base, "weights": "random", "seed": 1})
    assert key != cache_key(resolve("efficientnet_lite1"), **base)


def test_key_differs_per_cut_point():
    spec = resolve("efficientnet_lite0")
    base = dict(weights="imagenet", seed=0, image_size=224, graph="keras")
    keys = {cut: cache_key(spec, **base, reuse_blocks=cut) for cut in (None, 3, 5, 17)}
    assert len(set(keys.values())) == 4
    assert keys[None] == cache_key(spec, **base)  # the whole backbone keeps its old key
    assert keys[3] == cache_key(spec, **base, reuse_blocks=3)
    random = {c: cache_key(spec, **{**base, "weights": "random"}, reuse_blocks=c) for c in (3, 5)}
    assert random[3] != random[5] and not set(random.values()) & set(keys.values())


def test_second_experiment_reuses_features_and_skips_decoding(
    tiny_data, lite0_handle, store, monkeypatch
):
    import pipelines.training.arms
    from pipelines.data import clear_cache
    from pipelines.runs.worker import EXIT_COMPLETED, run_worker
    from tests.conftest_engine import tiny_config

    config = tiny_config(tiny_data, "phase2.epochs=0", "seed=11")
    first = store.create_run(config)
    assert run_worker(first, store) == EXIT_COMPLETED
    clear_cache()  # as in a new process: nothing decoded in memory
    loaded = []  # a feature missing from the cache would load the backbone to compute it
    real_load_layer = pipelines.training.arms.load_layer

    def counting_load_layer(*args, **kwargs):
        loaded.append(kwargs.get("weights"))
        return real_load_layer(*args, **kwargs)

    monkeypatch.setattr(pipelines.training.arms, "load_layer", counting_load_layer)
    second = store.create_run(
        tiny_config(tiny_data, "phase2.epochs=0", "seed=11", "train_per_class=6")
    )
    assert run_worker(second, store) == EXIT_COMPLETED
    messages = [e["message"] for e in store.events(second)]
    for arm in ("imagenet", "random"):
        started = [m for m in messages if m.startswith(f"{arm} arm: feature extraction started")]
        assert len(started) == 1
        assert "feature cache: train 12/12 cached, validation 8/8 cached" in started[0]
    assert loaded == []  # every feature came from the cache: no backbone was loaded
    from pipelines.data import dataset as dataset_mod

    assert dataset_mod._decode_cached.cache_info().currsize == 0  # nothing was decoded
    first_acc = store.get_run(first).summary["arms"]["imagenet"]
    assert first_acc["epochs"] == 2


def test_augmentation_bypasses_the_cache_and_says_why(tiny_data, lite0_handle, store):
    from pipelines.runs.worker import EXIT_COMPLETED, run_worker
    from tests.conftest_engine import tiny_config

    run_id = store.create_run(
        tiny_config(tiny_data, "phase2.epochs=0", "augment=true", "arms=imagenet")
    )
    assert run_worker(run_id, store) == EXIT_COMPLETED
    events = " ".join(e["message"] for e in store.events(run_id))
    assert "the feature cache is bypassed because augmented images differ each epoch" in events
