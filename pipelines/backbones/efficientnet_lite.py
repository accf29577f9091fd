"""EfficientNet-Lite0/1/2 in ``tf_keras``, built from a PyTorch state dict's shapes.

The Lite variants (Tan & Le, 2019; TF's ``efficientnet/lite``) differ from EfficientNet in
ways that matter for mobile: no squeeze-excite, ReLU6, and the stem (32) and head (1280)
widths and the first and last stages' repeats are fixed across variants. Everything else
(block count per stage, widths, kernel sizes, expansion) is read from the state dict, so a
variant is whatever its weights say. Only the stage strides come from the architecture:
``STAGE_STRIDES``, the seven EfficientNet stages.

The model is a chain of named blocks, each a small functional ``tf_keras.Model``:
``stem``, ``block_00`` ... ``block_NN``, ``head`` (conv 1x1 + BN + ReLU6), then global
average pooling. Keeping blocks as sub-models lets the engine split the network at any block
boundary. Padding is TF ``same`` (the weights were trained with it). Layer names are
prefixed with their block, so variable names say which block they belong to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import tf_keras as keras

STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99


@dataclass(frozen=True)
class BlockSpec:
    index: int
    in_channels: int
    out_channels: int
    expanded: int
    kernel: int
    stride: int

    @property
    def has_expand(self) -> bool:
        return self.expanded != self.in_channels

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def name(self) -> str:
        return f"block_{self.index:02d}"


def block_specs(state: dict[str, np.ndarray]) -> list[BlockSpec]:
    """Derive the MBConv blocks from the state dict; stage starts get the stage strides.

    A new stage begins where a block's input width differs from its output width (the first
    block of each EfficientNet stage changes width; repeats keep it).
    """
    count = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\.", k)))
    specs: list[BlockSpec] = []
    stage = -1
    for i in range(count):
        dw = state[f"_blocks.{i}._depthwise_conv.weight"]  # (expanded, 1, k, k)
        project = state[f"_blocks.{i}._project_conv.weight"]  # (out, expanded, 1, 1)
        expand = state.get(f"_blocks.{i}._expand_conv.weight")  # (expanded, in, 1, 1)
        in_ch = expand.shape[1] if expand is not None else dw.shape[0]
        out_ch = project.shape[0]
        starts_stage = in_ch != out_ch or i == 0
        if starts_stage:
            stage += 1
        if stage >= len(STAGE_STRIDES):
            raise ValueError(f"state dict has more than {len(STAGE_STRIDES)} stages")
        stride = STAGE_STRIDES[stage] if starts_stage else 1
        specs.append(BlockSpec(i, in_ch, out_ch, dw.shape[0], dw.shape[2], stride))
    if stage != len(STAGE_STRIDES) - 1:
        raise ValueError(f"state dict has {stage + 1} stages, expected {len(STAGE_STRIDES)}")
    return specs


def _bn(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _relu6(name: str) -> keras.layers.ReLU:
    return keras.layers.ReLU(6.0, name=name)


def _stem(stem_width: int) -> keras.Model:
    x = inputs = keras.Input((None, None, 3), name="stem_input")
    x = keras.layers.Conv2D(stem_width, 3, 2, "same", use_bias=False, name="stem_conv")(x)
    x = _bn("stem_bn")(x)
    x = _relu6("stem_relu")(x)
    return keras.Model(inputs, x, name="stem")


def _mbconv(spec: BlockSpec) -> keras.Model:
    p = spec.name
    x = inputs = keras.Input((None, None, spec.in_channels), name=f"{p}_input")
    if spec.has_expand:
        x = keras.layers.Conv2D(spec.expanded, 1, use_bias=False, name=f"{p}_expand_conv")(x)
        x = _bn(f"{p}_expand_bn")(x)
        x = _relu6(f"{p}_expand_relu")(x)
    x = keras.layers.DepthwiseConv2D(
        spec.kernel, spec.stride, "same", use_bias=False, name=f"{p}_dwconv"
    )(x)
    x = _bn(f"{p}_dw_bn")(x)
    x = _relu6(f"{p}_dw_relu")(x)
    x = keras.layers.Conv2D(spec.out_channels, 1, use_bias=False, name=f"{p}_project_conv")(x)
    x = _bn(f"{p}_project_bn")(x)
    if spec.has_skip:
        x = keras.layers.Add(name=f"{p}_add")([x, inputs])
    return keras.Model(inputs, x, name=p)


def _head(in_channels: int, width: int) -> keras.Model:
    x = inputs = keras.Input((None, None, in_channels), name="head_input")
    x = keras.layers.Conv2D(width, 1, use_bias=False, name="head_conv")(x)
    x = _bn("head_bn")(x)
    x = _relu6("head_relu")(x)
    return keras.Model(inputs, x, name="head")


def build_blocks(state: dict[str, np.ndarray]) -> list[keras.Model]:
    """The backbone's blocks, input to output, without weights loaded."""
    specs = block_specs(state)
    stem_width = state["_conv_stem.weight"].shape[0]
    head_width = state["_conv_head.weight"].shape[0]
    return [
        _stem(stem_width),
        *(_mbconv(s) for s in specs),
        _head(specs[-1].out_channels, head_width),
    ]


def chain(blocks: list[keras.Model], *, pool: bool = True, name: str = "backbone") -> keras.Model:
    """Chain ``blocks`` into one model taking images of any size; pool to a feature vector."""
    in_channels = blocks[0].input_shape[-1]
    x = inputs = keras.Input((None, None, in_channels), name=f"{name}_input")
    for block in blocks:
        x = block(x)
    if pool:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, x, name=name)


def _conv_kernel(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))  # torch (out, in, kh, kw) -> keras (kh, kw, in, out)


def _dw_kernel(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 0, 1))  # torch (ch, 1, kh, kw) -> keras (kh, kw, ch, 1)


def _bn_weights(state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def load_weights(blocks: list[keras.Model], state: dict[str, np.ndarray]) -> None:
    """Copy the state dict into ``blocks`` (from :func:`build_blocks`); shapes must match."""
    stem, *mbconvs, head = blocks
    stem.get_layer("stem_conv").set_weights([_conv_kernel(state["_conv_stem.weight"])])
    stem.get_layer("stem_bn").set_weights(_bn_weights(state, "_bn0"))
    for i, block in enumerate(mbconvs):
        t, p = f"_blocks.{i}", block.name
        if f"{t}._expand_conv.weight" in state:
            block.get_layer(f"{p}_expand_conv").set_weights(
                [_conv_kernel(state[f"{t}._expand_conv.weight"])]
            )
            block.get_layer(f"{p}_expand_bn").set_weights(_bn_weights(state, f"{t}._bn0"))
        block.get_layer(f"{p}_dwconv").set_weights(
            [_dw_kernel(state[f"{t}._depthwise_conv.weight"])]
        )
        block.get_layer(f"{p}_dw_bn").set_weights(_bn_weights(state, f"{t}._bn1"))
        block.get_layer(f"{p}_project_conv").set_weights(
            [_conv_kernel(state[f"{t}._project_conv.weight"])]
        )
        block.get_layer(f"{p}_project_bn").set_weights(_bn_weights(state, f"{t}._bn2"))
    head.get_layer("head_conv").set_weights([_conv_kernel(state["_conv_head.weight"])])
    head.get_layer("head_bn").set_weights(_bn_weights(state, "_bn1"))


def classifier_weights(state: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The 1000-class ImageNet classifier as a Keras Dense kernel and bias."""
    return state["_fc.weight"].T.copy(), state["_fc.bias"].copy()
