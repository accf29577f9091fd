"""``BackboneLayer``: a TF Hub feature-vector model whose top N blocks train."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tensorflow_hub as hub

from pipelines.backbones.blocks import (
    Block,
    check_unfreeze_blocks,
    count_params,
    derive_blocks,
    freeze_report,
    read_manifest,
    top_block_variables,
)


@dataclass
class _VariableRefs:
    all: list
    candidates: list


class BackboneLayer(hub.KerasLayer):
    """A reusable SavedModel (TF Hub format) as a Keras layer, frozen block by block.

    Satisfies :class:`.contract.Backbone` (``can_split`` is False). Contract:

    * Input: float images ``[batch, height, width, 3]``, scaled as the backbone expects.
      Output: whatever the SavedModel returns, for an image feature vector ``[batch, dim]``.
    * ``blocks``: the backbone's blocks, input to output, from ``blocks.json`` beside the
      SavedModel (the built-ins) or derived from its variable names (any other model).
    * ``unfreeze_blocks=N``: exactly the trainable variables of the last ``N`` blocks are
      the layer's ``trainable_weights``; everything else is frozen. ``N = 0`` is feature
      extraction. :meth:`set_unfreeze_blocks` changes ``N`` later (recompile the model).
    * BatchNorm stays in inference mode (the SavedModel is called with ``training=False``)
      even while blocks train, as the Keras transfer-learning guide prescribes, unless
      ``bn_training=True`` (training from scratch, where BN must learn its statistics).

    Loading, validation of the handle and clear errors live in
    :func:`pipelines.backbones.load_layer`; use that rather than this class directly.
    """

    def __init__(
        self, handle: str, *, unfreeze_blocks: int | None = 0, bn_training: bool = False, **kwargs
    ):
        super().__init__(handle, trainable=unfreeze_blocks != 0, **kwargs)
        self.bn_training = bn_training
        # Held in a plain object: a list attribute would make Keras track (and re-add as
        # trainable) every variable in it on each call.
        self._refs = _VariableRefs(
            list(getattr(self._func, "variables", [])),
            list(getattr(self._func, "trainable_variables", [])),
        )
        manifest = read_manifest(handle) if Path(handle).is_dir() else None
        self.blocks: list[Block] = manifest or derive_blocks([v.name for v in self._refs.all])
        count_params(self.blocks, self._refs.all)
        self.unfreeze_blocks = 0
        self.set_unfreeze_blocks(unfreeze_blocks)

    # A SavedModel's graph can't be cut in two.
    can_split = False

    def set_unfreeze_blocks(self, unfreeze_blocks: int | None) -> None:
        """Make exactly the last ``unfreeze_blocks`` blocks' trainable variables trainable
        (``ALL_BLOCKS``: all); :class:`UserError` beyond the blocks."""
        n = check_unfreeze_blocks(len(self.blocks), unfreeze_blocks)
        top = top_block_variables(self.blocks, n)
        train = [v for v in self._refs.candidates if v.name in top]
        train_ids = {id(v) for v in train}
        frozen = [v for v in self._refs.all if id(v) not in train_ids]
        self._trainable_weights[:] = train
        self._non_trainable_weights[:] = frozen
        self.unfreeze_blocks = n
        self.trainable = bool(train) or self.bn_training

    def split(self, first_trainable: int) -> tuple:
        """Refused: see ``can_split``."""
        raise TypeError("a TF Hub SavedModel can't be split at a block boundary")

    def cut(self, reuse_blocks: int | None) -> BackboneLayer:
        """Itself for ``reuse_blocks=None``; refused otherwise (see ``can_split``)."""
        if reuse_blocks is None:
            return self
        raise TypeError("a TF Hub SavedModel can't be cut at a block boundary")

    def call(self, inputs, training=None):
        if not self.bn_training:
            training = False
        return super().call(inputs, training=training)

    @property
    def module_variables(self) -> list:
        """All of the SavedModel's variables, in model order (for re-initialisation)."""
        return list(self._refs.all)

    def freeze_report(self) -> dict:
        """The layer map at the current depth (see :func:`blocks.freeze_report`)."""
        return freeze_report(self.blocks, self.unfreeze_blocks)
