"""The sweep form as data, without Streamlit: widget values <-> :class:`SweepSpec`.

The fixed part of a sweep is the Setup form's config (:func:`dashboard.form.config_from_values`
of the same Session State), so a sweep varies what Setup shows. Each sweepable config key
(:data:`DIMENSIONS`, dotted names as in Setup and ``--set``) has a mode: ``fixed`` (Setup's
value), ``range`` (low..high: integers, learning-rate steps on a log scale, or floats) or
``list`` (chosen values). The widgets' keys are ``sweep.mode.<key>``, ``sweep.range.<key>``
(a ``(low, high)`` pair), ``sweep.log.<key>`` and ``sweep.list.<key>``; the sweep's own
settings are ``sweep.sampler``, ``sweep.trials``, ``sweep.objective``, ``sweep.pruner``,
``sweep.seed`` and ``sweep.workers``. :func:`spec_from_values` builds the spec and validates
it with :meth:`SweepSpec.validate`, the one place a sweep is checked.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dashboard.form import ALL, LR_OPTIONS, OPTIMIZERS, RANDOM_POLICIES, TRAIN_PER_CLASS_OPTIONS
from pipelines.sweeps import OBJECTIVES as OBJECTIVES
from pipelines.sweeps import PRUNERS as PRUNERS
from pipelines.sweeps import SAMPLERS as SAMPLERS
from pipelines.sweeps import Param, SweepSpec
from pipelines.training.config import ExperimentConfig

MODES = ("fixed", "range", "list")
ARM_CHOICES = ("imagenet", "random", "imagenet,random")
IMAGE_SIZES = (32, 64, 96, 128, 160, 192, 224, 256, 320)
BATCH_SIZES = (8, 16, 32, 64, 128)
DROPOUTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
MAX_EPOCH_STEPS = 20  # the epoch sliders' range in a sweep
SEEDS = tuple(range(10))
# Setup's default block count where the backbone's blocks are not known yet.
DEFAULT_BLOCKS = 18


@dataclass(frozen=True)
class Dimension:
    """A sweepable config key: the values its list picks from (``options``) and how its
    range is chosen: ``"int"`` (a slider of whole numbers between the first and last
    option), ``"steps"`` (a slider over ``options``, log scale: the learning rates),
    ``"float"`` (a slider of floats) or None (a list only)."""

    key: str
    options: tuple[Any, ...]
    ranged: str | None = None

    @property
    def modes(self) -> tuple[str, ...]:
        return MODES if self.ranged else ("fixed", "list")


def dimensions(
    block_count: int | None = None,
    backbones: Sequence[str] = ("efficientnet_lite0",),
    datasets: Sequence[str] = (),
) -> list[Dimension]:
    """The sweepable keys in Setup's order, their options for this backbone (``block_count``
    blocks) and these data sets and backbones."""
    blocks = block_count or DEFAULT_BLOCKS
    return [
        Dimension("dataset", tuple(datasets)),
        Dimension("train_per_class", tuple(TRAIN_PER_CLASS_OPTIONS)),
        Dimension("backbone", tuple(backbones)),
        Dimension("image_size", IMAGE_SIZES),
        Dimension("reuse_blocks", tuple(range(1, blocks + 1)), "int"),
        Dimension("arms", ARM_CHOICES),
        Dimension("random_policy", RANDOM_POLICIES),
        Dimension("phase1.epochs", tuple(range(MAX_EPOCH_STEPS + 1)), "int"),
        Dimension("phase1.lr", tuple(LR_OPTIONS), "steps"),
        Dimension("phase2.epochs", tuple(range(MAX_EPOCH_STEPS + 1)), "int"),
        Dimension("phase2.lr", tuple(LR_OPTIONS), "steps"),
        Dimension("phase2.unfreeze_blocks", tuple(range(blocks + 1)), "int"),
        Dimension("optimizer", OPTIMIZERS),
        Dimension("batch_size", BATCH_SIZES),
        Dimension("dropout", DROPOUTS, "float"),
        Dimension("augment", (False, True)),
        Dimension("seed", SEEDS, "int"),
    ]


def mode_key(key: str) -> str:
    return f"sweep.mode.{key}"


def range_key(key: str) -> str:
    return f"sweep.range.{key}"


def log_key(key: str) -> str:
    return f"sweep.log.{key}"


def list_key(key: str) -> str:
    return f"sweep.list.{key}"


SETTINGS_DEFAULTS: dict[str, Any] = {
    "sweep.sampler": "grid",
    "sweep.trials": None,  # a grid: every point; random/TPE: asked for
    "sweep.objective": "best",
    "sweep.pruner": "median",
    "sweep.seed": 0,
    "sweep.workers": None,  # what MAX_RUNNING_EXPERIMENTS allows
}


def default_values(dims: Iterable[Dimension], fixed: ExperimentConfig) -> dict[str, Any]:
    """Session State for every sweep widget: each key fixed, its range and list starting
    around Setup's value (``fixed``)."""
    out: dict[str, Any] = dict(SETTINGS_DEFAULTS)
    for dim in dims:
        current = value_of(fixed, dim.key)
        out[mode_key(dim.key)] = "fixed"
        out[list_key(dim.key)] = (
            [_option(dim, current)] if _option(dim, current) is not None else []
        )
        if dim.ranged:
            out[range_key(dim.key)] = _default_range(dim, current)
            out[log_key(dim.key)] = dim.ranged == "steps"
    return out


def value_of(config: ExperimentConfig, key: str) -> Any:
    """The config's value of a dotted key (a list-valued key's as ``a,b``, as the engine
    keeps a choice of it)."""
    target: Any = config
    for part in key.split("."):
        target = getattr(target, part)
    return ",".join(target) if isinstance(target, list) else target


def _option(dim: Dimension, value: Any) -> Any:
    """``value`` as the list widget shows it (None -> ``all``), if it is one of its options."""
    if dim.key == "train_per_class" and value is None:
        return ALL
    if dim.ranged == "steps" and isinstance(value, float):
        value = min(dim.options, key=lambda o: abs(math.log10(o) - math.log10(value)))
    return value if value in dim.options else None


def _default_range(dim: Dimension, current: Any) -> tuple[Any, Any]:
    options = list(dim.options)
    if dim.ranged == "float":
        return (0.0, 0.5)
    if dim.ranged == "steps":
        i = options.index(_option(dim, current) or options[len(options) // 2])
        return (options[max(i - 3, 0)], options[min(i + 3, len(options) - 1)])
    low = current if isinstance(current, int) and current in options else options[0]
    return (low, min(low + 3, options[-1]))


def params_from_values(values: Mapping[str, Any], dims: Iterable[Dimension]) -> list[Param]:
    """The space the widgets stand for: one :class:`Param` per key not fixed, typed and
    checked by the engine (:class:`UserError` naming the key)."""
    params = []
    for dim in dims:
        mode = values.get(mode_key(dim.key), "fixed")
        if mode == "range" and dim.ranged:
            low, high = values.get(range_key(dim.key)) or (None, None)
            kind = "int" if dim.ranged == "int" else "float"
            log = bool(values.get(log_key(dim.key))) and kind == "float"
            params.append(
                Param.from_dict(
                    {"key": dim.key, "kind": kind, "low": low, "high": high, "log": log}
                )
            )
        elif mode == "list":
            chosen = [None if v == ALL else v for v in values.get(list_key(dim.key)) or []]
            params.append(
                Param.from_dict({"key": dim.key, "kind": "categorical", "choices": chosen})
            )
    return params


def spec_from_values(
    values: Mapping[str, Any], dims: Iterable[Dimension], fixed: ExperimentConfig
) -> SweepSpec:
    """The validated sweep the form shows (:meth:`SweepSpec.validate`): the space from the
    widgets, ``fixed`` (Setup's config) as its fixed part; :class:`UserError` if not."""
    trials = values.get("sweep.trials")
    return SweepSpec(
        params=tuple(params_from_values(values, dims)),
        fixed=fixed.to_dict(),
        sampler=values.get("sweep.sampler") or "grid",
        trials=int(trials) if trials is not None else None,
        objective=values.get("sweep.objective") or "best",
        pruner=values.get("sweep.pruner") or "median",
        seed=int(values.get("sweep.seed") or 0),
    ).validate()


def axes(spec: SweepSpec) -> dict[str, list[Any]]:
    """Each discrete parameter's values (a grid's axes, for the heat map's cells)."""
    out = {}
    for p in spec.params:
        if p.kind == "categorical":
            out[p.key] = list(p.choices)
        elif p.kind == "int":
            out[p.key] = list(range(int(p.low), int(p.high) + 1))
    return out


def log_keys(spec: SweepSpec) -> list[str]:
    return [p.key for p in spec.params if p.log]


# --- presets ----------------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    # The seminar's question: how deep to fine-tune, and at which rate. 4 x 3 grid.
    "depth_lr": {
        "params": {
            "phase2.unfreeze_blocks": [1, 2, 4, 8],
            "phase2.lr": [1e-5, 1e-4, 1e-3],
        },
        "settings": {"sweep.sampler": "grid", "sweep.objective": "best", "sweep.pruner": "median"},
    },
    # How little data is enough, with and without ImageNet weights: each trial trains one
    # arm on a few images per class. No pruning: the random arm is expected to be worse.
    "little_data": {
        "params": {
            "train_per_class": [5, 10, 20, 50, 100, ALL],
            "arms": ["imagenet", "random"],
            "batch_size": [8],  # so that 5 images per class (2 classes) make a batch
        },
        "settings": {"sweep.sampler": "grid", "sweep.objective": "best", "sweep.pruner": "none"},
    },
}


def preset_values(name: str, dims: Iterable[Dimension], fixed: ExperimentConfig) -> dict[str, Any]:
    """Session State for the preset ``name``: its keys as lists, every other key fixed."""
    preset = PRESETS[name]
    out = default_values(dims, fixed)
    for key, chosen in preset["params"].items():
        out[mode_key(key)] = "list"
        out[list_key(key)] = list(chosen)
    out.update(preset["settings"])
    return out


# --- how long ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PastRun:
    """A finished run's config and how long it trained (``wall_s``, the summary's)."""

    config: ExperimentConfig
    wall_s: float


def trial_points(spec: SweepSpec, limit: int = 1000) -> list[dict[str, Any]]:
    """The points whose time stands for the sweep's: the grid's (a grid sampler), else the
    grid of the discrete parameters with each float range at its low end, up to ``limit``."""
    discrete = []
    for p in spec.params:
        if p.kind == "float":
            discrete.append([(p.key, p.low)])
        else:
            discrete.append([(p.key, v) for v in p.values()])
    points = []
    for combo in itertools.product(*discrete):
        points.append(dict(combo))
        if len(points) >= limit:
            break
    return points


def estimate_seconds(
    spec: SweepSpec,
    past: Sequence[PastRun],
    images: Any,
    workers: int,
) -> tuple[float, int] | None:
    """``(seconds, runs it is based on)`` the sweep should take with ``workers`` workers,
    or None without a finished run to time from.

    A past run's cost is its training time per epoch, arm and training image; the runs on
    the same backbone and image size as the trials are used where there are any, else all.
    A trial's time is that median cost times its epochs, arms and images (``images``: a
    function of the trial's config, the data set's training images it will use); the sweep's
    is the mean over :func:`trial_points` times the budget, shared by the workers. Trials
    that share frozen features reuse them, so a sweep is often quicker than this."""
    configs = [spec.config_for(point) for point in trial_points(spec)]
    if not configs:
        return None
    costs = []
    sample = configs[0]
    for same in (True, False):
        costs = [
            run.wall_s / units
            for run in past
            if run.wall_s > 0
            and (units := _units(run.config, images))
            and (
                not same
                or (
                    run.config.backbone == sample.backbone
                    and run.config.image_size == sample.image_size
                )
            )
        ]
        if costs:
            break
    if not costs:
        return None
    cost = statistics.median(costs)
    per_trial = statistics.fmean(cost * (_units(c, images) or 0) for c in configs)
    trials = spec.budget()
    rounds = math.ceil(trials / max(workers, 1))
    return per_trial * rounds, len(costs)


def _units(config: ExperimentConfig, images: Any) -> float | None:
    epochs = config.phase1.epochs + config.phase2.epochs
    count = images(config)
    if not count or not epochs:
        return None
    return float(epochs * len(config.arms) * count)
