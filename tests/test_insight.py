"""Insight from finished runs (``pipelines.insight``): where each arm looks (Grad-CAM,
SmoothGrad) and the feature space (k-NN accuracy, 2-D projections), with real trainings.

The attention data set's class is decided only by a bright patch at a known place (the
top-left quadrant): a trained model that looks at it puts most of its map's mass there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines import settings
from pipelines.data.images import read_image_file
from pipelines.errors import UserError
from pipelines.runs.store import RunStore
from pipelines.runs.worker import EXIT_COMPLETED, run_worker
from pipelines.training.config import ExperimentConfig

PATCH_PX = 64
PATCH_CLASSES = ("patch", "plain")


def patch_image(label: int, index: int, size: int = PATCH_PX) -> Image.Image:
    """A smooth random colour field; class 0 (``patch``) adds a white square inside the
    top-left quadrant (rows and columns 6..25 of 64), class 1 (``plain``) nothing else."""
    rng = np.random.default_rng([label, index, 7])
    base = rng.integers(40, 160, (4, 4, 3)).astype(np.uint8)
    x = np.asarray(Image.fromarray(base).resize((size, size), Image.BILINEAR), np.float64)
    x = x + rng.normal(0, 3, x.shape)
    if label == 0:
        a, b = size * 3 // 32, size * 13 // 32
        x[a:b, a:b] = 255
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


def make_patch_folder(root: Path, train: int = 24, validation: int = 8) -> Path:
    for split, n, start in (("train", train, 0), ("validation", validation, 1000)):
        for label, name in enumerate(PATCH_CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(start, start + n):
                patch_image(label, i).save(folder / f"img{i}.png")
    return root


def quadrant(size: int = PATCH_PX) -> np.ndarray:
    region = np.zeros((size, size), bool)
    region[: size // 2, : size // 2] = True
    return region


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory, lite0_handle):
    """Both arms trained on the patch data (64 px, cut after 12 blocks: a 4 x 4 grid at the
    last kept block), feature extraction only; the run store and the run id."""
    data = make_patch_folder(tmp_path_factory.mktemp("patch") / "patch")
    store = RunStore(tmp_path_factory.mktemp("runs"))
    config = ExperimentConfig().with_overrides(
        [
            f"dataset={data}",
            f"image_size={PATCH_PX}",
            "reuse_blocks=12",
            "batch_size=8",
            "phase1.epochs=6",
            "phase1.lr=0.01",
            "phase2.epochs=0",
        ]
    )
    run_id = store.create_run(config)
    assert run_worker(run_id, store) == EXIT_COMPLETED
    return store, run_id, data


def patch_images(data: Path, name: str = "patch") -> np.ndarray:
    paths = sorted((data / "validation" / name).glob("*.png"))
    return np.stack([read_image_file(p, PATCH_PX) for p in paths])


# --- attention ----------------------------------------------------------------------------


@pytest.mark.slow
def test_grad_cam_of_a_trained_arm_looks_at_the_patch(patch_run):
    from pipelines.insight.attention import explain_run, mass_inside

    store, run_id, data = patch_run
    found = explain_run(store, run_id, "imagenet", patch_images(data))
    assert {e.method for e in found} == {"grad-cam"}
    assert {e.layer for e in found} == {"block_10"} and {e.grid for e in found} == {4}
    assert all(e.predicted == 0 and e.target == 0 for e in found)  # "patch", and explained
    masses = [mass_inside(e.map, quadrant()) for e in found]
    # uniform would be 0.25: the quadrant is a quarter of the image
    assert np.mean(masses) > 0.6 and min(masses) > 0.5, masses
    for e in found:
        assert e.map.shape == (PATCH_PX, PATCH_PX) and e.map.dtype == np.float32
        assert e.map.max() == pytest.approx(1.0) and e.map.min() >= 0.0
        assert sum(e.probabilities) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_smoothgrad_is_seeded_and_leans_to_the_patch(patch_run):
    from pipelines.insight.arm_model import arm_folder, load_arm
    from pipelines.insight.attention import explain, mass_inside

    store, run_id, data = patch_run
    model = load_arm(arm_folder(store, run_id, "imagenet"))
    images = patch_images(data)[:4]
    first = explain(model, images, method="smoothgrad")
    again = explain(model, images, method="smoothgrad")
    assert {e.method for e in first} == {"smoothgrad"} and first[0].layer == "input pixels"
    for a, b in zip(first, again, strict=True):
        np.testing.assert_allclose(a.map, b.map, atol=1e-5)
    # Input gradients of an ImageNet net are noisy; measured 0.30-0.37 against 0.25 uniform.
    assert np.mean([mass_inside(e.map, quadrant()) for e in first]) > 0.28


def test_a_target_class_and_bad_inputs(patch_run):
    from pipelines.insight.arm_model import arm_folder, load_arm
    from pipelines.insight.attention import explain

    store, run_id, data = patch_run
    model = load_arm(arm_folder(store, run_id, "random"))
    image = patch_images(data)[:1]
    (e,) = explain(model, image, target=1)
    assert e.target == 1 and e.arm == "random"
    with pytest.raises(UserError, match="target class 5"):
        explain(model, image, target=5)
    with pytest.raises(UserError, match=r"images must be \[n, 64, 64, 3\]"):
        explain(model, image[:, :32, :32])
    with pytest.raises(UserError, match="method must be one of"):
        explain(model, image, method="lime")


def test_what_has_no_model_is_refused(patch_run):
    from pipelines.insight.arm_model import arm_folder
    from pipelines.runs import lifecycle

    store, run_id, _ = patch_run
    with pytest.raises(UserError, match="no run with id"):
        arm_folder(store, "nope", "imagenet")
    queued = store.create_run(ExperimentConfig())
    with pytest.raises(UserError, match=f"run {queued} is still queued"):
        arm_folder(store, queued, "imagenet")
    failed = store.create_run(
        ExperimentConfig().with_overrides(["arms=imagenet"]), status="running"
    )
    lifecycle.finish(store, failed, "failed", "boom")
    with pytest.raises(UserError, match="has no random arm; it trained imagenet"):
        arm_folder(store, failed, "random")
    with pytest.raises(UserError, match="has no trained imagenet model"):
        arm_folder(store, failed, "imagenet")


# --- the command line -----------------------------------------------------------------------


def cli(*args: str) -> tuple[int, str, str]:
    import contextlib
    import io

    from pipelines.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def cli_store(patch_run, monkeypatch):
    store, run_id, data = patch_run
    monkeypatch.setenv("RUNS_DIR", str(store.root))
    return store, run_id, data


def test_explain_writes_overlays_and_raw_maps(cli_store, tmp_path):
    _, run_id, data = cli_store
    images = sorted((data / "validation" / "patch").glob("*.png"))[:2]
    out = tmp_path / "maps"
    code, stdout, err = cli(
        "explain", run_id, "--arm", "random", *map(str, images), "--out", str(out), "--json"
    )
    assert code == 0, err
    rows = json.loads(stdout)
    assert [r["image"] for r in rows] == [str(p) for p in images]
    for r in rows:
        assert r["arm"] == "random" and r["method"] == "grad-cam"
        assert r["method_title"] == "Grad-CAM" and r["predicted_class"] in PATCH_CLASSES
        heat = np.load(r["npy"], allow_pickle=False)
        assert heat.shape == (PATCH_PX, PATCH_PX) and 0 <= heat.min() <= heat.max() <= 1
        with Image.open(r["png"]) as im:
            assert im.size == (2 * PATCH_PX, PATCH_PX)  # the image, then the overlay
    code, _, err = cli("explain", run_id, "--arm", "random", str(images[0]), "--out", str(out))
    assert code == 2 and "already exists" in err  # nothing is overwritten


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown run", "no run with id 'nope'"),
        ("unfinished run", "is still queued"),
        ("missing image", "does not exist"),
        ("unreadable image", "not a readable image"),
        ("unknown class", "is not one of the run's classes"),
    ],
)
def test_explain_refuses_bad_input_with_one_message(cli_store, tmp_path, case, message):
    store, run_id, data = cli_store
    image = str(sorted((data / "validation" / "patch").glob("*.png"))[0])
    args = [run_id, "--arm", "imagenet", image, "--out", str(tmp_path / "out")]
    if case == "unknown run":
        args[0] = "nope"
    elif case == "unfinished run":
        args[0] = store.create_run(ExperimentConfig())
    elif case == "missing image":
        args[3] = str(tmp_path / "missing.png")
    elif case == "unreadable image":
        (tmp_path / "notes.png").write_text("not an image")
        args[3] = str(tmp_path / "notes.png")
    else:
        args += ["--class", "zebras"]
    code, stdout, err = cli("explain", *args)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert err.startswith("error: ") and not stdout
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_features_cli(cli_store):
    _, run_id, _ = cli_store
    code, stdout, err = cli("features", run_id, "--json")
    assert code == 0, err
    space = json.loads(stdout)
    assert [(p["arm"], p["stage"]) for p in space["panels"]] == [
        ("imagenet", "before"),
        ("imagenet", "after"),
        ("random", "before"),
        ("random", "after"),
    ]
    code, stdout, _ = cli("features", run_id)
    assert code == 0 and "5-NN accuracy" in stdout and "16/16 from the feature cache" in stdout
    code, _, err = cli("features", "nope")
    assert code == 2 and "no run with id" in err


# --- the feature space ------------------------------------------------------------------------


def test_feature_space_reuses_the_cache_and_is_deterministic(patch_run):
    from pipelines.insight import features

    store, run_id, _ = patch_run
    first = features.feature_space(store, run_id, projection="pca", seed=3)
    again = features.feature_space(store, run_id, projection="pca", seed=3)
    assert first == again
    assert first["classes"] == list(PATCH_CLASSES) and len(first["labels"]) == 16
    assert sorted(first["names"])[0] == "img1000.png"
    for panel in first["panels"]:
        assert len(panel["points"]) == 16 and panel["k"] == 5 and panel["folds"] == 5
        assert 0.0 <= panel["knn_accuracy"] <= 1.0
        if panel["stage"] == "before":  # the run's own feature extraction filled the cache
            assert panel["cached"] == 16
        else:  # feature extraction only: training never changed the backbone
            assert panel["unchanged"]
    # The ImageNet features see the patch before any training.
    imagenet_before = first["panels"][0]
    assert imagenet_before["knn_accuracy"] >= 0.9


def test_tsne_is_deterministic_for_a_seed():
    from pipelines.insight.features import project

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (15, 8)), rng.normal(4, 1, (15, 8))])
    a, b = project(x, "tsne", seed=1), project(x, "tsne", seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (30, 2)
    np.testing.assert_array_equal(project(x, "pca", seed=1), project(x, "pca", seed=1))
    with pytest.raises(UserError, match="projection must be one of"):
        project(x, "umap")


def test_knn_accuracy_separates_separable_features_and_not_noise():
    from pipelines.insight.features import knn_accuracy

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 20)
    apart = rng.normal(0, 1, (40, 16)) + np.eye(16)[labels] * 8  # two directions apart
    noise = rng.normal(0, 1, (40, 16))
    assert knn_accuracy(apart, labels)[0] == 1.0
    acc, k, folds = knn_accuracy(noise, labels)
    assert acc < 0.75 and (k, folds) == (5, 5)
    assert knn_accuracy(noise[:3], np.array([0, 1, 1]))[0] is None  # a class of one image


@pytest.mark.slow
def test_imagenet_features_separate_horses_from_humans_random_ones_do_not():
    """The seminar's argument, on the real data (a subset, at 96 px, to stay cheap)."""
    from pipelines.backbones import resolve
    from pipelines.data import load_dataset
    from pipelines.data.images import decode_files
    from pipelines.insight.features import initial_features, knn_accuracy

    root = settings.datasets_dir()
    if root is None or not (root / "horses-or-humans").is_dir():
        pytest.skip(f"no horses-or-humans/ in DATASETS_DIR={root}")
    dataset = load_dataset("horses_or_humans", image_size=96, lazy=True)
    labels = dataset.val_labels
    keep = np.concatenate([np.flatnonzero(labels == c)[::4] for c in (0, 1)])  # 32 + 32
    paths = [dataset.val_paths[i] for i in keep]
    pixels = decode_files(paths, 96).images
    spec = resolve("efficientnet_lite0")
    accuracy = {}
    for weights in ("imagenet", "random"):
        found, _ = initial_features(
            spec,
            weights=weights,
            seed=0,
            image_size=96,
            reuse_blocks=None,
            digests=[dataset.val_digests[i] for i in keep],
            images=lambda positions: pixels[positions],
        )
        accuracy[weights] = knn_accuracy(found, labels[keep])[0]
    assert accuracy["imagenet"] >= 0.9, accuracy
    assert accuracy["imagenet"] - accuracy["random"] >= 0.2, accuracy


@pytest.mark.slow
def test_a_tf_hub_backbone_gets_smoothgrad_and_its_cached_features(tmp_path, lite0_handle):
    """A backbone outside the built-ins (here Lite0's own SavedModel folder, loaded as any
    TF Hub model): its blocks can't be reached, so the map is SmoothGrad, named so."""
    from pipelines.insight.attention import explain_run
    from pipelines.insight.features import feature_space

    data = make_patch_folder(tmp_path / "patch", train=8, validation=4)
    store = RunStore(tmp_path / "runs")
    config = ExperimentConfig().with_overrides(
        [
            f"dataset={data}",
            f"backbone={lite0_handle}",
            "image_size=32",
            "arms=imagenet",
            "batch_size=8",
            "phase1.epochs=1",
            "phase2.epochs=0",
        ]
    )
    run_id = store.create_run(config)
    assert run_worker(run_id, store) == EXIT_COMPLETED
    image = np.asarray(patch_image(0, 1000, 32))[None]
    (found,) = explain_run(store, run_id, "imagenet", image)
    assert (found.method, found.layer, found.grid) == ("smoothgrad", "input pixels", 32)
    with pytest.raises(UserError, match="Grad-CAM needs a backbone whose blocks"):
        explain_run(store, run_id, "imagenet", image, method="grad-cam")
    space = feature_space(store, run_id)
    assert [p["cached"] for p in space["panels"]] == [8, None]  # the run's hub-graph rows
