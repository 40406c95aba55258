"""EfficientNet B0-B7 and EfficientNetV2 S/M/L, mirroring ``torchvision.models.efficientnet``.

Module names follow torchvision's attribute names. ``features`` is a Sequential: the stem
(``features.0``, a Conv2dNormActivation), one Sequential of blocks per stage (``features.<s>.<i>``),
and the last 1x1 conv (``features.<n>``); inside a block, ``block`` is a Sequential again:

    efficientnet_b0    features.0.0.weight               ->  params/features_0_0/kernel
                       features.1.0.block.0.0.weight     ->  params/features_1_0/block_0_0/kernel
                       features.2.0.block.2.fc1.weight   ->  params/features_2_0/block_2/fc1/kernel
                       classifier.1.weight               ->  params/classifier_1/kernel
    efficientnet_v2_s  features.2.0.block.1.1.weight     ->  params/features_2_0/block_1_1/scale

MBConv: 1x1 expand (absent when the expansion keeps the width), depthwise kxk, squeeze-excitation
(SiLU, sigmoid), 1x1 linear projection. FusedMBConv (EfficientNetV2's first stages): a kxk conv that
expands, then a 1x1 projection (or a single kxk conv + SiLU when it does not expand). A block that
keeps its shape adds its input after stochastic depth (torchvision's ``StochasticDepth(p, "row")``),
whose rate grows linearly with the block's index.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxzoo.models import layers
from jaxzoo.models.registry import ModelSpec, register

ModuleDef = Any


def _classifier_init(key, shape, dtype=jnp.float32):
    """torchvision's EfficientNet Linear init: U(-1/sqrt(out_features), 1/sqrt(out_features))
    (out_features, not in_features as torch's default), for the (in, out) kernel."""
    bound = 1.0 / math.sqrt(shape[-1])
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def _adjust_channels(channels: float, width_mult: float = 1.0) -> int:
    """torchvision's ``_MBConvConfig.adjust_channels``: a multiple of 8 (``_make_divisible``)."""
    return layers.make_divisible(channels * width_mult, 8)


class _MBConvBlock(nn.Module):
    """What ``MBConv`` and ``FusedMBConv`` share: their fields (torchvision's ``_MBConvConfig``
    and the block's stochastic depth rate), their start and their residual."""

    expand_ratio: float
    kernel: int
    stride: int
    out_channels: int
    conv: ModuleDef
    norm: ModuleDef
    stochastic_depth_prob: float = 0.0

    @nn.nowrap
    def _start(self, x) -> tuple[ModuleDef, int, int]:
        """Check the stride; the block's conv + BN + SiLU, its input width and its expanded
        width."""
        if self.stride not in (1, 2):
            raise ValueError("illegal stride value")
        conv_bn_silu = functools.partial(layers.conv_norm_act, conv=self.conv, norm=self.norm,
                                         activation=nn.silu)
        in_channels = x.shape[-1]
        return conv_bn_silu, in_channels, _adjust_channels(in_channels, self.expand_ratio)

    @nn.nowrap
    def _residual(self, x, out, train: bool):
        """``out``, plus the input after stochastic depth where the block keeps the shape."""
        if self.stride == 1 and x.shape[-1] == self.out_channels:
            # torchvision: result = stochastic_depth(block(x)); result += x
            out = layers.StochasticDepth(self.stochastic_depth_prob, "row")(out, train) + x
        return out


class MBConv(_MBConvBlock):
    """torchvision's ``MBConv`` (``features.<s>.<i>``). The squeeze width is a quarter of the
    block's input width (not of the expanded width), at least 1, as in torchvision."""

    @nn.compact
    def __call__(self, x, train: bool):
        block, in_channels, expanded = self._start(x)
        out, i = x, 0
        if expanded != in_channels:
            out = block(out, train, expanded, 1, name="block_0")
            i = 1
        out = block(out, train, expanded, self.kernel, self.stride, groups=expanded,
                    name=f"block_{i}")
        # torchvision: SqueezeExcitation(expanded, squeeze, activation=nn.SiLU), sigmoid gate.
        out = layers.SqueezeExcitation(max(1, in_channels // 4), self.conv, activation=nn.silu,
                                       name=f"block_{i + 1}")(out)
        out = block(out, train, self.out_channels, 1, activation=None, name=f"block_{i + 2}")
        return self._residual(x, out, train)


class FusedMBConv(_MBConvBlock):
    """torchvision's ``FusedMBConv``: a kxk conv that expands (``block_0``) and a linear 1x1
    projection (``block_1``), or, when the expansion keeps the width, one kxk conv + BN + SiLU
    (activation included, as torchvision's)."""

    @nn.compact
    def __call__(self, x, train: bool):
        block, in_channels, expanded = self._start(x)
        if expanded != in_channels:
            out = block(x, train, expanded, self.kernel, self.stride, name="block_0")
            out = block(out, train, self.out_channels, 1, activation=None, name="block_1")
        else:
            out = block(x, train, self.out_channels, self.kernel, self.stride, name="block_0")
        return self._residual(x, out, train)


# torchvision's _efficientnet_conf, per stage: block, expand ratio, kernel, stride, input channels,
# output channels, layers (before the width and depth multipliers of B0-B7).
_V1_STAGES = (
    ("mb", 1, 3, 1, 32, 16, 1), ("mb", 6, 3, 2, 16, 24, 2), ("mb", 6, 5, 2, 24, 40, 2),
    ("mb", 6, 3, 2, 40, 80, 3), ("mb", 6, 5, 1, 80, 112, 3), ("mb", 6, 5, 2, 112, 192, 4),
    ("mb", 6, 3, 1, 192, 320, 1),
)
_V2_STAGES = {
    "efficientnet_v2_s": (
        ("fused", 1, 3, 1, 24, 24, 2), ("fused", 4, 3, 2, 24, 48, 4),
        ("fused", 4, 3, 2, 48, 64, 4), ("mb", 4, 3, 2, 64, 128, 6),
        ("mb", 6, 3, 1, 128, 160, 9), ("mb", 6, 3, 2, 160, 256, 15),
    ),
    "efficientnet_v2_m": (
        ("fused", 1, 3, 1, 24, 24, 3), ("fused", 4, 3, 2, 24, 48, 5),
        ("fused", 4, 3, 2, 48, 80, 5), ("mb", 4, 3, 2, 80, 160, 7),
        ("mb", 6, 3, 1, 160, 176, 14), ("mb", 6, 3, 2, 176, 304, 18),
        ("mb", 6, 3, 1, 304, 512, 5),
    ),
    "efficientnet_v2_l": (
        ("fused", 1, 3, 1, 32, 32, 4), ("fused", 4, 3, 2, 32, 64, 7),
        ("fused", 4, 3, 2, 64, 96, 7), ("mb", 4, 3, 2, 96, 192, 10),
        ("mb", 6, 3, 1, 192, 224, 19), ("mb", 6, 3, 2, 224, 384, 25),
        ("mb", 6, 3, 1, 384, 640, 7),
    ),
}
# B0-B7: width multiplier, depth multiplier, classifier dropout (torchvision's builders).
_V1_MULTIPLIERS = {
    "efficientnet_b0": (1.0, 1.0, 0.2), "efficientnet_b1": (1.0, 1.1, 0.2),
    "efficientnet_b2": (1.1, 1.2, 0.3), "efficientnet_b3": (1.2, 1.4, 0.3),
    "efficientnet_b4": (1.4, 1.8, 0.4), "efficientnet_b5": (1.6, 2.2, 0.4),
    "efficientnet_b6": (1.8, 2.6, 0.5), "efficientnet_b7": (2.0, 3.1, 0.5),
}
_V2_DROPOUT = {"efficientnet_v2_s": 0.2, "efficientnet_v2_m": 0.3, "efficientnet_v2_l": 0.4}
# torchvision's eval crop per model (its weights' transforms): the default input size.
DEFAULT_SIZES = {
    "efficientnet_b0": 224, "efficientnet_b1": 240, "efficientnet_b2": 288,
    "efficientnet_b3": 300, "efficientnet_b4": 380, "efficientnet_b5": 456,
    "efficientnet_b6": 528, "efficientnet_b7": 600,
    "efficientnet_v2_s": 384, "efficientnet_v2_m": 480, "efficientnet_v2_l": 480,
}
ARCHS = tuple(DEFAULT_SIZES)


def efficientnet_config(arch: str):
    """torchvision's configuration of ``arch``: per stage (block kind "mb" or "fused", expand
    ratio, kernel, stride, input channels, output channels, layers) after the width and depth
    multipliers; the last conv's width; BatchNorm (flax momentum, epsilon); classifier dropout."""
    if arch in _V1_MULTIPLIERS:
        width, depth, dropout = _V1_MULTIPLIERS[arch]
        stages = tuple(
            (kind, t, k, s, _adjust_channels(cin, width), _adjust_channels(cout, width),
             math.ceil(n * depth))  # MBConvConfig.adjust_depth
            for kind, t, k, s, cin, cout, n in _V1_STAGES)
        last_channel = 4 * stages[-1][5]
        # torchvision: B0-B4 keep BatchNorm2d's defaults (eps 1e-5, momentum 0.1); B5-B7 use
        # eps 1e-3 and torch momentum 0.01 (flax 0.99).
        bn = (0.99, 1e-3) if arch in ("efficientnet_b5", "efficientnet_b6",
                                       "efficientnet_b7") else (0.9, 1e-5)
    elif arch in _V2_STAGES:
        stages = tuple((kind, t, k, s, _adjust_channels(cin), _adjust_channels(cout), n)
                       for kind, t, k, s, cin, cout, n in _V2_STAGES[arch])
        last_channel = 1280
        dropout = _V2_DROPOUT[arch]
        bn = (0.9, 1e-3)  # torchvision: BatchNorm2d(eps=1e-3), default momentum 0.1
    else:
        raise ValueError(f"arch must be one of {list(ARCHS)}, got {arch!r}")
    return stages, last_channel, bn, dropout


class EfficientNet(layers.ZooModel):
    """torchvision's EfficientNet (``arch`` is ``efficientnet_b0`` ... ``efficientnet_b7`` or
    ``efficientnet_v2_s/m/l``).

    ``dropout`` (before the classifier) defaults to torchvision's value for ``arch`` (None).
    ``stochastic_depth_prob`` sets the stochastic depth rates: block ``i`` of ``n`` (counted from
    0 over all stages) gets ``stochastic_depth_prob * i / n``, as in torchvision (only blocks with
    a residual use theirs). Both draw from the ``"dropout"`` rng in train mode.

    ``features``: the pooled features, the input of the classifier Linear (``classifier.1``).
    ``feature_maps``: the output of the last layer of ``features`` at strides 4, 8, 16 and 32.
    """

    arch: str = "efficientnet_b0"
    dropout: float | None = None
    stochastic_depth_prob: float = 0.2
    min_size: int = 32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, output: str = "logits"):
        layers.check_input(x, self.arch, self.min_size, self.in_channels, output)
        stages, last_channel, (momentum, epsilon), default_dropout = efficientnet_config(self.arch)
        dropout = default_dropout if self.dropout is None else self.dropout
        conv, norm = layers.conv_and_norm(self, momentum=momentum, epsilon=epsilon)
        conv_bn_silu = functools.partial(layers.conv_norm_act, conv=conv, norm=norm,
                                         activation=nn.silu)

        x = x.astype(self.dtype)
        x = conv_bn_silu(x, train, stages[0][4], 3, 2, name="features_0")
        maps = layers.StrideMaps(2, x)
        total_blocks = sum(stage[-1] for stage in stages)
        block_id = 0
        for s, (kind, expand, kernel, stride, _, out_channels, num_layers) in enumerate(stages):
            block_type = MBConv if kind == "mb" else FusedMBConv
            for i in range(num_layers):
                # torchvision: sd_prob = stochastic_depth_prob * stage_block_id / total_blocks
                sd_prob = self.stochastic_depth_prob * float(block_id) / total_blocks
                block_stride = stride if i == 0 else 1
                x = block_type(expand, kernel, block_stride, out_channels, conv, norm, sd_prob,
                               name=f"features_{s + 1}_{i}")(x, train)
                maps.add(block_stride, x)
                block_id += 1
        x = conv_bn_silu(x, train, last_channel, 1, name=f"features_{len(stages) + 1}")
        if output == "feature_maps":
            return maps.add(1, x).at_strides()

        x = layers.global_avg_pool(x)
        if output == "features":
            return x
        x = nn.Dropout(dropout, deterministic=not train)(x)
        return layers.dense(self.num_classes, dtype=self.dtype, kernel_init=_classifier_init,
                            name="classifier_1")(x)


def _builder(arch):
    def builder(num_classes=1000, dtype=jnp.float32, **kwargs):
        return EfficientNet(arch=arch, num_classes=num_classes, dtype=dtype, **kwargs)
    return builder


def _feature_channels(arch):
    """The width of the last map at strides 4, 8, 16 and 32 (the last conv's at 32)."""
    stages, last_channel, _, _ = efficientnet_config(arch)
    widths, stride = {}, 2
    for _, _, _, s, _, cout, _ in stages:
        stride *= s
        widths[stride] = cout
    widths[32] = last_channel
    return tuple(widths[s] for s in (4, 8, 16, 32))


for _arch in ARCHS:
    _size = _arch.rsplit("_", 1)[-1].upper()  # B0 ... B7, S, M, L
    register(ModelSpec(name=_arch, builder=_builder(_arch), torchvision=_arch,
                       head=("classifier.1",), features_at="classifier.1",
                       default_size=DEFAULT_SIZES[_arch], min_size=32,
                       feature_channels=_feature_channels(_arch),
                       description=(f"EfficientNetV2-{_size}" if "_v2_" in _arch
                                    else f"EfficientNet-{_size}")))
