"""Blocks derived from variable names, for SavedModels that don't list their own."""

import pytest

from pipelines.backbones.blocks import derive_blocks, top_block_variables
from pipelines.errors import UserError


def _names(blocks):
    return [b.name for b in blocks]


def test_tf_slim_mobilenet_names():
    names = [
        "MobilenetV2/Conv/weights:0",
        "MobilenetV2/Conv/BatchNorm/gamma:0",
        "MobilenetV2/expanded_conv/depthwise/depthwise_weights:0",
        "MobilenetV2/expanded_conv_1/expand/weights:0",
        "MobilenetV2/expanded_conv_1/project/weights:0",
        "MobilenetV2/Conv_1/weights:0",
    ]
    blocks = derive_blocks(names)
    assert _names(blocks) == ["Conv", "expanded_conv", "expanded_conv_1", "Conv_1"]
    assert blocks[2].variables == names[3:5]


def test_resnet_units_are_blocks():
    names = [
        "resnet_v2_50/conv1/weights:0",
        "resnet_v2_50/block1/unit_1/bottleneck_v2/conv1/weights:0",
        "resnet_v2_50/block1/unit_1/bottleneck_v2/conv2/weights:0",
        "resnet_v2_50/block1/unit_2/bottleneck_v2/conv1/weights:0",
        "resnet_v2_50/block2/unit_1/bottleneck_v2/conv1/weights:0",
        "resnet_v2_50/postnorm/gamma:0",
    ]
    assert _names(derive_blocks(names)) == [
        "conv1",
        "block1/unit_1",
        "block1/unit_2",
        "block2/unit_1",
        "postnorm",
    ]


def test_keras_applications_names():
    names = [
        "stem_conv/kernel:0",
        "stem_bn/gamma:0",
        "block1a_project_conv/kernel:0",
        "block1a_project_bn/beta:0",
        "block2a_expand_conv/kernel:0",
        "block2b_expand_conv/kernel:0",
        "top_conv/kernel:0",
        "top_bn/moving_mean:0",
    ]
    assert _names(derive_blocks(names)) == ["stem", "block1a", "block2a", "block2b", "top"]


def test_names_that_say_nothing_fall_back_to_chunks_cut_before_kernels():
    names = []
    for i in range(24):
        names += [f"Variable_{3 * i}:0", f"Variable_{3 * i + 1}/gamma:0", f"bias_{i}:0"]
    blocks = derive_blocks(names, fallback_blocks=6)
    assert len(blocks) == 6
    assert sum(len(b.variables) for b in blocks) == len(names)
    assert [v for b in blocks for v in b.variables] == names  # order kept, nothing lost
    assert all(not b.variables[0].startswith(("bias", "Variable_1/")) for b in blocks)


def test_top_block_variables_bounds():
    blocks = derive_blocks(["a/k:0", "b/k:0", "c/k:0"])
    assert top_block_variables(blocks, 0) == set()
    assert top_block_variables(blocks, 2) == {"b/k:0", "c/k:0"}
    assert top_block_variables(blocks, 3) == {"a/k:0", "b/k:0", "c/k:0"}
    with pytest.raises(UserError, match="between 0 and 3"):
        top_block_variables(blocks, 4)
    with pytest.raises(UserError, match="between 0 and 3"):
        top_block_variables(blocks, -1)
