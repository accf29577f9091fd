"""``KerasBackbone``: a built-in backbone as its Keras blocks, splittable at any boundary.

The built-ins are also TF Hub SavedModels (:mod:`.builtin`), but a SavedModel's graph can't
be cut in two. The engine trains built-ins from the same weights as this chain of Keras
blocks, so fine-tuning can compute the frozen bottom once and run only the top each epoch
(:meth:`KerasBackbone.split`). Outputs match the SavedModel (tested < 1e-4), variable names
and order are the same, so :func:`.random_init.reinitialise` gives the same random network.

**Warm processes** (the worker pool, :mod:`pipelines.runs.pool`) call :func:`keep_warm`:
building a built-in's blocks costs seconds, so the built blocks are kept with a copy of their
ImageNet weights, and a later :func:`load_keras_backbone` in the same process lends a set no
backbone of the current run holds, its weights (BatchNorm statistics included) restored
first. :func:`release_warm` (between runs) makes every kept set lendable again. Without
:func:`keep_warm` every call builds afresh, as a one-run process needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tf_keras as keras

from pipelines.backbones import efficientnet_lite as lite
from pipelines.backbones.blocks import (
    Block,
    check_reuse_blocks,
    check_unfreeze_blocks,
    count_params,
    freeze_report,
)


class KerasBackbone(keras.layers.Layer):
    """A :class:`.contract.Backbone` that can split (``can_split``) at any block boundary."""

    can_split = True
    _kept = None  # the warm kept set it was lent from (see keep_warm), if any

    def __init__(
        self,
        block_models: list[keras.Model],
        *,
        bn_training: bool = False,
        chains: ChainCache | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.block_models = block_models
        self._chains = chains or ChainCache()
        self.chain = self._chain(0, len(block_models), pool=True, name="feature_vector")
        self.bn_training = bn_training
        self.blocks = [Block(b.name, [v.name for v in b.variables]) for b in block_models]
        count_params(self.blocks, self.chain.variables)
        self.unfreeze_blocks = 0
        self.set_unfreeze_blocks(0)

    def set_unfreeze_blocks(self, unfreeze_blocks: int | None) -> None:
        """Exactly the last ``unfreeze_blocks`` blocks train (``ALL_BLOCKS``: all)."""
        n = check_unfreeze_blocks(len(self.blocks), unfreeze_blocks)
        first = len(self.block_models) - n
        self.trainable = n > 0 or self.bn_training  # propagates to every block...
        for i, block in enumerate(self.block_models):  # ...so set each block after it
            block.trainable = self.bn_training or i >= first
        self.unfreeze_blocks = len(self.blocks) if self.bn_training else n

    def call(self, inputs, training=None):
        return self.chain(inputs, training=bool(training) and self.bn_training)

    @property
    def module_variables(self) -> list:
        return list(self.chain.variables)

    def freeze_report(self) -> dict:
        return freeze_report(self.blocks, self.unfreeze_blocks)

    def cut(self, reuse_blocks: int | None) -> KerasBackbone:
        """The lowest ``reuse_blocks`` blocks (None: all) as a backbone of their own: the
        blocks above are dropped, global pooling sits on the last kept block's output. It
        shares the kept blocks' variables (and only those) with this backbone."""
        kept = check_reuse_blocks(len(self.block_models), reuse_blocks)
        if kept == len(self.block_models):
            return self
        cut = KerasBackbone(
            self.block_models[:kept],
            bn_training=self.bn_training,
            chains=self._chains,
            name=self.name,
        )
        cut._kept = self._kept
        return cut

    def split(self, first_trainable: int) -> tuple[keras.Model, keras.Model]:
        """``(bottom, top)``: blocks before ``first_trainable`` (feature maps out) and the
        rest with pooling. They share this backbone's variables."""
        n = len(self.block_models)
        if not 0 < first_trainable < n:
            raise ValueError(f"cannot split {n} blocks at {first_trainable}")
        bottom = self._chain(0, first_trainable, pool=False, name="bottom")
        return bottom, self._chain(first_trainable, n, pool=True, name="top")

    def _chain(self, first: int, last: int, *, pool: bool, name: str) -> keras.Model:
        models = self._chains.models
        key = (first, last, pool, name)
        if key not in models:
            models[key] = lite.chain(self.block_models[first:last], pool=pool, name=name)
        return models[key]


class ChainCache:
    """Models chained from one set of blocks, by (first, last, pool, name): building one
    costs about a second, so a backbone, its cuts and splits, and (in a warm process) every
    backbone lent from the same kept set share them. A plain object, not a dict, so Keras
    does not track the models as the backbone's sublayers."""

    def __init__(self) -> None:
        self.models: dict[tuple, keras.Model] = {}


@dataclass
class _Kept:
    blocks: list[keras.Model]
    weights: list[list[np.ndarray]]  # per block, as loaded (ImageNet)
    lent: bool = True
    chains: ChainCache = field(default_factory=ChainCache)
    random: dict = field(default_factory=dict)  # (seed, variables) -> random values, drawn once
    checked_sizes: set = field(default_factory=set)  # image sizes a probe call accepted


_kept: dict[str, list[_Kept]] | None = None  # package -> built block sets; None: not warm


def keep_warm(enabled: bool = True) -> None:
    """Keep built blocks in this process for later backbones (see the module docstring)."""
    global _kept
    _kept = {} if enabled else None


def release_warm() -> None:
    """Every kept block set may be lent again: the run that held them has ended."""
    for sets in (_kept or {}).values():
        for kept in sets:
            kept.lent = False


def load_keras_backbone(package: str, *, bn_training: bool = False) -> KerasBackbone:
    """The built-in in ``package`` with its ImageNet weights, as a :class:`KerasBackbone`."""
    if _kept is not None:
        for kept in _kept.get(package, []):
            if not kept.lent:
                for block, weights in zip(kept.blocks, kept.weights, strict=True):
                    block.set_weights(weights)
                kept.lent = True
                return _lend(kept, bn_training)
    blocks = _build(package)
    if _kept is None:
        return KerasBackbone(blocks, bn_training=bn_training, name="backbone")
    kept = _Kept(blocks, [b.get_weights() for b in blocks])
    _kept.setdefault(package, []).append(kept)
    return _lend(kept, bn_training)


def _lend(kept: _Kept, bn_training: bool) -> KerasBackbone:
    backbone = KerasBackbone(
        kept.blocks, bn_training=bn_training, chains=kept.chains, name="backbone"
    )
    backbone._kept = kept
    return backbone


def warm_size_checked(backbone, image_size: int) -> bool:
    """Whether ``backbone`` comes from a kept set whose blocks already took an
    ``image_size`` image (:func:`mark_warm_size_checked`): a warm process checks once."""
    kept = getattr(backbone, "_kept", None)
    return kept is not None and image_size in kept.checked_sizes


def mark_warm_size_checked(backbone, image_size: int) -> None:
    """Record that ``backbone``'s kept blocks took an ``image_size`` image."""
    kept = getattr(backbone, "_kept", None)
    if kept is not None:
        kept.checked_sizes.add(image_size)


def warm_random_values(backbone, seed: int, draw) -> list | None:
    """The seeded random values of ``backbone``'s variables, drawn once per seed and
    variable count by ``draw()`` and kept with its kept set; None outside a warm process."""
    kept = getattr(backbone, "_kept", None)
    if kept is None:
        return None
    key = (seed, len(backbone.module_variables))
    if key not in kept.random:
        kept.random[key] = draw()
    return kept.random[key]


def _build(package: str) -> list[keras.Model]:
    from pipelines.backbones.builtin import weights_file
    from pipelines.backbones.torch_legacy import load_state_dict

    state = load_state_dict(weights_file(package))
    blocks = lite.build_blocks(state)
    lite.load_weights(blocks, state)
    return blocks
