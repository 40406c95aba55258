"""MobileNet V1, V2 and V3, mirroring ``torchvision.models.mobilenetv2`` / ``mobilenetv3``.

Module names follow torchvision's attribute names. torchvision's ``Conv2dNormActivation`` is a
Sequential (0 = conv, 1 = BatchNorm, then the activation), so its two layers are flat flax modules
named ``<prefix>_0`` and ``<prefix>_1``:

    mobilenet_v2  features.0.0.weight           ->  params/features_0_0/kernel
                  features.1.conv.0.0.weight    ->  params/features_1/conv_0_0/kernel
                  features.1.conv.1.weight      ->  params/features_1/conv_1/kernel
                  classifier.1.weight           ->  params/classifier_1/kernel
    mobilenet_v3  features.1.block.0.0.weight   ->  params/features_1/block_0_0/kernel
                  features.4.block.2.fc1.weight ->  params/features_4/block_2/fc1/kernel
                  classifier.0 / classifier.3   ->  params/classifier_0 / classifier_3

Depthwise convolutions are ``layers.conv(..., groups=channels)``.

MobileNet V1 (Howard et al. 2017) has no torchvision counterpart and so no torchvision weights to
import; its variables still export to (and import from) torch key names through the generic
converter (``features.1.dw.0.weight`` ...), which a PyTorch model with the same attribute names
loads strictly.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxzoo.models import layers
from jaxzoo.models.registry import ModelSpec, register

# torchvision's classifier init for MobileNets: nn.init.normal_(weight, 0, 0.01), zero bias.
_linear_init = nn.initializers.normal(0.01)


ModuleDef = Any


# ---------------------------------------------------------------------------------------------
# MobileNet V1
# ---------------------------------------------------------------------------------------------

# The paper's Table 1: (stride, output channels) of the 13 depthwise separable blocks that follow
# the 3x3/2 stem of 32 channels. The table prints "s2" for the next-to-last depthwise conv, but its
# output stays 7x7, so it is stride 1 (as in TF-slim's reference implementation).
_V1_BLOCKS = ((1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
              (1, 512), (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024))


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv + BN + ReLU (``dw_0``, ``dw_1``), then 1x1 pointwise conv + BN + ReLU
    (``pw_0``, ``pw_1``)."""

    features: int
    conv: ModuleDef
    norm: ModuleDef
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        block = functools.partial(layers.conv_norm_act, conv=self.conv, norm=self.norm)
        channels = x.shape[-1]
        x = block(x, train, channels, 3, self.stride, groups=channels, name="dw")
        return block(x, train, self.features, 1, name="pw")


class MobileNetV1(layers.ZooModel):
    """MobileNet V1: a 3x3/2 conv, 13 depthwise separable blocks, global average pool, fc.

    ``alpha`` is the paper's width multiplier: every layer has ``max(int(c * alpha), min_depth)``
    channels (TF-slim's rule). The paper's resolution multiplier is simply the input size: the
    network takes any input of at least ``min_size`` pixels.

    ``features``: the pooled features before the classifier, (N, max(int(1024 * alpha),
    min_depth)). ``feature_maps``: the output of the last layer of ``features`` at strides 4, 8,
    16 and 32.
    """

    alpha: float = 1.0
    min_depth: int = 8
    remat: str = "none"
    min_size: int = 32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, output: str = "logits"):
        layers.check_input(x, "mobilenet_v1", self.min_size, self.in_channels, output)
        if self.alpha <= 0:
            raise ValueError(f"alpha (the width multiplier) must be positive, got {self.alpha}")
        conv, norm = layers.conv_and_norm(self)

        def depth(c: int) -> int:
            return max(int(c * self.alpha), self.min_depth)

        x = x.astype(self.dtype)
        x = layers.conv_norm_act(x, train, depth(32), 3, 2, conv=conv, norm=norm,
                                 name="features_0")
        maps = layers.StrideMaps(2, x)
        for i, (stride, channels) in enumerate(_V1_BLOCKS):
            x = layers.remat_block(DepthwiseSeparable, self.remat)(depth(channels), conv, norm,
                                                                   stride,
                                   name=f"features_{i + 1}")(x, train)
            maps.add(stride, x)
        if output == "feature_maps":
            return maps.at_strides()
        x = layers.global_avg_pool(x)
        if output == "features":
            return x
        return layers.dense(self.num_classes, dtype=self.dtype, kernel_init=_linear_init,
                            name="fc")(x)


# ---------------------------------------------------------------------------------------------
# MobileNet V2
# ---------------------------------------------------------------------------------------------

# t (expansion), c (output channels), n (repeats), s (stride of the first repeat): torchvision's.
_V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand (ReLU6, absent when ``expand_ratio == 1``), 3x3 depthwise
    (ReLU6), 1x1 linear projection (conv ``conv_<k>`` + BN ``conv_<k+1>``), residual when the
    shape is kept."""

    out_channels: int
    stride: int
    expand_ratio: int
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x, train: bool):
        if self.stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2 instead of {self.stride}")
        conv, norm = self.conv, self.norm
        act = functools.partial(layers.conv_norm_act, conv=conv, norm=norm,
                                activation=layers.relu6)
        in_channels = x.shape[-1]
        hidden = round(in_channels * self.expand_ratio)

        out, i = x, 0
        if self.expand_ratio != 1:
            out = act(out, train, hidden, 1, name="conv_0")
            i = 1
        out = act(out, train, hidden, 3, self.stride, groups=hidden, name=f"conv_{i}")
        out = conv(self.out_channels, 1, name=f"conv_{i + 1}")(out)
        out = norm(name=f"conv_{i + 2}")(out, train)
        if self.stride == 1 and in_channels == self.out_channels:
            return x + out
        return out


class MobileNetV2(layers.ZooModel):
    """torchvision's MobileNetV2: channels ``layers.make_divisible(c * width_mult, round_nearest)``,
    the last conv ``make_divisible(1280 * max(1, width_mult))``, dropout before the classifier.

    ``features``: the pooled features before the classifier (the input of ``classifier.1``).
    ``feature_maps``: the output of the last layer of ``features`` at strides 4, 8, 16 and 32.
    """

    width_mult: float = 1.0
    inverted_residual_setting: Sequence[Sequence[int]] | None = None
    round_nearest: int = 8
    dropout: float = 0.2
    remat: str = "none"
    min_size: int = 32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, output: str = "logits"):
        layers.check_input(x, "mobilenet_v2", self.min_size, self.in_channels, output)
        setting = self.inverted_residual_setting or _V2_SETTING
        if len(setting) == 0 or any(len(row) != 4 for row in setting):
            raise ValueError("inverted_residual_setting must be a non-empty list of "
                             f"[t, c, n, s] rows, got {setting}")
        conv, norm = layers.conv_and_norm(self)
        make_divisible = functools.partial(layers.make_divisible, divisor=self.round_nearest)
        conv_bn_relu6 = functools.partial(layers.conv_norm_act, conv=conv, norm=norm,
                                          activation=layers.relu6)

        x = x.astype(self.dtype)
        x = conv_bn_relu6(x, train, make_divisible(32 * self.width_mult), 3, 2, name="features_0")
        maps = layers.StrideMaps(2, x)
        index = 1
        for t, c, n, s in setting:
            out_channels = make_divisible(c * self.width_mult)
            for i in range(n):
                x = layers.remat_block(InvertedResidual, self.remat)(
                    out_channels, s if i == 0 else 1, t, conv, norm,
                    name=f"features_{index}")(x, train)
                maps.add(s if i == 0 else 1, x)
                index += 1
        last_channel = make_divisible(1280 * max(1.0, self.width_mult))
        x = conv_bn_relu6(x, train, last_channel, 1, name=f"features_{index}")
        if output == "feature_maps":
            return maps.add(1, x).at_strides()

        x = layers.global_avg_pool(x)
        if output == "features":
            return x
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return layers.dense(self.num_classes, dtype=self.dtype, kernel_init=_linear_init,
                            name="classifier_1")(x)


# ---------------------------------------------------------------------------------------------
# MobileNet V3
# ---------------------------------------------------------------------------------------------

# torchvision's _mobilenet_v3_conf, before width and tail adjustments: input channels, kernel,
# expanded channels, output channels, squeeze-excitation, activation (RE = ReLU, HS = hardswish),
# stride. The last three rows (the C4 stage) are the ones `reduced_tail` halves and `dilated`
# dilates.
_V3_LARGE = (
    (16, 3, 16, 16, False, "RE", 1), (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1), (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1), (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2), (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1), (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1), (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
)
_V3_SMALL = (
    (16, 3, 16, 16, True, "RE", 2), (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1), (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1), (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1), (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2), (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
)
_V3_LAST_CHANNEL = {"mobilenet_v3_large": 1280, "mobilenet_v3_small": 1024}


def mobilenet_v3_config(arch: str, width_mult: float = 1.0, reduced_tail: bool = False,
                        dilated: bool = False):
    """torchvision's ``_mobilenet_v3_conf``: per block (input, kernel, expanded, output channels,
    use_se, use_hardswish, stride, dilation) after the width multiplier, and the classifier's
    hidden width."""
    table = {"mobilenet_v3_large": _V3_LARGE, "mobilenet_v3_small": _V3_SMALL}[arch]
    divider = 2 if reduced_tail else 1
    dilation = 2 if dilated else 1

    def adjust(c):  # InvertedResidualConfig.adjust_channels
        return layers.make_divisible(c * width_mult, 8)

    blocks = []
    for i, (cin, k, exp, cout, se, act, stride) in enumerate(table):
        tail = len(table) - i  # 3, 2, 1 for the C4 stage
        if tail <= 3:
            # torchvision halves the C4 stage's widths, except the input and expansion of its
            # first block, which still follow the previous stage.
            cin = cin if tail == 3 else cin // divider
            exp = exp if tail == 3 else exp // divider
            cout = cout // divider
        blocks.append((adjust(cin), k, adjust(exp), adjust(cout), se, act == "HS", stride,
                       dilation if tail <= 3 else 1))
    return tuple(blocks), adjust(_V3_LAST_CHANNEL[arch] // divider)


class InvertedResidualV3(nn.Module):
    """MobileNetV3's block (``features.<i>.block``): optional 1x1 expand, depthwise conv,
    optional squeeze-excitation, 1x1 linear projection; residual when the shape is kept."""

    kernel: int
    expanded_channels: int
    out_channels: int
    use_se: bool
    use_hs: bool
    stride: int
    conv: ModuleDef
    norm: ModuleDef
    dilation: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        act = layers.hard_swish if self.use_hs else nn.relu
        block = functools.partial(layers.conv_norm_act, conv=self.conv, norm=self.norm)
        in_channels = x.shape[-1]

        out, i = x, 0
        if self.expanded_channels != in_channels:
            out = block(out, train, self.expanded_channels, 1, activation=act, name="block_0")
            i += 1
        # torchvision: a dilated block does not stride.
        stride = 1 if self.dilation > 1 else self.stride
        out = block(out, train, self.expanded_channels, self.kernel, stride,
                    groups=self.expanded_channels, dilation=self.dilation, activation=act,
                    name=f"block_{i}")
        i += 1
        if self.use_se:
            squeeze = layers.make_divisible(self.expanded_channels // 4, 8)
            # torchvision: partial(SqueezeExcitation, scale_activation=nn.Hardsigmoid), ReLU.
            out = layers.SqueezeExcitation(squeeze, self.conv,
                                           scale_activation=layers.hard_sigmoid,
                                           name=f"block_{i}")(out)
            i += 1
        out = block(out, train, self.out_channels, 1, activation=None, name=f"block_{i}")
        if self.stride == 1 and in_channels == self.out_channels:
            out = out + x
        return out


class MobileNetV3(layers.ZooModel):
    """torchvision's MobileNetV3 (``arch`` is ``mobilenet_v3_large`` or ``mobilenet_v3_small``).

    Classifier: Linear ``classifier_0`` -> hardswish -> dropout -> Linear ``classifier_3``.
    ``features``: the pooled features, the input of ``classifier_0``. ``feature_maps``: the
    output of the last layer of ``features`` at strides 4, 8, 16 and 32.
    """

    arch: str = "mobilenet_v3_large"
    width_mult: float = 1.0
    reduced_tail: bool = False
    dilated: bool = False
    dropout: float = 0.2
    remat: str = "none"
    min_size: int = 32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, output: str = "logits"):
        layers.check_input(x, self.arch, self.min_size, self.in_channels, output)
        if self.arch not in _V3_LAST_CHANNEL:
            raise ValueError(f"arch must be one of {sorted(_V3_LAST_CHANNEL)}, got {self.arch!r}")
        blocks, last_channel = mobilenet_v3_config(self.arch, self.width_mult, self.reduced_tail,
                                                   self.dilated)
        # torchvision's MobileNetV3 BatchNorm: eps 1e-3, torch momentum 0.01 (flax 0.99).
        conv, norm = layers.conv_and_norm(self, momentum=0.99, epsilon=1e-3)
        conv_bn_hswish = functools.partial(layers.conv_norm_act, conv=conv, norm=norm,
                                           activation=layers.hard_swish)

        x = x.astype(self.dtype)
        x = conv_bn_hswish(x, train, blocks[0][0], 3, 2, name="features_0")
        maps = layers.StrideMaps(2, x)
        for i, (_, k, exp, cout, se, hs, stride, dilation) in enumerate(blocks):
            x = layers.remat_block(InvertedResidualV3, self.remat)(
                k, exp, cout, se, hs, stride, conv, norm, dilation,
                name=f"features_{i + 1}")(x, train)
            maps.add(stride, x)  # the nominal stride: a dilated block counts as striding
        x = conv_bn_hswish(x, train, 6 * blocks[-1][3], 1, name=f"features_{len(blocks) + 1}")
        if output == "feature_maps":
            return maps.add(1, x).at_strides()

        x = layers.global_avg_pool(x)
        if output == "features":
            return x
        dense = functools.partial(layers.dense, dtype=self.dtype, kernel_init=_linear_init)
        x = layers.hard_swish(dense(last_channel, name="classifier_0")(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return dense(self.num_classes, name="classifier_3")(x)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

def _mobilenet_v1(num_classes=1000, dtype=jnp.float32, **kwargs):
    return MobileNetV1(num_classes=num_classes, dtype=dtype, **kwargs)


def _mobilenet_v2(num_classes=1000, dtype=jnp.float32, **kwargs):
    return MobileNetV2(num_classes=num_classes, dtype=dtype, **kwargs)


def _mobilenet_v3(arch):
    def builder(num_classes=1000, dtype=jnp.float32, **kwargs):
        return MobileNetV3(arch=arch, num_classes=num_classes, dtype=dtype, **kwargs)
    return builder


register(ModelSpec(name="mobilenet_v1", builder=_mobilenet_v1, torchvision=None, head=("fc",),
                   feature_channels=(128, 256, 512, 1024),
                   description="MobileNet V1 (Howard et al. 2017), width multiplier alpha"))
register(ModelSpec(name="mobilenet_v2", builder=_mobilenet_v2, torchvision="mobilenet_v2",
                   head=("classifier.1",), features_at="classifier.1",
                   feature_channels=(24, 32, 96, 1280),
                   description="MobileNet V2"))
for _arch, _desc, _channels in (("mobilenet_v3_large", "MobileNet V3 Large", (24, 40, 112, 960)),
                                ("mobilenet_v3_small", "MobileNet V3 Small", (16, 24, 48, 576))):
    register(ModelSpec(name=_arch, builder=_mobilenet_v3(_arch), torchvision=_arch,
                       head=("classifier.3",), features_at="classifier.0",
                       feature_channels=_channels, description=_desc))
