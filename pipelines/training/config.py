"""The experiment config: one validated, JSON-serialisable object.

The dashboard's form maps onto it field by field and the CLI's ``--set key=value`` uses the
same dotted names (``phase2.unfreeze_blocks=2``). :meth:`ExperimentConfig.validate` is the
one place values are checked; every refusal is a :class:`UserError` naming the field.

Checks that need the backbone loaded (a depth beyond its blocks, an image size it can't
take) or the data decoded (a batch larger than the data set) happen where those are known:
:func:`validate_against` takes the block count and training-set size.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from pipelines.backbones.blocks import check_reuse_blocks, check_unfreeze_blocks
from pipelines.errors import UserError

ARMS = ("imagenet", "random")
RANDOM_POLICIES = ("same", "scratch")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
HYDRA_MODES = ("shared", "separate")  # several tasks: one backbone + N heads, or N networks
# The phases (``phase1``, ``phase2``) as the store, the log and the charts name them.
PHASE_TITLES = {"feature_extraction": "feature extraction", "fine_tuning": "fine-tuning"}
# Logged as each phase's preparation begins (on a cold cache the run's longest wait; the
# bench times the run's set-up up to the first one).
PREPARING = {
    "feature_extraction": "preparing feature extraction (each arm's backbone features: read "
    "from disk, or one pass over the images)",
    "fine_tuning": "preparing fine-tuning (each arm's trainable blocks and what they take in)",
}
MAX_LR = 10.0
MAX_EPOCHS = 1000
# The one image-size range (the form's bounds too). 32 px is the built-in EfficientNet-Lite
# backbones' total stride: below it their last blocks see less than one pixel. The data layer
# decodes at whatever validated size it is given.
MAX_IMAGE_SIZE = 1024
MIN_IMAGE_SIZE = 32


@dataclass
class Phase1:
    """Feature extraction: the backbone frozen, only the new head trains."""

    epochs: int = 3
    lr: float = 1e-3


@dataclass
class Phase2:
    """Fine-tuning: the top ``unfreeze_blocks`` blocks train too, at a lower rate. With
    ``reuse_blocks`` set, they are counted within the kept blocks."""

    epochs: int = 2
    lr: float = 1e-5
    unfreeze_blocks: int = 2


@dataclass
class ExperimentConfig:
    """Everything that defines an experiment. Defaults give the seminar demo."""

    dataset: str = "horses_or_humans"
    train_per_class: int | None = None
    backbone: str = "efficientnet_lite0"
    image_size: int | None = None
    reuse_blocks: int | None = None  # take over the lowest K blocks (cut after K); None: all
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    random_policy: str = "same"
    phase1: Phase1 = field(default_factory=Phase1)
    phase2: Phase2 = field(default_factory=Phase2)
    optimizer: str = "adam"
    batch_size: int = 32
    dropout: float = 0.2
    augment: bool = False
    seed: int = 0
    tasks: list[str] = field(default_factory=list)  # a multi-task data set's tasks; []: all
    hydra: str = "shared"  # several tasks: "shared" backbone or "separate" networks

    # --- construction -------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        """Build from a (possibly partial) dict; unknown keys are refused by name."""
        if not isinstance(data, dict):
            raise UserError("an experiment config must be a JSON object of fields")
        config = cls()
        for key, value in _flatten(data).items():
            config.set(key, value)
        return config.validate()

    @classmethod
    def from_json_file(cls, path: str | Path) -> ExperimentConfig:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise UserError(f"config file {str(path)!r} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"config file {str(path)!r} is not valid JSON: {e}") from None
        return cls.from_dict(data)

    def set(self, key: str, value: Any) -> None:
        """Set a dotted field (``phase1.lr``) from a Python value or a CLI string."""
        target, name = self, key
        if "." in key:
            head, name = key.split(".", 1)
            if head not in ("phase1", "phase2") or "." in name:
                raise UserError(f"unknown config key {key!r}; known keys: {', '.join(keys())}")
            target = getattr(self, head)
        known = {f.name: f for f in fields(target)}
        if name not in known or is_dataclass(getattr(target, name)):
            raise UserError(f"unknown config key {key!r}; known keys: {', '.join(keys())}")
        setattr(target, name, _coerce(key, known[name].type, value))

    def with_overrides(self, assignments: list[str]) -> ExperimentConfig:
        """Apply ``key=value`` strings (the CLI's ``--set``) and validate."""
        for item in assignments:
            if "=" not in item:
                raise UserError(f"--set expects key=value, got {item!r}")
            key, value = item.split("=", 1)
            self.set(key.strip(), value.strip())
        return self.validate()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False)

    # --- validation ---------------------------------------------------------------------

    def validate(self) -> ExperimentConfig:
        """Refuse impossible values with a message naming the field; return self."""
        if not str(self.dataset).strip():
            from pipelines.data.sources import names_text

            raise UserError(f"dataset: give {names_text()}, a folder, a .zip or a TFDS name")
        if self.train_per_class is not None and self.train_per_class < 1:
            raise UserError("train_per_class: must be at least 1, or null for all images")
        if not str(self.backbone).strip():
            raise UserError("backbone: give a catalogue id, a TF Hub handle or a SavedModel folder")
        if self.image_size is not None and not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise UserError(
                f"image_size: must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels, "
                f"or null for the backbone's own size (got {self.image_size})"
            )
        if not self.arms:
            raise UserError("arms: choose at least one of imagenet, random")
        for arm in self.arms:
            if arm not in ARMS:
                raise UserError(f"arms: unknown arm {arm!r}; use imagenet and/or random")
        if len(set(self.arms)) != len(self.arms):
            raise UserError("arms: each arm may appear once")
        self.arms = [a for a in ARMS if a in self.arms]  # canonical order
        _choice("random_policy", self.random_policy, RANDOM_POLICIES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        for phase in ("phase1", "phase2"):
            p = getattr(self, phase)
            if not 0 <= p.epochs <= MAX_EPOCHS:
                raise UserError(f"{phase}.epochs: must be between 0 and {MAX_EPOCHS}")
            if not (math.isfinite(p.lr) and 0 < p.lr <= MAX_LR):
                raise UserError(
                    f"{phase}.lr: must be a positive number up to {MAX_LR:g} (got {p.lr!r}); "
                    "typical values are 1e-3 for the head and 1e-5 for fine-tuning"
                )
        if self.phase1.epochs + self.phase2.epochs == 0:
            raise UserError("phase1.epochs and phase2.epochs are both 0: nothing would train")
        if self.phase2.unfreeze_blocks < 0:
            raise UserError("phase2.unfreeze_blocks: must be 0 or more")
        if self.reuse_blocks is not None:
            check_reuse_blocks(self.reuse_blocks, self.reuse_blocks)  # at least 1
            if self.phase2.epochs > 0:  # counted within the kept blocks
                check_unfreeze_blocks(self.reuse_blocks, self.phase2.unfreeze_blocks, cut=True)
        if self.phase2.epochs > 0 and self.phase2.unfreeze_blocks == 0:
            raise UserError(
                "phase2.unfreeze_blocks: fine-tuning (phase2.epochs > 0) needs at least one "
                "unfrozen block; set phase2.epochs=0 to skip fine-tuning"
            )
        if self.batch_size < 1:
            raise UserError("batch_size: must be at least 1")
        if not (math.isfinite(self.dropout) and 0 <= self.dropout < 1):
            raise UserError("dropout: must be at least 0 and below 1")
        if self.seed < 0:
            raise UserError("seed: must be 0 or more")
        _choice("hydra", self.hydra, HYDRA_MODES)
        self.tasks = [str(t).strip() for t in self.tasks]
        if len(set(self.tasks)) != len(self.tasks) or not all(self.tasks):
            raise UserError("tasks: name each task once (e.g. tasks=normal_vs_pneumonia)")
        return self


def validate_against(
    config: ExperimentConfig, *, block_count: int | None, train_images: int
) -> None:
    """Checks that need the backbone's blocks (``block_count``, the whole backbone's or, once
    cut, the kept ones; None: not loaded) and data: ``reuse_blocks`` within the blocks, and
    ``phase2.unfreeze_blocks`` within the kept blocks."""
    if block_count is not None:
        kept = check_reuse_blocks(block_count, config.reuse_blocks, backbone=config.backbone)
        if config.phase2.epochs > 0:
            check_unfreeze_blocks(
                kept, config.phase2.unfreeze_blocks, cut=config.reuse_blocks is not None
            )
    if config.batch_size > train_images:
        raise UserError(
            f"batch_size: {config.batch_size} is larger than the training set "
            f"({train_images} images); use at most {train_images}"
        )


def keys() -> list[str]:
    """Every settable dotted key, in form order."""
    out = []
    for f in fields(ExperimentConfig):
        default = getattr(ExperimentConfig(), f.name)
        if is_dataclass(default):
            out += [f"{f.name}.{g.name}" for g in fields(default)]
        else:
            out.append(f.name)
    return out


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"{name}: {value!r} is not one of {', '.join(allowed)}")


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in ("phase1", "phase2") and not prefix:
            out.update(_flatten(value, f"{key}."))
        else:
            out[prefix + key] = value
    return out


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NULL = {"null", "none", ""}


def _coerce(key: str, annotation: str, value: Any) -> Any:
    """Turn a JSON value or CLI string into the field's type, or refuse naming ``key``."""
    kind = str(annotation).replace(" ", "")
    nullable = "None" in kind
    if nullable and (value is None or (isinstance(value, str) and value.lower() in _NULL)):
        return None
    try:
        if kind.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind.startswith("float"):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in _TRUE | _FALSE:
                return str(value).lower() in _TRUE
            raise ValueError
        if kind.startswith("list"):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list):
                raise ValueError
            return [str(v) for v in value]
        if isinstance(value, (dict, list)):
            raise ValueError
        return str(value)
    except (TypeError, ValueError):
        wanted = kind.replace("|None", " or null")
        raise UserError(f"{key}: {value!r} is not a valid {wanted}") from None
