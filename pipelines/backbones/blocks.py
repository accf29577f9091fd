"""Blocks of any backbone, input to output, and how deep the network is frozen.

``hub.KerasLayer(trainable=True)`` unfreezes every variable (tensorflow/hub#247, #852). Here
every backbone gets an ordered list of :class:`Block`: for the built-ins the real blocks
from ``blocks.json`` beside the SavedModel; for any other SavedModel, blocks derived from its
variable names (:func:`derive_blocks`). "Train the top N blocks" then means exactly those
blocks' variables are trainable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.errors import UserError

# A variable's first name component names its block when it looks like one of these:
# Keras applications ("block1a_project_conv"), the built-ins ("block_03_dwconv"), and the
# stems and tops around them ("stem_conv", "top_bn").
_BLOCK_PREFIX = re.compile(r"^(block_?\d+[a-z]?|stage_?\d+|stem|top|head)(?:_|$)", re.IGNORECASE)
# ResNet-style units inside a block ("block1/unit_2/...") are blocks of their own.
_UNIT = re.compile(r"^unit_?\d+$", re.IGNORECASE)
FALLBACK_BLOCKS = 12
ALL_BLOCKS = None  # ``unfreeze_blocks=ALL_BLOCKS``: every block trains (training from scratch)


@dataclass
class Block:
    """One block: its name, its variables' names in model order, and their sizes.

    ``trainable_params`` counts the variables that can train (not BN statistics).
    """

    name: str
    variables: list[str] = field(default_factory=list)
    params: int = 0
    trainable_params: int = 0


def _strip(name: str) -> str:
    return name[:-2] if re.search(r":\d+$", name) else name


def _block_key(parts: list[str]) -> str:
    first = parts[0]
    if m := _BLOCK_PREFIX.match(first):
        key = m.group(1)
        if len(parts) > 2 and _UNIT.match(parts[1]):
            key = f"{key}/{parts[1]}"
        return key
    return first


def derive_blocks(names: Sequence[str], *, fallback_blocks: int = FALLBACK_BLOCKS) -> list[Block]:
    """Group variable ``names`` (in model order) into blocks, input to output.

    The components all names share (``MobilenetV2/``, ``resnet_v2_50/``) are dropped; the
    next component, or a recognised block prefix of it, names the block. Blocks keep the
    order in which their first variable appears. When names say nothing (fewer than two
    groups, or one group per variable), consecutive variables are cut into about
    ``fallback_blocks`` blocks, each cut before a kernel (a name that does not look like a
    BN or bias term).
    """
    split = [_strip(n).split("/") for n in names]
    common = 0
    if len(split) > 1:
        while all(len(p) > common + 1 for p in split) and len({p[common] for p in split}) == 1:
            common += 1
    groups: dict[str, Block] = {}
    for name, parts in zip(names, split, strict=True):
        key = _block_key(parts[common:])
        groups.setdefault(key, Block(key)).variables.append(name)
    if 2 <= len(groups) < len(names) or len(names) <= fallback_blocks:
        return list(groups.values())
    return _chunk(list(names), fallback_blocks)


_NOT_A_KERNEL = re.compile(r"(gamma|beta|moving_|mean|variance|bias|scale|offset)", re.IGNORECASE)


def _chunk(names: list[str], count: int) -> list[Block]:
    starts = [i for i, n in enumerate(names) if not _NOT_A_KERNEL.search(n)] or [0]
    if starts[0] != 0:
        starts[0] = 0
    per_block = max(1, int(np.ceil(len(starts) / count)))
    cuts = starts[::per_block] + [len(names)]
    spans = zip(cuts[:-1], cuts[1:], strict=True)
    return [Block(f"layers_{i + 1:02d}", names[a:b]) for i, (a, b) in enumerate(spans)]


def read_manifest(saved_model_dir: str | Path) -> list[Block] | None:
    """The ``blocks.json`` written beside a built-in SavedModel, or None if there is none."""
    path = Path(saved_model_dir) / "blocks.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return [
        Block(b["name"], list(b["variables"]), b.get("params", 0), b.get("trainable_params", 0))
        for b in data["blocks"]
    ]


def count_params(blocks: Sequence[Block], variables: Sequence) -> None:
    """Fill each block's ``params``/``trainable_params`` from TF ``variables`` (by name)."""
    sizes = {v.name: (int(np.prod(v.shape)), bool(v.trainable)) for v in variables}
    for block in blocks:
        known = [sizes[n] for n in block.variables if n in sizes]
        block.params = sum(size for size, _ in known)
        block.trainable_params = sum(size for size, trainable in known if trainable)


def freeze_report(
    blocks: Sequence[Block], unfreeze_blocks: int | None, reuse_blocks: int | None = None
) -> dict:
    """The layer map at a depth: per block name, size and whether it trains; totals.

    ``reuse_blocks`` (None: all) cuts the backbone after that many blocks: the blocks above
    are ``removed`` (dropped, the head sits on the last kept block) and ``unfreeze_blocks``
    counts within the kept ones. ``trainable_params`` counts only the kept backbone (the new
    head comes on top); ``frozen_params`` is the rest of the kept blocks, BN statistics
    included, as Keras counts it; ``kept_params``/``removed_params`` split the whole.
    """
    kept = check_reuse_blocks(len(blocks), reuse_blocks)
    unfreeze_blocks = check_unfreeze_blocks(kept, unfreeze_blocks, cut=kept < len(blocks))
    first_trainable = kept - unfreeze_blocks
    rows = [
        {
            "index": i,
            "name": b.name,
            "params": b.params,
            "trainable_params": b.trainable_params if first_trainable <= i < kept else 0,
            "trainable": first_trainable <= i < kept,
            "removed": i >= kept,
        }
        for i, b in enumerate(blocks)
    ]
    trainable = sum(r["trainable_params"] for r in rows)
    kept_params = sum(b.params for b in blocks[:kept])
    return {
        "unfreeze_blocks": unfreeze_blocks,
        "reuse_blocks": kept,
        "block_count": len(blocks),
        "trainable_params": trainable,
        "frozen_params": kept_params - trainable,
        "kept_params": kept_params,
        "removed_params": sum(b.params for b in blocks[kept:]),
        "blocks": rows,
    }


def check_unfreeze_blocks(
    block_count: int, unfreeze_blocks: int | None, *, cut: bool = False
) -> int:
    """The one check of a freeze depth: ``unfreeze_blocks`` as a block count, with
    :data:`ALL_BLOCKS` meaning ``block_count``; :class:`UserError` if outside 0..count.
    ``cut``: ``block_count`` is the blocks kept by ``reuse_blocks``, and the message says so."""
    if unfreeze_blocks is ALL_BLOCKS:
        return block_count
    whose = (
        f"the {block_count} blocks taken over (reuse_blocks={block_count})"
        if cut
        else f"this backbone's {block_count} blocks"
    )
    if unfreeze_blocks > block_count:
        raise UserError(
            f"phase2.unfreeze_blocks: {unfreeze_blocks} is more than {whose}; "
            f"choose between 0 and {block_count}"
        )
    if unfreeze_blocks < 0:
        raise UserError(
            f"phase2.unfreeze_blocks: must be between 0 and {block_count} (the count of "
            f"{whose}), not {unfreeze_blocks}"
        )
    return unfreeze_blocks


def check_reuse_blocks(
    block_count: int,
    reuse_blocks: int | None,
    *,
    can_cut: bool = True,
    backbone: str = "this backbone",
    cuttable: Sequence[str] = (),
) -> int:
    """The one check of a cut point: ``reuse_blocks`` (None: all ``block_count`` blocks) as
    the number of blocks taken over; :class:`UserError` below 1, beyond the blocks, or for a
    backbone that can't be cut (``can_cut``; ``cuttable`` names those that can)."""
    if reuse_blocks is None:
        return block_count
    if reuse_blocks < 1:
        raise UserError(
            f"reuse_blocks: must be at least 1 (the lowest block), or null to take over all "
            f"blocks; got {reuse_blocks}"
        )
    if not can_cut:
        which = f" ({', '.join(cuttable)})" if cuttable else ""
        raise UserError(
            f"reuse_blocks: {backbone} can't be cut at a block boundary (a TF Hub SavedModel's "
            f"graph can't be split); only the built-in backbones{which} can. Choose one of "
            "them, or set reuse_blocks=null to take over the whole backbone"
        )
    if reuse_blocks > block_count:
        raise UserError(
            f"reuse_blocks: {reuse_blocks} is more than {backbone}'s {block_count} blocks; "
            f"choose between 1 and {block_count}, or null for all"
        )
    return reuse_blocks


def top_block_variables(blocks: Sequence[Block], unfreeze_blocks: int | None) -> set[str]:
    """Names of the variables in the last ``unfreeze_blocks`` blocks (checked)."""
    unfreeze_blocks = check_unfreeze_blocks(len(blocks), unfreeze_blocks)
    top = blocks[len(blocks) - unfreeze_blocks :]
    return {name for block in top for name in block.variables}
