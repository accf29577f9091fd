"""The feature space: the validation set's pooled backbone features of both arms, before
training (the initial backbones) and after it, in 2-D, with a k-NN accuracy per panel.

The seminar's argument made visible: ImageNet features already separate the classes before
a single step of training; random features don't. Per arm and stage:

* **before**: the initial backbone (ImageNet, or the run's seeded random weights), read
  from the feature cache (:mod:`pipelines.training.feature_cache`, the same key as the
  run's feature extraction), so a run that used the cache pays nothing; missing rows are
  computed and added to it.
* **after**: the trained backbone. Where training never changed it (feature extraction
  only: the head trained on frozen features), it *is* the initial one: the panel says so
  (``unchanged``) and no pass runs. Otherwise one pass over the validation images; kept
  in ``runs/<id>/insight/features-<arm>.npz``, so it runs once per run.

Each panel's number is the k-nearest-neighbour accuracy on those features (L2-normalised,
so Euclidean distance ranks as cosine similarity does), :data:`KNN_K` neighbours,
stratified :data:`KNN_FOLDS`-fold cross-validation within the validation set (seeded):
what a classifier with no training at all gets from the features as they are. The 2-D
projection is PCA (default) or t-SNE (scikit-learn; seeded, so the same run and seed give
the same picture), fitted per panel.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipelines.errors import UserError
from pipelines.insight.arm_model import arm_folder, load_arm

PROJECTIONS = ("pca", "tsne")
STAGES = ("before", "after")
KNN_K = 5
KNN_FOLDS = 5
PASS_BATCH = 32
VERSION = 1


def knn_accuracy(features: np.ndarray, labels: np.ndarray, *, k: int = KNN_K, seed: int = 0):
    """``(accuracy, k, folds)``: the mean accuracy of a ``k``-NN classifier (fewer where a
    fold's training part is smaller) in stratified cross-validation over ``features``,
    L2-normalised. Folds: :data:`KNN_FOLDS`, fewer where the smallest class has fewer
    images; ``(None, k, 0)`` where a class has a single image."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    labels = np.asarray(labels)
    counts = np.bincount(labels)
    folds = min(KNN_FOLDS, int(counts[counts > 0].min()))
    if folds < 2 or len(counts[counts > 0]) < 2:
        return None, k, 0
    k = max(1, min(k, len(labels) - len(labels) // folds - 1))
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_score(
        KNeighborsClassifier(n_neighbors=k), _normalised(features), labels, cv=split
    )
    return float(np.mean(scores)), k, folds


def project(features: np.ndarray, method: str = "pca", *, seed: int = 0) -> np.ndarray:
    """``features`` (L2-normalised) in 2-D, ``[n, 2]`` float32: PCA or t-SNE, seeded."""
    if method not in PROJECTIONS:
        raise UserError(f"projection must be one of {', '.join(PROJECTIONS)}, not {method!r}")
    x = _normalised(features)
    n = len(x)
    if n < 3:
        raise UserError(f"a feature space needs at least 3 images, not {n}")
    if method == "pca":
        from sklearn.decomposition import PCA

        points = PCA(n_components=2, random_state=seed).fit_transform(x)
    else:
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits

        perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
        # One OpenMP thread: on a busy 2-core machine more threads made Barnes-Hut 10-20x
        # slower (measured 95 s against 4.5 s for 256 points), and one thread sums in
        # one order, so a seed gives one picture.
        with threadpool_limits(limits=1):
            points = TSNE(
                n_components=2, perplexity=perplexity, init="pca", random_state=seed
            ).fit_transform(x)
    return points.astype(np.float32)


def _normalised(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


# --- features of a backbone ------------------------------------------------------------------


def initial_features(
    spec,
    *,
    weights: str,
    seed: int,
    image_size: int,
    reuse_blocks: int | None,
    digests: list[str],
    images: Callable[[list[int]], np.ndarray],
) -> tuple[np.ndarray, int]:
    """``(features, cached)``: the initial backbone's pooled features for the images with
    ``digests`` from the feature cache (the run's own key), the missing ones computed
    (``images(positions)`` gives their uint8 pixels) and added; ``cached`` counts hits."""
    from pipelines.training.feature_cache import FeatureCache, cache_key

    cache = FeatureCache(
        cache_key(
            spec,
            weights=weights,
            seed=seed,
            image_size=image_size,
            graph="keras" if spec.builtin else "hub",
            reuse_blocks=reuse_blocks,
        )
    )
    found, missing = cache.get(digests)
    if found is not None:
        return found, len(digests)
    from pipelines.backbones import load_layer

    backbone = load_layer(
        spec,
        weights=weights,
        seed=seed,
        image_size=image_size,
        splittable=True,
        reuse_blocks=reuse_blocks,
    )
    computed = backbone_pass(backbone, spec.scaling, images(missing))
    cache.put([digests[i] for i in missing], computed)
    found, _ = cache.get(digests)
    return found, len(digests) - len(missing)


def backbone_pass(backbone, scaling: str, images: np.ndarray) -> np.ndarray:
    """``backbone`` in inference mode over uint8 ``images`` in batches, one traced graph."""
    from pipelines.backbones.pixels import scale_pixels
    from pipelines.training.traced import one_graph

    fn = one_graph(lambda x: backbone(x, training=False))
    outs = []
    for i in range(0, len(images), PASS_BATCH):
        outs.append(fn(scale_pixels(images[i : i + PASS_BATCH], scaling)).numpy())
    return np.concatenate(outs).astype(np.float32)


# --- a finished run ----------------------------------------------------------------------------


def validation_set(store, run_id: str):
    """The run's validation split as it trained on it (a lazily decoded
    :class:`pipelines.data.dataset.Dataset`); :class:`UserError` if it can't be read."""
    from pipelines.data import load_dataset

    run = store.get_run(run_id)
    if run.config is None:
        raise UserError(f"run {run_id} can't be read: {run.config_problem}")
    config = run.config
    size = int((run.summary or {}).get("image_size") or 0)
    if not size:
        raise UserError(f"run {run_id} never loaded its data set; there is nothing to show")
    try:
        return load_dataset(
            config.dataset,
            image_size=size,
            train_per_class=config.train_per_class,
            seed=config.seed,
            extract_dir=Path(store.artefact_dir(run_id, create=False)) / "data",
            lazy=True,
        )
    except UserError as e:
        raise UserError(f"run {run_id}'s data set can't be read any more: {e}") from None


def run_features(store, run_id: str) -> dict:
    """Every arm's validation features of a finished run, before and after training:
    ``{"classes", "labels", "paths", "digests", "arms": {arm: {"before", "after",
    "unchanged", "cached"}}}`` (``cached``: before-rows the feature cache already had).
    :class:`UserError` for a run that can't be shown (see :func:`arm_folder`)."""
    from pipelines.backbones import resolve
    from pipelines.data.images import decode_files

    run = store.get_run(run_id)
    arms = [a for a in (run.config.arms if run.config else []) if a]
    folders = {arm: arm_folder(store, run_id, arm) for arm in arms}
    dataset = validation_set(store, run_id)
    digests = list(dataset.val_digests)
    decoded: dict[str, np.ndarray] = {}

    def pixels(positions: list[int]) -> np.ndarray:
        if "all" not in decoded:  # only the validation split, and only once
            decoded["all"] = decode_files(dataset.val_paths, dataset.image_size).images
        return decoded["all"][positions]

    out: dict = {
        "classes": dataset.classes,
        "labels": dataset.val_labels.astype(int).tolist(),
        "paths": [str(p) for p in dataset.val_paths],
        "digests": digests,
        "arms": {},
    }
    for arm, folder in folders.items():
        meta = json.loads((folder / "arm.json").read_text())
        spec = resolve(meta["backbone"])
        before, cached = initial_features(
            spec,
            weights=meta["weights"],
            seed=meta["seed"],
            image_size=meta["image_size"],
            reuse_blocks=meta.get("reuse_blocks"),
            digests=digests,
            images=pixels,
        )
        unchanged = not meta.get("trained_backbone")
        after = before if unchanged else _trained_features(folder, digests, pixels)
        out["arms"][arm] = {
            "before": before,
            "after": after,
            "unchanged": unchanged,
            "cached": cached,
        }
    return out


def _trained_features(folder: Path, digests: list[str], pixels) -> np.ndarray:
    """The trained backbone's features, from ``folder/../insight`` or computed and kept."""
    kept = folder.parent / "insight" / f"features-{folder.name}.npz"
    if kept.is_file():
        try:
            with np.load(kept, allow_pickle=False) as data:
                if data["digests"].tolist() == digests and int(data["version"]) == VERSION:
                    return data["features"].astype(np.float32)
        except (OSError, ValueError, KeyError):
            pass  # unreadable: computed again
    model = load_arm(folder)
    features = backbone_pass(model.backbone, model.scaling, pixels(list(range(len(digests)))))
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=kept.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, digests=np.array(digests), features=features, version=VERSION)
        os.replace(tmp, kept)
    except OSError:
        pass  # only a copy: the next call computes it again
    return features


def feature_space(
    store,
    run_id: str,
    *,
    projection: str = "pca",
    seed: int = 0,
    k: int = KNN_K,
) -> dict:
    """The run's feature space, JSON-ready: ``{"run_id", "classes", "labels", "paths",
    "names", "projection", "seed", "panels": [{"arm", "stage", "points": [[x, y], ...],
    "knn_accuracy", "k", "folds", "unchanged", "cached", "dim"}, ...]}``, one panel per arm
    and stage (before, after), in the run's arm order."""
    if projection not in PROJECTIONS:
        raise UserError(f"projection must be one of {', '.join(PROJECTIONS)}, not {projection!r}")
    data = run_features(store, run_id)
    labels = np.array(data["labels"])
    panels = []
    for arm, found in data["arms"].items():
        for stage in STAGES:
            features = found[stage]
            accuracy, k_used, folds = knn_accuracy(features, labels, k=k, seed=seed)
            points = project(features, projection, seed=seed)
            panels.append(
                {
                    "arm": arm,
                    "stage": stage,
                    "points": np.round(points, 5).tolist(),
                    "knn_accuracy": accuracy,
                    "k": k_used,
                    "folds": folds,
                    "unchanged": stage == "after" and found["unchanged"],
                    "cached": found["cached"] if stage == "before" else None,
                    "dim": int(features.shape[1]),
                }
            )
    return {
        "run_id": run_id,
        "classes": data["classes"],
        "labels": data["labels"],
        "paths": data["paths"],
        "names": [Path(p).name for p in data["paths"]],
        "projection": projection,
        "seed": seed,
        "panels": panels,
    }
