"""The learning-rate range test (Smith 2017; fastai's ``lr_find``): which rate to try.

One short pass over the training batches with the learning rate rising exponentially from
``low`` to ``high``, one step per rate; the training loss of every step is recorded and
smoothed (an exponential moving average, bias-corrected, :data:`SMOOTHING`). The pass ends
early once the smoothed loss diverges: above :data:`DIVERGE_FACTOR` times the best so far,
or a loss that is not finite.

**The suggested rate** (:data:`RULE`): the rate at the smoothed loss's minimum, divided by
10 - one rule, named in the result and in the chart. Below the minimum the loss still falls
fast; at the minimum it is about to blow up. Where the loss instead falls to a flat floor
and stays there (a head on separable features: Horses or Humans' ImageNet features don't
diverge even at rate 10), the minimum is where the floor starts (:func:`suggest`).

**What trains** is an arm of the experiment (:class:`pipelines.training.arms.Arm`), built
exactly as a run builds it, for the phase asked:

* phase 1: a new head on the frozen backbone. It trains on the backbone's features from
  the feature cache (:mod:`pipelines.training.feature_cache`), so with a warm cache the
  backbone is never loaded;
* phase 2: the top ``phase2.unfreeze_blocks`` blocks and the head. The head starts where a
  run's would: trained for ``phase1.epochs`` epochs at ``phase1.lr`` first (the Keras
  guide's order: fine-tune only after the head has learned; a new head's large gradients
  would measure the head, not the blocks). With ``phase1.epochs=0`` it starts new, as the
  run's would.

The random arm under ``random_policy=scratch`` trains every block in both phases, as in a
run. The batches are the run's (same seeded order, augmentation draws included).
:func:`find_lr` is what ``python -m pipelines lr-find`` and the dashboard's background
finder (:mod:`pipelines.runs.lr_jobs`) call.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from pipelines import data as data_mod
from pipelines.backbones import resolve
from pipelines.data.pipeline import epoch_order, image_batch
from pipelines.errors import UserError
from pipelines.training.arms import Arm, StopRequested
from pipelines.training.config import ARMS, MAX_LR, ExperimentConfig, validate_against
from pipelines.training.preflight import check_experiment

DEFAULT_LOW = 1e-7
DEFAULT_HIGH = MAX_LR  # 10: the largest rate a config may hold
DEFAULT_STEPS = 100
MIN_STEPS, MAX_STEPS = 10, 1000
DIVERGE_FACTOR = 4.0  # the pass ends once the smoothed loss exceeds this times its best
SMOOTHING = 0.9  # the moving average's weight of the past (fastai: 0.98 over 100 steps)
RULE = "min/10"
RULE_TEXT = "the rate at the smoothed loss's minimum (where a flat floor starts), divided by 10"
FLOOR_TOLERANCE = 0.05  # of the fall: where a flat floor of the loss starts counts as its minimum
MIN_POINTS = 5  # fewer recorded steps suggest nothing
PHASES = (1, 2)
REPORT_EVERY_S = 0.5


def _never() -> bool:
    return False


@dataclass
class Sweep:
    """The points of one range test and how it ended: ``completed`` (every step),
    ``diverged`` (ended early, the loss blew up) or ``stopped`` (on request)."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    ended: str = "completed"


def check_range(low: float, high: float, steps: int) -> None:
    """Refuse a range the test can't sweep, naming the option."""
    for name, value in (("low", low), ("high", high)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise UserError(f"--{name}: must be a positive learning rate (got {value!r})")
    if low >= high:
        raise UserError(
            f"--low {low:g} is not below --high {high:g}: the rate rises from low to high; "
            f"e.g. --low 1e-7 --high 10"
        )
    if high > MAX_LR:
        raise UserError(f"--high: at most {MAX_LR:g}, the largest rate a config may hold")
    if not MIN_STEPS <= steps <= MAX_STEPS:
        raise UserError(f"--steps: between {MIN_STEPS} and {MAX_STEPS} (got {steps})")


def rates(low: float, high: float, steps: int) -> np.ndarray:
    """``steps`` rates from ``low`` to ``high``, each a constant factor above the last."""
    return low * (high / low) ** (np.arange(steps) / (steps - 1))


def range_test(
    step: Callable[[float], float],
    *,
    low: float = DEFAULT_LOW,
    high: float = DEFAULT_HIGH,
    steps: int = DEFAULT_STEPS,
    should_stop: Callable[[], bool] = _never,
    on_point: Callable[[Sweep], None] | None = None,
) -> Sweep:
    """Call ``step(lr)`` (one training step at ``lr``; returns its loss) for each rate of
    :func:`rates` until done, diverged or ``should_stop()``; ``on_point`` sees the sweep
    after every step."""
    check_range(low, high, steps)
    sweep, average, best = Sweep(), 0.0, math.inf
    for i, lr in enumerate(rates(low, high, steps)):
        if should_stop():
            sweep.ended = "stopped"
            break
        loss = float(step(float(lr)))
        if not math.isfinite(loss):
            sweep.ended = "diverged"
            break
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        smoothed = average / (1 - SMOOTHING ** (i + 1))
        sweep.lrs.append(float(lr))
        sweep.losses.append(loss)
        sweep.smoothed.append(smoothed)
        if on_point is not None:
            on_point(sweep)
        best = min(best, smoothed)
        if smoothed > DIVERGE_FACTOR * best:
            sweep.ended = "diverged"
            break
    return sweep


def suggest(sweep: Sweep) -> float | None:
    """:data:`RULE` applied to ``sweep``: the rate at the smoothed loss's minimum over 10;
    None with fewer than :data:`MIN_POINTS` points or for a stopped sweep.

    The minimum is where the smoothed loss first comes within :data:`FLOOR_TOLERANCE` of
    the fall to its lowest value: a loss that falls to a flat floor (separable features,
    where even rate 10 doesn't diverge) counts from where the floor starts, not from the
    range's end, where the moving average still creeps down."""
    if sweep.ended == "stopped" or len(sweep.smoothed) < MIN_POINTS:
        return None
    smoothed = np.asarray(sweep.smoothed)
    lowest = int(np.argmin(smoothed))
    fall = float(smoothed[: lowest + 1].max() - smoothed[lowest])
    near = np.flatnonzero(smoothed[: lowest + 1] <= smoothed[lowest] + FLOOR_TOLERANCE * fall)
    return sweep.lrs[int(near[0])] / 10


# --- the experiment's arm -------------------------------------------------------------------


class _SettableRate(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate the range test sets before each step: the optimizer reads the
    variable inside the arm's traced step, so no retracing and no new optimizer."""

    def __init__(self, lr: float) -> None:
        self.value = tf.Variable(lr, dtype=tf.float32, trainable=False, name="finder_lr")

    def __call__(self, step):
        return self.value

    def get_config(self) -> dict:
        return {"lr": float(self.value.numpy())}


def check_request(config: ExperimentConfig, phase: int, arm: str) -> None:
    """Refuse a finder that can't run, before anything loads."""
    if phase not in PHASES:
        raise UserError(
            f"--phase: 1 (the head on the frozen backbone) or 2 (fine-tuning), not {phase!r}"
        )
    if arm not in ARMS:
        raise UserError(f"--arm: {arm!r} is not one of {', '.join(ARMS)}")
    if phase == 2 and config.phase2.unfreeze_blocks == 0:
        raise UserError(
            "phase2.unfreeze_blocks is 0: a phase-2 finder needs blocks to unfreeze; set "
            "phase2.unfreeze_blocks to 1 or more, or find the head's rate with --phase 1"
        )


def _finder_config(config: ExperimentConfig, phase: int) -> ExperimentConfig:
    """``config`` with at least one epoch in the phase asked (its plans then include it)."""
    copy = ExperimentConfig.from_dict(config.to_dict())
    target = copy.phase1 if phase == 1 else copy.phase2
    target.epochs = max(target.epochs, 1)
    return copy.validate()


def _batches(config: ExperimentConfig, dataset, scaling: str, first_epoch: int) -> Iterator:
    """``(idx, labels, images)`` of the run's training batches from ``first_epoch`` on,
    epoch after epoch; ``images`` draws the batch's pixels only if called."""
    n, bs = len(dataset.train_labels), config.batch_size
    epoch = first_epoch
    while True:
        order = epoch_order(config.seed, epoch, n)
        for step in range(math.ceil(n / bs)):
            idx = order[step * bs : (step + 1) * bs]

            def images(idx=idx, epoch=epoch, step=step):
                return image_batch(
                    dataset.train_images[idx],
                    scaling,
                    augment=config.augment,
                    seed=config.seed,
                    epoch=epoch,
                    step=step,
                )

            yield idx, tf.constant(dataset.train_labels[idx]), images
        epoch += 1


def find_lr(
    config: ExperimentConfig,
    *,
    phase: int = 1,
    arm: str = "imagenet",
    low: float = DEFAULT_LOW,
    high: float = DEFAULT_HIGH,
    steps: int = DEFAULT_STEPS,
    should_stop: Callable[[], bool] = _never,
    progress: Callable[[dict], None] | None = None,
    log: Callable[[str], None] = lambda message: None,
    extract_dir: Path | None = None,
) -> dict:
    """The range test for ``arm`` in ``phase`` of ``config``; returns the result
    (:func:`result_dict`). ``progress`` gets the partial result at most every 0.5 s (and
    the points so far on a stop); ``should_stop`` is asked before every step and every
    inference batch. Raises :class:`UserError` for inputs that can't be tested."""
    started = time.perf_counter()
    check_experiment(config)  # the config, backbone and data set's cheap checks, as for a run
    check_request(config, phase, arm)
    check_range(low, high, steps)
    config = _finder_config(config, phase)
    spec = resolve(config.backbone)
    size = config.image_size or spec.input_size
    with tempfile.TemporaryDirectory(prefix="lr-find-") as tmp:
        log(f"loading data set {config.dataset!r} at {size}x{size}")
        dataset = data_mod.load_dataset(
            config.dataset,
            image_size=size,
            train_per_class=config.train_per_class,
            seed=config.seed,
            extract_dir=extract_dir or Path(tmp) / "data",
            lazy=True,
        )
        validate_against(config, block_count=None, train_images=len(dataset.train_labels))
        unit = Arm(arm, config, spec, size, dataset.num_classes, should_stop=should_stop)
        meta = {
            "phase": phase,
            "arm": arm,
            "backbone": config.backbone,
            "dataset": config.dataset,
            "image_size": size,
            "optimizer": config.optimizer,
            "low": low,
            "high": high,
            "steps_max": steps,
            "head": "new",
            "notes": [],
        }
        sweep = Sweep()
        try:
            if phase == 2 and not unit.scratch:
                validate_against(
                    config,
                    block_count=len(unit.ensure_backbone().blocks),
                    train_images=len(dataset.train_labels),
                )
            sweep = _sweep(
                unit, config, dataset, phase, meta, low, high, steps, should_stop, progress, log
            )
        except StopRequested:
            sweep.ended = "stopped"
    meta["wall_s"] = round(time.perf_counter() - started, 2)
    return result_dict(meta, sweep)


def _sweep(unit, config, dataset, phase, meta, low, high, steps, should_stop, progress, log):
    plans = {p.name: p for p in unit.plans()}
    batches = _batches(config, dataset, unit.spec.scaling, first_epoch=0)
    if phase == 2 and config.phase1.epochs > 0:
        # The run's head first: phase 1's epochs at phase 1's rate.
        note = unit.start_phase(plans["feature_extraction"], dataset)
        meta["notes"].append(f"phase 1: {note}")
        per_epoch = math.ceil(len(dataset.train_labels) / config.batch_size)
        log(f"training the head first: {config.phase1.epochs} epoch(s) at {config.phase1.lr:g}")
        for _ in range(config.phase1.epochs * per_epoch):
            if should_stop():
                raise StopRequested
            idx, y, images = next(batches)
            unit.train_step(unit.batch_inputs(idx, images), y)
        meta["head"] = f"trained {config.phase1.epochs} epoch(s) at phase1.lr {config.phase1.lr:g}"
    name = "feature_extraction" if phase == 1 else "fine_tuning"
    rate = _SettableRate(low)
    note = unit.start_phase(dataclasses.replace(plans[name], lr=rate), dataset)
    meta["notes"].append(note)
    log(note)

    def step(lr: float) -> float:
        rate.value.assign(lr)
        idx, y, images = next(batches)
        loss, _ = unit.train_step(unit.batch_inputs(idx, images), y)
        return loss

    last = [0.0]

    def on_point(sweep: Sweep) -> None:
        now = time.perf_counter()
        if progress is not None and now - last[0] >= REPORT_EVERY_S:
            last[0] = now
            progress(result_dict(meta, sweep, partial=True))

    log(f"range test: {steps} steps from {low:g} to {high:g}")
    return range_test(
        step, low=low, high=high, steps=steps, should_stop=should_stop, on_point=on_point
    )


def result_dict(meta: dict, sweep: Sweep, *, partial: bool = False) -> dict:
    """What a finder returns and writes: ``phase``, ``suggested_lr`` (None while partial,
    stopped or too short), ``rule``, ``lrs``, ``losses``, ``smoothed``, ``ended`` and
    ``meta``'s facts (arm, backbone, data set, range, what the head started from)."""
    return {
        **meta,
        "suggested_lr": None if partial else suggest(sweep),
        "rule": RULE,
        "rule_text": RULE_TEXT,
        "ended": "running" if partial else sweep.ended,
        "steps": len(sweep.lrs),
        "lrs": list(sweep.lrs),
        "losses": list(sweep.losses),
        "smoothed": list(sweep.smoothed),
    }
