"""One arm of an experiment: a backbone (ImageNet or random weights) plus a new head.

With ``reuse_blocks`` set, both arms' backbones are cut after the same block (the head sits
on its pooled output), so the comparison stays fair; every cache below is per cut point.

An :class:`Arm` knows, per phase, which blocks train and what it trains on:

* ``features`` - backbone frozen, no augmentation: the head trains on backbone features,
  computed once per image and kept in the on-disk feature cache;
* ``boundary`` - fine-tuning a built-in without augmentation: the frozen bottom runs once,
  the top blocks and the head train on its output (activations kept in memory and on disk,
  :mod:`pipelines.training.boundary_cache`);
* ``images`` - everything else (augmentation, training from scratch, fine-tuning a TF Hub
  model whose graph can't be split): the full forward pass every batch.

The maths is the same in all three because BatchNorm stays in inference mode wherever the
backbone is frozen.

Every inference pass (the feature pass, the boundary pass, validation) asks the arm's
``should_stop`` before each batch and raises :class:`StopRequested` when it says so, so a
stop is answered within a batch even in a pass over thousands of images; the training loop
ends the run as stopped. The backbone itself is loaded only when needed: an experiment whose
features are all cached never loads it. The training loop (:mod:`pipelines.training.loop`) feeds
every arm the same batches; this module turns a batch into an update or a prediction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from pipelines.backbones import load_layer
from pipelines.backbones.blocks import ALL_BLOCKS
from pipelines.backbones.contract import Backbone
from pipelines.backbones.pixels import scale_pixels
from pipelines.backbones.spec import BackboneSpec
from pipelines.training.boundary_cache import (
    boundary_activations,
    boundary_cache,
    boundary_key,
    extra_depths,
)
from pipelines.training.config import ExperimentConfig
from pipelines.training.feature_cache import FeatureCache, cache_key
from pipelines.training.traced import one_graph

PREDICT_BATCH = 32  # 64 measured 19 % more peak memory and no faster on 2 cores
BOUNDARY_MAX_BYTES = 1 << 30  # per arm; above it fine-tuning runs the full forward pass


class StopRequested(Exception):  # noqa: N818 - a request, not an error
    """A stop was requested during an inference pass; the pass was abandoned."""


def _never() -> bool:
    return False


@dataclass
class PhasePlan:
    """What one arm does in one phase."""

    name: str  # "feature_extraction" or "fine_tuning"
    epochs: int
    lr: float
    unfreeze_blocks: int | None  # ALL_BLOCKS (None): every block

    @property
    def frozen(self) -> bool:
        """The whole backbone frozen in this phase."""
        return self.unfreeze_blocks == 0


def _optimizer(name: str, lr: float) -> keras.optimizers.Optimizer:
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(lr)
    return keras.optimizers.Adam(lr)


def build_head(dim: int, num_classes: int, dropout: float, seed: int) -> keras.Model:
    """Dropout and a dense classifier on ``dim`` features, seeded (the same for both arms)."""
    features = keras.Input((dim,), name="features")
    x = keras.layers.Dropout(dropout, seed=seed, name="dropout")(features)
    logits = keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        name="classifier",
    )(x)
    return keras.Model(features, logits, name="head")


@dataclass
class Arm:
    """``imagenet`` or ``random``: the same architecture, different initial weights."""

    name: str
    config: ExperimentConfig
    spec: BackboneSpec
    image_size: int
    num_classes: int
    compute_s: float = 0.0  # time this arm spent computing, for its own wall time
    backbone: Backbone | None = None
    head: keras.Model | None = None
    mode: str = "features"
    _inputs: dict = field(default_factory=dict)  # split -> arrays the current net eats
    _features: dict = field(default_factory=dict)
    _net: keras.Model | None = None
    _step: object = None
    _predict_fns: dict = field(default_factory=dict)
    _depths_by_first: dict = field(default_factory=dict)  # boundaries a feature pass keeps
    _capture: tuple | None = None  # (firsts, net) of the feature pass that keeps them
    trained_backbone: bool = False
    should_stop: Callable[[], bool] = field(default=_never, repr=False)  # asked every batch

    @property
    def weights(self) -> str:
        return "imagenet" if self.name == "imagenet" else "random"

    @property
    def scratch(self) -> bool:
        """Random weights trained from scratch: everything trains, BN learns, from the start."""
        return self.name == "random" and self.config.random_policy == "scratch"

    def plans(self) -> list[PhasePlan]:
        """The arm's phases with epochs > 0."""
        c = self.config
        everything = ALL_BLOCKS
        if self.scratch:
            phases = [
                PhasePlan("feature_extraction", c.phase1.epochs, c.phase1.lr, everything),
                PhasePlan("fine_tuning", c.phase2.epochs, c.phase2.lr, everything),
            ]
        else:
            phases = [
                PhasePlan("feature_extraction", c.phase1.epochs, c.phase1.lr, 0),
                PhasePlan("fine_tuning", c.phase2.epochs, c.phase2.lr, c.phase2.unfreeze_blocks),
            ]
        return [p for p in phases if p.epochs > 0]

    def needs_backbone_now(self) -> bool:
        """Whether training can't start without the backbone loaded."""
        return self.scratch or self.config.augment or self.config.phase2.epochs > 0

    @property
    def trainable_params(self) -> int:
        """Parameters the current phase's optimizer updates (head and trainable blocks)."""
        return sum(int(np.prod(v.shape)) for v in self._net.trainable_variables)

    def ensure_backbone(self) -> Backbone:
        """Load the backbone (once) with this arm's weights."""
        if self.backbone is None:
            self._check_stop()
            start = time.perf_counter()
            self.backbone = load_layer(
                self.spec,
                weights=self.weights,
                seed=self.config.seed,
                bn_training=self.scratch,
                image_size=self.image_size,
                splittable=True,
                reuse_blocks=self.config.reuse_blocks,
            )
            self.compute_s += time.perf_counter() - start
        return self.backbone

    # --- phases ---------------------------------------------------------------------------

    def start_phase(self, plan: PhasePlan, dataset) -> str:
        """Prepare inputs, the trainable set and a fresh optimizer; return a log line."""
        if plan.frozen and not self.config.augment:
            self.mode = "features"
            note = self._prepare_features(dataset)
        elif not plan.frozen and not self.config.augment and not self.scratch:
            note = self._prepare_boundary(plan, dataset)
        else:
            self.mode = "images"
            why = "augmentation is on" if self.config.augment else "every block trains"
            note = f"full forward pass every batch ({why})"
            if plan.frozen and self.config.augment:
                note += "; the feature cache is bypassed because augmented images differ each epoch"
            elif self.config.augment and not self.scratch:
                note += "; the boundary cache is bypassed: augmented images differ each epoch"
        if self.mode != "features":
            self.ensure_backbone()
        if self.backbone is not None:
            self.backbone.set_unfreeze_blocks(plan.unfreeze_blocks)
        if self.head is None:
            self.head = self._build_head(self._feature_dim())
        self._net = self._make_net()
        self._compile(plan.lr)
        self.trained_backbone = self.trained_backbone or not plan.frozen
        return note

    def _build_head(self, dim: int) -> keras.Model:
        """The new head on ``dim`` features (a HydraNet builds one per task instead)."""
        return build_head(dim, self.num_classes, self.config.dropout, self.config.seed)

    def _feature_dim(self) -> int:
        if "train" in self._features:
            return int(self._features["train"].shape[-1])
        probe = np.zeros((1, self.image_size, self.image_size, 3), np.float32)
        return int(self.backbone(probe).shape[-1])

    def _feature_key(self) -> str:
        """The feature cache key of this arm's backbone (the boundary cache builds on it)."""
        return cache_key(
            self.spec,
            weights=self.weights,
            seed=self.config.seed,
            image_size=self.image_size,
            graph="keras" if self.spec.builtin else "hub",
            reuse_blocks=self.config.reuse_blocks,
        )

    def _prepare_features(self, dataset) -> str:
        """Pooled features for both splits, from the disk cache or computed (and stored)."""
        if "train" in self._features:
            self._inputs = dict(self._features)
            return "head trains on the backbone features"
        cache = FeatureCache(self._feature_key())
        notes, kept = [], set()
        for split, digests in (
            ("train", dataset.train_digests),
            ("validation", dataset.val_digests),
        ):
            features, missing = cache.get(digests)
            if features is None:
                self._check_stop()  # before decoding the images
                images = dataset.train_images if split == "train" else dataset.val_images
                todo = [digests[i] for i in missing]
                computed = self._feature_pass(images[missing], todo, dataset, kept)
                cache.put(todo, computed)
                features, _ = cache.get(digests)
            notes.append(f"{split} {len(digests) - len(missing)}/{len(digests)} cached")
            self._features[split] = features
        self._inputs = dict(self._features)
        note = "feature cache: " + ", ".join(notes) + "; the head trains on cached features"
        if kept:
            depths = ", ".join(str(d) for d in sorted(kept))
            note += (
                f"; the same pass kept the boundary activations for fine-tuning the top "
                f"{depths} block(s)"
            )
        return note

    def _feature_pass(self, images, digests: list[str], dataset, kept: set[int]) -> np.ndarray:
        """Features of ``images`` (their file digests ``digests``). Where this run (or the
        process, :func:`pipelines.training.boundary_cache.keep_depths`) will fine-tune at a
        depth whose boundary activations are not stored yet, the same forward pass also
        stores them (the bottom's output is on the way to the features), so fine-tuning
        later runs no bottom pass; ``kept`` collects those depths."""
        boundaries = self._boundaries_to_keep(dataset)
        if not boundaries:
            return self.backbone_features(images)
        start = time.perf_counter()
        net = self._capture_net(tuple(sorted(boundaries)))
        features, *acts = self._run(net, images, scale=True)
        for first, out in zip(sorted(boundaries), acts, strict=True):
            boundary_cache(boundaries[first]).put(digests, out)
        kept.update(self._depths_by_first.values())
        self.compute_s += time.perf_counter() - start
        return features

    def _boundaries_to_keep(self, dataset) -> dict[int, str]:
        """``{first trainable block: boundary cache key}`` of the fine-tuning depths whose
        activations a feature pass should store as well: this run's phase-2 depth and the
        process's extra depths, where the boundary cache would be used (a splittable
        built-in, frozen BatchNorm, no augmentation), fits ``BOUNDARY_MAX_BYTES`` (all of
        them together) and is not stored already for every image."""
        if self.config.augment or self.scratch:
            return {}
        depths = set(extra_depths())
        fine_tuning = [p for p in self.plans() if p.name == "fine_tuning" and not p.frozen]
        depths.update(p.unfreeze_blocks for p in fine_tuning if p.unfreeze_blocks is not None)
        if not depths:
            return {}
        backbone = self.ensure_backbone()
        if not backbone.can_split:
            return {}
        images = len(dataset.train_labels) + len(dataset.val_labels)
        digests = [*dataset.train_digests, *dataset.val_digests]
        out, total = {}, 0
        self._depths_by_first = {}
        for depth in sorted(depths):  # the shallowest (smallest) first, until the cap
            first = len(backbone.blocks) - depth
            if not 0 < first < len(backbone.blocks):
                continue
            shape = backbone.split(first)[0].compute_output_shape(
                (1, self.image_size, self.image_size, 3)
            )
            total += int(np.prod(shape[1:])) * 4 * images
            if total > BOUNDARY_MAX_BYTES:
                break
            key = boundary_key(self._feature_key(), first=first, unfreeze_blocks=depth)
            if boundary_cache(key).get(digests)[0] is None:
                out[first] = key
                self._depths_by_first[first] = depth
        return out

    def _capture_net(self, firsts: tuple[int, ...]) -> keras.Model:
        """The backbone as one model with outputs ``[features, activations below block
        firsts[0], ...]`` (the same blocks and variables as the backbone)."""
        if self._capture is not None and self._capture[0] == firsts:
            return self._capture[1]  # one net (one traced graph) for both splits
        blocks = self.backbone.block_models
        x = inputs = keras.Input((None, None, 3), name="images")
        taps = {}
        for i, block in enumerate(blocks):
            if i in firsts:
                taps[i] = x
            x = block(x)
        pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        net = keras.Model(inputs, [pooled, *(taps[f] for f in firsts)], name="capture")
        self._capture = (firsts, net)
        return net

    def _prepare_boundary(self, plan: PhasePlan, dataset) -> str:
        backbone = self.ensure_backbone()
        backbone.set_unfreeze_blocks(plan.unfreeze_blocks)
        first = len(backbone.blocks) - backbone.unfreeze_blocks
        if not backbone.can_split:
            self.mode = "images"
            return (
                "full forward pass every batch: this TF Hub model's graph can't be split at a "
                "block boundary (the built-ins can)"
            )
        if first <= 0:
            self.mode = "images"
            return "full forward pass every batch (every block trains)"
        bottom, top = backbone.split(first)
        shape = bottom.compute_output_shape((1, self.image_size, self.image_size, 3))
        per_image = int(np.prod(shape[1:])) * 4
        total = per_image * (len(dataset.train_labels) + len(dataset.val_labels))
        if total > BOUNDARY_MAX_BYTES:
            self.mode = "images"
            return (
                f"full forward pass every batch: the activations below block {first} would "
                f"need {total / 2**30:.1f} GB"
            )
        self.mode = "boundary"
        start = time.perf_counter()
        key = boundary_key(
            self._feature_key(), first=first, unfreeze_blocks=backbone.unfreeze_blocks
        )
        self._inputs, on_disk = boundary_activations(
            key, dataset, lambda images: self._run(bottom, images, scale=True)
        )
        self.compute_s += time.perf_counter() - start
        self._top = top
        return (
            f"boundary cache: blocks below {backbone.blocks[first].name} ran once "
            f"({total / 2**20:.0f} MB of activations; {on_disk}); "
            f"the top {backbone.unfreeze_blocks} train"
        )

    def _make_net(self) -> keras.Model:
        if self.mode == "features":
            return self.head
        if self.mode == "boundary":
            acts = keras.Input(self._inputs["train"].shape[1:], name="activations")
            return keras.Model(
                acts, self.head(self._top(acts, training=False)), name="top_and_head"
            )
        images = keras.Input((self.image_size, self.image_size, 3), name="images")
        return keras.Model(images, self.head(self.backbone(images)), name=f"{self.name}_model")

    def _compile(self, lr: float) -> None:
        net, optimizer = self._net, _optimizer(self.config.optimizer, lr)
        variables = list(net.trainable_variables)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        optimizer.build(variables)  # its slots now, so the step is traced only once

        @one_graph
        def step(x, y):
            with tf.GradientTape() as tape:
                logits = net(x, training=True)
                loss = loss_fn(y, logits)
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
            hits = tf.cast(tf.argmax(logits, -1, output_type=tf.int32) == y, tf.float32)
            return loss, tf.reduce_mean(hits)

        self._step = step

    # --- batches and predictions ------------------------------------------------------------

    def batch_inputs(self, idx: np.ndarray, images):
        """This arm's input for training batch ``idx``; ``images`` (shared, scaled) is a
        zero-argument callable so image batches are drawn only if some arm needs them."""
        if self.mode == "images":
            return images()
        return tf.constant(self._inputs["train"][idx])

    def train_step(self, x, y) -> tuple[float, float]:
        start = time.perf_counter()
        loss, acc = self._step(x, y)
        loss, acc = float(loss), float(acc)
        self.compute_s += time.perf_counter() - start
        return loss, acc

    def validation_logits(self, dataset) -> np.ndarray:
        """Inference-mode logits over the whole validation split."""
        start = time.perf_counter()
        if self.mode == "images":
            out = self._run(self._net, dataset.val_images, scale=True)
        else:
            out = self._run(self._net, self._inputs["validation"], scale=False)
        self.compute_s += time.perf_counter() - start
        return out

    def backbone_features(self, images: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self._run(self.ensure_backbone(), images, scale=True)
        self.compute_s += time.perf_counter() - start
        return out

    def _run(self, net, arrays: np.ndarray, *, scale: bool) -> np.ndarray:
        """``net`` in inference mode over ``arrays`` in batches, as one traced graph (an
        eager Keras call runs layer by layer, several times slower); a list of arrays for a
        net with several outputs. Raises
        :class:`StopRequested` before a batch once ``should_stop()`` says so."""
        fn = self._predict_fns.get(id(net))
        if fn is None:
            fn = self._predict_fns[id(net)] = one_graph(lambda x: net(x, training=False))
        outs = []
        for i in range(0, len(arrays), PREDICT_BATCH):
            self._check_stop()
            x = arrays[i : i + PREDICT_BATCH]
            x = scale_pixels(x, self.spec.scaling) if scale else tf.constant(x)
            outs.append(fn(x))
        if not outs:
            return np.zeros((0,), np.float32)
        if isinstance(outs[0], (list, tuple)):  # a net with several outputs: one array each
            return [np.concatenate([o[k].numpy() for o in outs]) for k in range(len(outs[0]))]
        return np.concatenate([o.numpy() for o in outs])

    def _check_stop(self) -> None:
        if self.should_stop():
            raise StopRequested

    # --- what a run keeps ---------------------------------------------------------------

    def save_weights(self, folder: Path, classes: list[str]) -> None:
        """The trained arm as ``arm.json`` plus ``.npz`` weights (no pickle): the head, and
        the backbone's variables when any of them trained. :mod:`pipelines.training.export` builds
        the inference SavedModel from these on demand."""
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "head.npz", *[v.numpy() for v in self.head.variables])
        if self.trained_backbone:
            np.savez(folder / "backbone.npz", *[v.numpy() for v in self.backbone.module_variables])
        meta = {
            "backbone": self.spec.id,
            "weights": self.weights,
            "seed": self.config.seed,
            "bn_training": self.scratch,
            "reuse_blocks": self.config.reuse_blocks,
            "image_size": self.image_size,
            "scaling": self.spec.scaling,
            "dropout": self.config.dropout,
            "classes": classes,
            "feature_dim": int(self.head.inputs[0].shape[-1]),
            "trained_backbone": self.trained_backbone,
        }
        (folder / "arm.json").write_text(json.dumps(meta, indent=1))
