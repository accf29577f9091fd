"""What every backbone the engine trains offers: the contract of :class:`Backbone`."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pipelines.backbones.blocks import Block


@runtime_checkable
class Backbone(Protocol):
    """A Keras layer from images ``[batch, h, w, 3]`` to features ``[batch, width]``.

    * ``blocks``: its blocks, input to output.
    * :meth:`set_unfreeze_blocks`: exactly the top ``unfreeze_blocks`` blocks train
      (``ALL_BLOCKS``: every block); the one check of a depth (a :class:`UserError`).
    * ``can_split``: whether :meth:`split` can cut it at a block boundary; ``split(first)``
      then returns ``(bottom, top)`` Keras models sharing its variables, and
      ``cut(reuse_blocks)`` the lowest ``reuse_blocks`` blocks as a backbone of their own
      (pooled features of the last kept block; the blocks above dropped).
    * ``module_variables``: every variable, in model order (for re-initialisation).
    """

    blocks: list[Block]
    unfreeze_blocks: int
    bn_training: bool
    can_split: bool

    def set_unfreeze_blocks(self, unfreeze_blocks: int | None) -> None: ...

    def split(self, first_trainable: int) -> tuple[Any, Any]: ...

    def cut(self, reuse_blocks: int | None) -> Backbone: ...

    @property
    def module_variables(self) -> list: ...

    def freeze_report(self) -> dict: ...

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any: ...
