"""``Backbone``: what every backbone the engine trains offers, whatever it is made of.

Two classes satisfy it: :class:`.layer.BackboneLayer` (any TF Hub SavedModel) and
:class:`.keras_backbone.KerasBackbone` (a built-in as its Keras blocks). The engine types
backbones as :class:`Backbone` and asks :attr:`Backbone.can_split` instead of probing.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pipelines.backbones.blocks import Block


@runtime_checkable
class Backbone(Protocol):
    """A Keras layer: float images ``[batch, h, w, 3]`` in, a feature vector ``[batch, dim]`` out.

    * ``blocks``: input to output; freezing and training work block by block.
    * ``train_top_blocks``: how many of the top blocks train now; :meth:`set_train_top_blocks`
      changes it (exactly those blocks' variables become trainable; recompile afterwards).
    * ``bn_training``: BatchNorm learns (training from scratch) instead of staying in
      inference mode while blocks train.
    * ``module_variables``: every variable in model order (random initialisation uses it).
    * ``can_split``: whether :meth:`split` can cut it at a block boundary; a backbone that
      can't raises ``ValueError`` from :meth:`split`.
    """

    blocks: list[Block]
    train_top_blocks: int
    bn_training: bool
    can_split: bool

    def set_train_top_blocks(self, n: int) -> None: ...

    @property
    def module_variables(self) -> list: ...

    def freeze_report(self) -> dict: ...

    def split(self, first_trainable: int) -> tuple: ...

    def __call__(self, inputs, training=None): ...
