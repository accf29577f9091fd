"""One arm of an experiment: a backbone (ImageNet or random weights) plus a new head.

An :class:`Arm` owns its Keras pieces and knows, per phase, which blocks train, whether
BatchNorm learns, and whether it can train on cached backbone features instead of images.
The training loop (:mod:`pipelines.training`) feeds every arm the same batches; this module
only turns a batch into an update or a prediction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
import tf_keras as keras

from pipelines.backbones import load_layer
from pipelines.backbones.spec import BackboneSpec
from pipelines.config import ExperimentConfig
from pipelines.pixels import scale_pixels

PREDICT_BATCH = 64


@dataclass
class PhasePlan:
    """What one arm does in one phase."""

    name: str  # "feature_extraction" or "fine_tuning"
    epochs: int
    lr: float
    train_top_blocks: int
    uses_features: bool  # frozen backbone, no augmentation: train the head on features


def _optimizer(name: str, lr: float) -> keras.optimizers.Optimizer:
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(lr)
    return keras.optimizers.Adam(lr)


@dataclass
class Arm:
    """``imagenet`` or ``random``: the same architecture, different initial weights."""

    name: str
    config: ExperimentConfig
    spec: BackboneSpec
    image_size: int
    num_classes: int
    backbone: object = None
    head: keras.Model | None = None
    model: keras.Model | None = None
    compute_s: float = 0.0  # time this arm spent computing, for its own wall time
    features: dict[str, np.ndarray] = field(default_factory=dict)
    _step: object = None
    _variables: list = field(default_factory=list)

    @property
    def scratch(self) -> bool:
        """Random weights trained from scratch: everything trains, BN learns, from the start."""
        return self.name == "random" and self.config.random_policy == "scratch"

    def build(self) -> None:
        """Load the backbone with this arm's weights and put a fresh, seeded head on it."""
        seed = self.config.seed
        self.backbone = load_layer(
            self.spec,
            weights="imagenet" if self.name == "imagenet" else "random",
            seed=seed,
            bn_training=self.scratch,
            image_size=self.image_size,
        )
        keras.utils.set_random_seed(seed)  # the same head for both arms
        dim = int(
            self.backbone(np.zeros((1, self.image_size, self.image_size, 3), np.float32)).shape[-1]
        )
        features = keras.Input((dim,), name="features")
        x = keras.layers.Dropout(self.config.dropout, seed=seed, name="dropout")(features)
        logits = keras.layers.Dense(
            self.num_classes,
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
            name="classifier",
        )(x)
        self.head = keras.Model(features, logits, name=f"{self.name}_head")
        images = keras.Input((self.image_size, self.image_size, 3), name="images")
        self.model = keras.Model(
            images, self.head(self.backbone(images)), name=f"{self.name}_model"
        )

    def plans(self) -> list[PhasePlan]:
        """The arm's phases; a phase with 0 epochs is left out."""
        c = self.config
        block_count = len(self.backbone.blocks)
        if self.scratch:
            first = PhasePlan(
                "feature_extraction", c.phase1.epochs, c.phase1.lr, block_count, False
            )
            second = PhasePlan("fine_tuning", c.phase2.epochs, c.phase2.lr, block_count, False)
        else:
            first = PhasePlan("feature_extraction", c.phase1.epochs, c.phase1.lr, 0, not c.augment)
            second = PhasePlan(
                "fine_tuning", c.phase2.epochs, c.phase2.lr, c.phase2.unfreeze_blocks, False
            )
        return [p for p in (first, second) if p.epochs > 0]

    def start_phase(self, plan: PhasePlan) -> None:
        """Set the trainable blocks and a fresh optimizer at the phase's learning rate."""
        self.backbone.set_train_top_blocks(plan.train_top_blocks)
        optimizer = _optimizer(self.config.optimizer, plan.lr)
        net = self.head if plan.uses_features else self.model
        variables = list(net.trainable_variables)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        @tf.function(reduce_retracing=True)
        def step(x, y):
            with tf.GradientTape() as tape:
                logits = net(x, training=True)
                loss = loss_fn(y, logits)
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
            hits = tf.cast(tf.argmax(logits, -1, output_type=tf.int32) == y, tf.float32)
            return loss, tf.reduce_mean(hits)

        self._step, self._variables = step, variables

    def train_step(self, x, y) -> tuple[float, float]:
        start = time.perf_counter()
        loss, acc = self._step(x, y)
        loss, acc = float(loss), float(acc)
        self.compute_s += time.perf_counter() - start
        return loss, acc

    def compute_features(self, split: str, images: np.ndarray) -> None:
        """Run the frozen backbone once over ``images`` (uint8) and keep the features."""
        start = time.perf_counter()
        out = [
            np.asarray(
                self.backbone(scale_pixels(images[i : i + PREDICT_BATCH], self.spec.scaling))
            )
            for i in range(0, len(images), PREDICT_BATCH)
        ]
        self.features[split] = np.concatenate(out) if out else np.zeros((0, 1), np.float32)
        self.compute_s += time.perf_counter() - start

    def logits(self, split: str, images: np.ndarray, *, uses_features: bool) -> np.ndarray:
        """Inference-mode logits for a whole split, from cached features or from images."""
        start = time.perf_counter()
        if uses_features:
            out = [np.asarray(self.head(self.features[split], training=False))]
        else:
            out = [
                np.asarray(
                    self.model(
                        scale_pixels(images[i : i + PREDICT_BATCH], self.spec.scaling),
                        training=False,
                    )
                )
                for i in range(0, len(images), PREDICT_BATCH)
            ]
        self.compute_s += time.perf_counter() - start
        return np.concatenate(out)

    def save_inference_model(self, path) -> None:
        """A SavedModel taking float RGB pixels in [0, 255] and returning class probabilities.

        The backbone's pixel scaling is inside, so users feed plain images; the input size
        is fixed to the training size. Signature ``serving_default``: ``images`` →
        ``probabilities``.
        """
        model, scaling, size = self.model, self.spec.scaling, self.image_size

        @tf.function(
            input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")]
        )
        def serve(images):
            return {
                "probabilities": tf.nn.softmax(model(scale_pixels(images, scaling), training=False))
            }

        module = tf.__internal__.tracking.AutoTrackable()
        module.variables = list(model.variables)
        module.serve = serve
        tf.saved_model.save(module, str(path), signatures={"serving_default": serve})
