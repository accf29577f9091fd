"""A finished run's arm as Keras parts: its backbone and head, with the trained weights
(or the backbone's initial ones).

Each finished or stopped run keeps per arm ``arm.json`` and ``.npz`` weights
(:meth:`pipelines.training.arms.Arm.save_weights`): the head, and the backbone's variables
when any of them trained. :func:`arm_folder` finds them and refuses, with one message,
what has none (an unknown run, a run still going, an arm it didn't train);
:func:`load_arm` rebuilds the parts. Built once per process and kept
(:data:`MODELS_KEPT`, keyed by the folder and ``arm.json``'s modification time).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import UserError

MODELS_KEPT = 4


@dataclass
class ArmModel:
    """One arm: ``backbone`` (a :class:`pipelines.backbones.Backbone`), ``head`` (pooled
    features → logits), and what ``arm.json`` says (``meta``)."""

    arm: str
    meta: dict[str, Any]
    backbone: Any
    head: Any
    trained: bool  # the saved weights (False: the backbone as it was before training)
    _parts: dict = field(default_factory=dict, repr=False)  # built sub-models, per use

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def scaling(self) -> str:
        return str(self.meta["scaling"])

    @property
    def backbone_trained(self) -> bool:
        """Whether training changed the backbone (fine-tuning, or training from scratch)."""
        return bool(self.meta.get("trained_backbone"))


def arm_folder(store, run_id: str, arm: str) -> Path:
    """The folder with the arm's saved weights; :class:`UserError` for an unknown run, a
    run still queued or running, an arm the run doesn't have or never saved."""
    run = store.get_run(run_id)  # UserError for an unknown run
    if run.active:
        raise UserError(
            f"run {run_id} is still {run.status}; its models are saved when it finishes. "
            "Wait for it to complete, or stop it"
        )
    arms = run.config.arms if run.config is not None else run.config_dict.get("arms", [])
    if arm not in arms:
        raise UserError(f"run {run_id} has no {arm} arm; it trained {', '.join(arms) or 'none'}")
    folder = Path(store.artefact_dir(run_id, create=False)) / arm
    if not (folder / "arm.json").is_file():
        raise UserError(
            f"run {run_id} has no trained {arm} model (status {run.status}: it ended before "
            "that arm's first phase began); start the experiment again"
        )
    return folder


def load_arm(folder: str | Path, *, trained: bool = True) -> ArmModel:
    """The arm saved in ``folder`` (see :func:`arm_folder`); ``trained=False`` gives the
    backbone as it was before training (ImageNet or the seeded random weights) with the
    trained head. Kept per process while ``arm.json`` is unchanged."""
    path = Path(folder)
    return _load(str(path), (path / "arm.json").stat().st_mtime_ns, trained)


@functools.lru_cache(maxsize=MODELS_KEPT)
def _load(folder: str, mtime: int, trained: bool) -> ArmModel:
    import pipelines  # noqa: F401 - Keras 2 before TensorFlow
    from pipelines.backbones import load_layer
    from pipelines.training.arms import build_head

    path = Path(folder)
    meta = json.loads((path / "arm.json").read_text())
    backbone = load_layer(
        meta["backbone"],
        weights=meta["weights"],
        seed=meta["seed"],
        bn_training=meta["bn_training"],
        image_size=meta["image_size"],
        splittable=True,
        reuse_blocks=meta.get("reuse_blocks"),
    )
    if trained and (path / "backbone.npz").is_file():
        _assign(backbone.module_variables, path / "backbone.npz")
    head = build_head(meta["feature_dim"], len(meta["classes"]), meta["dropout"], meta["seed"])
    _assign(head.variables, path / "head.npz")
    return ArmModel(path.name, meta, backbone, head, trained)


def _assign(variables: list, npz: Path) -> None:
    with np.load(npz, allow_pickle=False) as data:
        values = [data[f"arr_{i}"] for i in range(len(data.files))]
    if len(values) != len(variables):
        raise UserError(
            f"{npz} holds {len(values)} arrays for {len(variables)} variables: the saved "
            "model doesn't match its backbone any more; train the experiment again"
        )
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def clear() -> None:
    """Forget the arms built in this process."""
    _load.cache_clear()
