"""Run an experiment: the Keras transfer-learning recipe, both arms in lockstep.

The recipe, as in the Keras transfer-learning guide:

1. **Feature extraction** (``phase1``): the backbone frozen, only the new head trains.
2. **Fine-tuning** (``phase2``): the top ``unfreeze_blocks`` blocks train too, at the lower
   ``phase2.lr``, with BatchNorm kept in inference mode.

Both arms (``imagenet``, ``random``) see identical batches in identical order, with the
same augmentation draws: each batch is drawn once and handed to every arm in turn, so their
curves advance together and the only difference between them is the initialisation. With
the backbone frozen and no augmentation, an arm trains its head on backbone features
computed once per image; the maths is the same, because BatchNorm is in inference mode.

:func:`run_experiment` is what a worker process calls; it reports through the run store.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipelines import data as data_mod
from pipelines.backbones import resolve
from pipelines.backbones.blocks import ALL_BLOCKS
from pipelines.data.pipeline import epoch_order, image_batch
from pipelines.data.tasks import has_tasks
from pipelines.numerics import balanced_accuracy, chance_accuracy, log_softmax, softmax
from pipelines.training.arms import Arm, PhasePlan, StopRequested
from pipelines.training.config import (
    PHASE_TITLES,
    PREPARING,
    ExperimentConfig,
    validate_against,
)

BATCH_LOG_EVERY_S = 0.5  # batch rows at most this often per arm (and at every epoch end)


@dataclass
class _ArmState:
    arm: Arm
    plans: list[PhasePlan]
    batches_digest: hashlib._Hash = field(default_factory=hashlib.sha1)
    history: list[dict] = field(default_factory=list)
    epochs_done: int = 0
    prep_s: dict = field(default_factory=dict)  # one-off work before each phase's epochs
    last_logits: np.ndarray | None = None  # the last epoch's validation, for the results


def run_experiment(
    run_id: str,
    config: ExperimentConfig,
    store,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict:
    """Train ``config``'s arms, writing metrics, events, progress and results to ``store``.

    Returns the summary (also stored). Checks ``should_stop()`` after every training batch
    and before every inference batch (feature, boundary and validation passes) and, when it
    says so, returns early with what exists (models and results included). Raises
    :class:`UserError` for inputs that can't be trained.
    """
    started = time.perf_counter()
    spec = resolve(config.backbone)
    size = config.image_size or spec.input_size
    artefacts = Path(store.artefact_dir(run_id))
    if has_tasks(config.dataset):  # several tasks: a HydraNet or one network per task
        from pipelines.training.hydra import run_hydra

        return run_hydra(run_id, config, store, spec, size, artefacts, started, should_stop)

    # The data set, checked and split; its pixels decode on first use (if at all).
    dataset = _load_data(run_id, config, store, size, artefacts)

    # The arms, each checked against its backbone when training needs it loaded now.
    try:
        arms = _make_arms(run_id, config, store, spec, size, dataset, should_stop)
    except StopRequested:  # while loading a backbone: nothing trained, nothing to keep
        summary = {"arms": {}, "stopped": True, "wall_s": round(time.perf_counter() - started, 2)}
        store.set_summary(run_id, summary)
        return summary
    writers = _tensorboard_writers(arms, artefacts)

    # Feature extraction, then fine-tuning: both arms in lockstep, epoch by epoch.
    loop = _Loop(run_id, config, store, dataset, arms, writers, started, should_stop)
    _run_phases(loop, config)

    # What the run keeps: results, weights and the summary, also after a stop.
    summary = _finish(
        run_id, store, arms, dataset, artefacts, loop.stopped, time.perf_counter() - started
    )
    for w in writers.values():
        w.flush()
    return summary


def _load_data(run_id, config: ExperimentConfig, store, size: int, artefacts: Path):
    """The experiment's data set at ``size``, with its skipped files and notes logged."""
    store.log_event(run_id, f"loading data set {config.dataset!r} at {size}x{size}")
    dataset = data_mod.load_dataset(
        config.dataset,
        image_size=size,
        train_per_class=config.train_per_class,
        seed=config.seed,
        extract_dir=artefacts / "data",
        lazy=True,
    )
    if dataset.skipped:
        store.log_event(run_id, f"skipped {len(dataset.skipped)} unusable file(s)")
    for note in dataset.notes:
        store.log_event(run_id, note)
    # Known before the first epoch: the live charts mark the chance level from it.
    store.set_summary(run_id, _data_facts(dataset))
    return dataset


def _data_facts(dataset) -> dict:
    """What the summary says about the data: classes, image size, the validation split's
    class counts and the accuracy of always answering its majority class (the chance level
    the charts mark; balanced accuracy is shown beside accuracy where it is above 1/classes).
    """
    return {
        "classes": dataset.classes,
        "image_size": dataset.image_size,
        "val_class_counts": np.bincount(
            dataset.val_labels, minlength=len(dataset.classes)
        ).tolist(),
        "chance_accuracy": chance_accuracy(dataset.val_labels),
    }


def _make_arms(
    run_id, config: ExperimentConfig, store, spec, size: int, dataset, should_stop
) -> list[_ArmState]:
    """One state per arm in ``config.arms``; refuses what the backbone or data can't take."""
    arms: list[_ArmState] = []
    for name in config.arms:
        arm = Arm(name, config, spec, size, dataset.num_classes, should_stop=should_stop)
        if arm.needs_backbone_now():
            store.log_event(run_id, f"{name} arm: loading backbone {spec.id}")
            validate_against(
                config,
                block_count=len(arm.ensure_backbone().blocks),
                train_images=len(dataset.train_labels),
            )
        arms.append(_ArmState(arm, arm.plans()))
    validate_against(config, block_count=None, train_images=len(dataset.train_labels))
    return arms


def _tensorboard_writers(arms: list[_ArmState], artefacts: Path) -> dict:
    """A TensorBoard event file writer per arm, under ``artefacts/tensorboard/<arm>``."""
    return {
        s.arm.name: tf.summary.create_file_writer(str(artefacts / "tensorboard" / s.arm.name))
        for s in arms
    }


def _run_phases(loop: _Loop, config: ExperimentConfig) -> None:
    """Feature extraction, then fine-tuning (each if it has epochs), until a stop."""
    for phase_name, phase in (
        ("feature_extraction", config.phase1),
        ("fine_tuning", config.phase2),
    ):
        if phase.epochs and not loop.run_phase(phase_name, phase.epochs):
            break


class _Loop:
    """The epochs of one experiment: batches drawn once and fed to every arm in turn."""

    def __init__(self, run_id, config, store, dataset, arms, writers, started, should_stop):
        self.run_id, self.config, self.store, self.dataset = run_id, config, store, dataset
        self.arms, self.writers, self.started, self.should_stop = (
            arms,
            writers,
            started,
            should_stop,
        )
        self.n = len(dataset.train_labels)
        self.scaling = arms[0].arm.spec.scaling
        self.steps = math.ceil(self.n / config.batch_size)
        self.total_epochs = config.phase1.epochs + config.phase2.epochs
        self.epoch = 0  # global, across phases
        self.stopped = False
        self.step_times: list[float] = []
        self.last_log = 0.0

    def run_phase(self, phase_name: str, epochs: int) -> bool:
        """Train ``epochs`` epochs of ``phase_name``; False if a stop was requested (after a
        training batch, or within a feature, boundary or validation pass)."""
        self.store.log_event(self.run_id, PREPARING[phase_name])
        try:
            for s in self.arms:
                self._start_phase(s, _plan(s, phase_name))
            for _ in range(epochs):
                if not self._train_epoch(phase_name):
                    break
                self._validate(phase_name)
                self.epoch += 1
            else:
                return True
        except StopRequested:
            self.store.log_event(self.run_id, "stop requested during an inference pass")
        self.stopped = True
        return False

    def _start_phase(self, s: _ArmState, plan: PhasePlan) -> None:
        before = s.arm.compute_s
        note = s.arm.start_phase(plan, self.dataset)
        s.prep_s[plan.name] = round(s.arm.compute_s - before, 3)
        trainable = s.arm.trainable_params
        blocks = "all" if plan.unfreeze_blocks is ALL_BLOCKS else str(plan.unfreeze_blocks)
        self.store.log_event(
            self.run_id,
            f"{s.arm.name} arm: {PHASE_TITLES[plan.name]} started, {blocks} backbone "
            f"block(s) trainable, lr {plan.lr:g}, {trainable:,} trainable parameters; {note}",
        )

    def _train_epoch(self, phase_name: str) -> bool:
        config, dataset, bs = self.config, self.dataset, self.config.batch_size
        order = epoch_order(config.seed, self.epoch, self.n)
        self.epoch_start = {s.arm.name: s.arm.compute_s for s in self.arms}
        self.sums = {s.arm.name: np.zeros(3) for s in self.arms}
        for step in range(self.steps):
            t0 = time.perf_counter()
            idx = order[step * bs : (step + 1) * bs]
            y = tf.constant(dataset.train_labels[idx])
            drawn = []

            def images(idx=idx, step=step, drawn=drawn):  # drawn once, shared by every arm
                if not drawn:
                    drawn.append(
                        image_batch(
                            dataset.train_images[idx],
                            self.scaling,
                            augment=config.augment,
                            seed=config.seed,
                            epoch=self.epoch,
                            step=step,
                        )
                    )
                return drawn[0]

            results = {}
            for s in self.arms:
                x = s.arm.batch_inputs(idx, images)
                s.batches_digest.update(idx.tobytes())
                results[s.arm.name] = s.arm.train_step(x, y)
                self.sums[s.arm.name] += (
                    results[s.arm.name][0] * len(idx),
                    results[s.arm.name][1] * len(idx),
                    len(idx),
                )
            self.step_times.append(time.perf_counter() - t0)
            self._report(phase_name, step, results)
            if self.should_stop():
                return False
        return True

    def _report(self, phase_name: str, step: int, results: dict) -> None:
        """Batch rows and progress for all arms at the same steps, at most every 0.5 s."""
        now = time.perf_counter()
        if now - self.last_log < BATCH_LOG_EVERY_S and step != self.steps - 1:
            return
        self.last_log = now
        remaining = (self.total_epochs - self.epoch) * self.steps - step - 1
        eta = remaining * float(np.mean(self.step_times[-20:]))
        for name, (loss, acc) in results.items():
            self.store.log_batch(
                self.run_id,
                name,
                phase_name,
                self.epoch,
                step,
                loss,
                acc,
                now - self.started,
                global_step=self.epoch * self.steps + step,
            )
            self.store.set_progress(
                self.run_id,
                name,
                {
                    "phase": phase_name,
                    "epoch": self.epoch,
                    "epochs_total": self.total_epochs,
                    "step": step + 1,
                    "steps_per_epoch": self.steps,
                    "eta_s": round(eta, 1),
                },
            )

    def _validate(self, phase_name: str) -> None:
        for s in self.arms:
            logits = s.arm.validation_logits(self.dataset)
            s.last_logits = logits
            val_loss, val_acc = _loss_and_accuracy(logits, self.dataset.val_labels)
            val_balanced = balanced_accuracy(logits.argmax(axis=1), self.dataset.val_labels)
            loss_sum, acc_sum, count = self.sums[s.arm.name]
            epoch_s = s.arm.compute_s - self.epoch_start[s.arm.name]
            row = {
                "phase": phase_name,
                "epoch": self.epoch,
                "loss": loss_sum / count,
                "accuracy": acc_sum / count,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "val_balanced_accuracy": val_balanced,
                "epoch_s": epoch_s,
                "images_per_s": self.n / epoch_s if epoch_s > 0 else None,
            }
            s.history.append(row)
            s.epochs_done += 1
            self.store.log_epoch(self.run_id, s.arm.name, **row)
            with self.writers[s.arm.name].as_default(step=self.epoch):
                for key in (
                    "loss",
                    "accuracy",
                    "val_loss",
                    "val_accuracy",
                    "val_balanced_accuracy",
                ):
                    tf.summary.scalar(key, row[key])


def _plan(s: _ArmState, phase_name: str) -> PhasePlan:
    return next(p for p in s.plans if p.name == phase_name)


def _loss_and_accuracy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    log_probs = log_softmax(logits)
    loss = float(-log_probs[np.arange(len(labels)), labels].mean())
    return loss, float((logits.argmax(axis=1) == labels).mean())


def _finish(run_id, store, arms, dataset, artefacts: Path, stopped: bool, wall_s: float) -> dict:
    """Per arm: confusion matrix, per-image predictions, the trained weights; the summary."""
    summary: dict = {"arms": {}, "stopped": stopped, "wall_s": round(wall_s, 2)}
    for s in arms:
        if s.arm.head is None:  # stopped before its first phase began: nothing to keep
            continue
        if s.last_logits is not None or not stopped:  # a stop needn't wait for validation
            store.save_result(run_id, s.arm.name, _arm_result(s, dataset))
        s.arm.save_weights(artefacts / s.arm.name, dataset.classes)
        summary["arms"][s.arm.name] = _arm_summary(s)
        store.log_event(run_id, f"{s.arm.name} arm: saved the trained weights")
    summary.update(_data_facts(dataset))
    store.set_summary(run_id, summary)
    return summary


def _arm_result(s: _ArmState, dataset) -> dict:
    """The arm's confusion matrix and per-image validation predictions, as stored."""
    classes = dataset.classes
    # The last completed epoch's validation: the results match the curves' last point,
    # and a stop needn't wait for another pass over the validation images.
    logits = s.last_logits if s.last_logits is not None else s.arm.validation_logits(dataset)
    probs = softmax(logits)
    predicted = probs.argmax(axis=1)
    confusion = np.zeros((len(classes), len(classes)), int)
    for truth, guess in zip(dataset.val_labels, predicted, strict=True):
        confusion[truth, guess] += 1
    return {
        "classes": classes,
        "confusion": confusion.tolist(),
        "predictions": [
            {
                "path": str(path),
                "label": int(label),
                "predicted": int(guess),
                "probabilities": [round(float(p), 5) for p in row],
            }
            for path, label, guess, row in zip(
                dataset.val_paths, dataset.val_labels, predicted, probs, strict=True
            )
        ],
    }


def _arm_summary(s: _ArmState) -> dict:
    """The arm's line in the run summary: accuracies, epochs, time, mode."""
    val = [h["val_accuracy"] for h in s.history]
    balanced = [h["val_balanced_accuracy"] for h in s.history]
    return {
        "final_val_accuracy": val[-1] if val else None,
        "best_val_accuracy": max(val) if val else None,
        "final_val_balanced_accuracy": balanced[-1] if balanced else None,
        "best_val_balanced_accuracy": max(balanced) if balanced else None,
        "epochs": s.epochs_done,
        "wall_s": round(s.arm.compute_s, 2),
        "batches_digest": s.batches_digest.hexdigest(),
        "mode": s.arm.mode,
        "prep_s": s.prep_s,
    }
