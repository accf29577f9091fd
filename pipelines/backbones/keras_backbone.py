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

from dataclasses import dataclass

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

    def __init__(self, block_models: list[keras.Model], *, bn_training: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.block_models = block_models
        self.chain = lite.chain(block_models, name="feature_vector")
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
        return KerasBackbone(self.block_models[:kept], bn_training=self.bn_training, name=self.name)

    def split(self, first_trainable: int) -> tuple[keras.Model, keras.Model]:
        """``(bottom, top)``: blocks before ``first_trainable`` (feature maps out) and the
        rest with pooling. They share this backbone's variables."""
        if not 0 < first_trainable < len(self.block_models):
            raise ValueError(f"cannot split {len(self.block_models)} blocks at {first_trainable}")
        bottom = lite.chain(self.block_models[:first_trainable], pool=False, name="bottom")
        top = lite.chain(self.block_models[first_trainable:], pool=True, name="top")
        return bottom, top


@dataclass
class _Kept:
    blocks: list[keras.Model]
    weights: list[list[np.ndarray]]  # per block, as loaded (ImageNet)
    lent: bool = True


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
                return KerasBackbone(kept.blocks, bn_training=bn_training, name="backbone")
    blocks = _build(package)
    if _kept is not None:
        _kept.setdefault(package, []).append(_Kept(blocks, [b.get_weights() for b in blocks]))
    return KerasBackbone(blocks, bn_training=bn_training, name="backbone")


def _build(package: str) -> list[keras.Model]:
    from pipelines.backbones.builtin import weights_file
    from pipelines.backbones.torch_legacy import load_state_dict

    state = load_state_dict(weights_file(package))
    blocks = lite.build_blocks(state)
    lite.load_weights(blocks, state)
    return blocks
