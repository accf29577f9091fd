"""The setup form as data, without Streamlit: widget values <-> :class:`ExperimentConfig`.

Each config field has one widget whose Streamlit key is the field's dotted name
(``phase2.lr``), so the form maps onto the config field by field. Three helper widgets have
keys of their own: ``dataset_source`` (a named data set / folder / uploaded zip),
``backbone_custom`` (a TF Hub handle or SavedModel folder when ``backbone`` is
``CUSTOM_BACKBONE``) and the upload itself. Widget values differ from config values only where
a widget needs it: ``train_per_class`` is ``"all"`` for ``None``, learning rates are snapped
to the log-scale steps of :data:`LR_OPTIONS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pipelines.data.sources import named, named_datasets
from pipelines.training.config import HYDRA_MODES as HYDRA_MODES
from pipelines.training.config import MAX_EPOCHS as MAX_EPOCHS
from pipelines.training.config import MAX_IMAGE_SIZE as MAX_IMAGE_SIZE
from pipelines.training.config import MIN_IMAGE_SIZE as MIN_IMAGE_SIZE
from pipelines.training.config import OPTIMIZERS as OPTIMIZERS
from pipelines.training.config import RANDOM_POLICIES as RANDOM_POLICIES
from pipelines.training.config import ExperimentConfig, keys, validate_against

CUSTOM_BACKBONE = "custom"
NAMED_SOURCES: tuple[str, ...] = tuple(named_datasets())  # horses_or_humans, chest_xray_...
SOURCES = (*NAMED_SOURCES, "folder", "upload")
ALL = "all"
TRAIN_PER_CLASS_OPTIONS: list[int | str] = [2, 5, 10, 20, 50, 100, 200, 500, ALL]
# Log-scale steps 1-2-5 from 1e-6 to 0.5: the learning-rate sliders move in these.
LR_OPTIONS: list[float] = [float(f"{m}e{e}") for e in range(-6, 0) for m in (1, 2, 5)]
CONFIG_KEYS: list[str] = keys()

PRESETS: dict[str, dict[str, Any]] = {
    # The seminar's comparison: feature extraction, then fine-tuning the top 2 blocks.
    "seminar": {},
    # A few minutes' demo cut to under 2 on a laptop CPU: 50 images a class at 128 px.
    "quick": {
        "train_per_class": 50,
        "image_size": 128,
        "phase1": {"epochs": 3},
        "phase2": {"epochs": 2},
    },
    # Unfreeze 8 of the blocks and fine-tune longer, at the same low rate.
    "deeper": {"phase2": {"epochs": 4, "unfreeze_blocks": 8}},
}


def nearest_lr(value: float) -> float:
    """The :data:`LR_OPTIONS` step nearest to ``value`` on a log scale."""
    if not value or value <= 0 or not math.isfinite(value):
        return LR_OPTIONS[0]
    return min(LR_OPTIONS, key=lambda o: abs(math.log10(o) - math.log10(value)))


def snap_lr(key: str, value: Any) -> tuple[float, str | None]:
    """``value`` as the learning-rate slider can show it: the nearest :data:`LR_OPTIONS`
    step, and why it had to change when it was outside the slider's range (0, negative,
    not a number, too large), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    low, high = LR_OPTIONS[0], LR_OPTIONS[-1]
    snapped = nearest_lr(number)
    if math.isfinite(number) and low <= number <= high:
        return snapped, None
    if not math.isfinite(number) or number <= 0:
        why = f"{value!r} is not a positive number"
    else:
        why = f"{number:g} is above the largest step"
    return snapped, (
        f"{key}: {why}; it is set to {snapped:.0e}. The slider goes from {low:.0e} to "
        f"{high:.0e}: pick a learning rate there"
    )


def source_of(dataset: str) -> str:
    """Which ``dataset_source`` shows ``dataset``."""
    if (entry := named(dataset)) is not None:
        return entry.id
    return "upload" if "/uploads/" in str(dataset).replace("\\", "/") else "folder"


def widget_values(config: ExperimentConfig, catalogue_ids: list[str]) -> dict[str, Any]:
    """The Session State of every form widget that shows ``config``."""
    flat = {k: _get(config, k) for k in CONFIG_KEYS}
    custom = config.backbone not in catalogue_ids
    tpc = flat["train_per_class"]
    return {
        **flat,
        "dataset_source": source_of(config.dataset),
        "train_per_class": ALL if tpc is None else _nearest_option(tpc),
        "backbone": CUSTOM_BACKBONE if custom else config.backbone,
        "backbone_custom": config.backbone if custom else "",
        "arms": list(config.arms),
        "phase1.lr": nearest_lr(config.phase1.lr),
        "phase2.lr": nearest_lr(config.phase2.lr),
    }


def config_dict(values: Mapping[str, Any]) -> dict[str, Any]:
    """The config fields (dotted keys) the widget ``values`` stand for, unvalidated."""
    out: dict[str, Any] = {k: values.get(k) for k in CONFIG_KEYS if k in values}
    if values.get("train_per_class") == ALL:
        out["train_per_class"] = None
    if values.get("backbone") == CUSTOM_BACKBONE:
        out["backbone"] = str(values.get("backbone_custom") or "").strip()
    if "dataset" in out:
        out["dataset"] = str(out["dataset"] or "").strip()
    if "arms" in out:
        out["arms"] = list(out["arms"] or [])
    return out


def config_from_values(values: Mapping[str, Any]) -> ExperimentConfig:
    """The validated config the form shows; :class:`UserError` naming the field if not."""
    config = ExperimentConfig()
    for key, value in config_dict(values).items():
        config.set(key, value)
    return config.validate()


def check_against(
    config: ExperimentConfig, *, block_count: int | None, train_images: int | None
) -> None:
    """The checks that need the backbone's blocks and the training-set size, where known,
    and whether the backbone can be cut at ``reuse_blocks``."""
    from pipelines.backbones import check_cut

    check_cut(config.backbone, config.reuse_blocks)
    validate_against(
        config,
        block_count=block_count if block_count is not None else 10**6,
        train_images=train_images if train_images is not None else 10**9,
    )


def train_images(report: Mapping[str, Any], train_per_class: int | None) -> int:
    """How many training images a run of the inspected data set will use."""
    counts = report.get("splits", {}).get("train", {}).values()
    if train_per_class is None:
        return int(sum(counts))
    return int(sum(min(n, train_per_class) for n in counts))


def preset_config(name: str, current: ExperimentConfig | None = None) -> ExperimentConfig:
    """The preset ``name`` on top of the defaults, keeping ``current``'s data set."""
    config = ExperimentConfig.from_dict(PRESETS[name])
    if current is not None:
        config.dataset = current.dataset
    return config.validate()


def _get(config: ExperimentConfig, key: str) -> Any:
    target: Any = config
    for part in key.split("."):
        target = getattr(target, part)
    return list(target) if isinstance(target, list) else target


def _nearest_option(n: int) -> int | str:
    numbers = [o for o in TRAIN_PER_CLASS_OPTIONS if isinstance(o, int)]
    return min(numbers, key=lambda o: abs(math.log(o) - math.log(max(n, 1))))
