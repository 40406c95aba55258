"""MNASNet (B1 variant), mirroring ``torchvision.models.mnasnet`` (its version 2, with the width
multiplier applied to the stem as well).

torchvision's network is one Sequential ``layers`` (convs, BatchNorms, ReLUs, stacks of inverted
residuals) and a ``classifier`` (dropout, Linear). The flax modules carry the Sequential indices
of the layers that hold weights:

    layers.0.weight             ->  params/layers_0/kernel       (3x3/2 conv; layers.1: BatchNorm)
    layers.3 / layers.6         ->  params/layers_3 / layers_6   (depthwise 3x3, pointwise 1x1)
    layers.8.0.layers.0.weight  ->  params/layers_8_0/layers_0/kernel
    layers.14 / layers.15       ->  params/layers_14 / layers_15 (1x1 conv to 1280, BatchNorm)
    classifier.1.weight         ->  params/classifier_1/kernel
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxzoo.models import layers
from jaxzoo.models.registry import ModelSpec, register

ModuleDef = Any

# torchvision: _BN_MOMENTUM = 1 - 0.9997 in torch's convention (the paper's TensorFlow momentum
# 0.9997), which is flax's 0.9997.
_BN_MOMENTUM = 0.9997

# Kernel, stride, expansion factor and repeats of the six stacks (torchvision's _stack calls);
# stack i goes from depths[i + 1] to depths[i + 2] channels.
_STACKS = ((3, 2, 3, 3), (5, 2, 3, 3), (5, 2, 6, 3), (3, 1, 6, 2), (5, 2, 6, 4), (3, 1, 6, 1))
_DEPTHS = (32, 16, 24, 40, 80, 96, 192, 320)


def round_to_multiple_of(val: float, divisor: int, round_up_bias: float = 0.9) -> int:
    """torchvision's ``_round_to_multiple_of``: the nearest multiple of ``divisor`` (at least
    ``divisor``), one multiple up when that falls below ``round_up_bias * val``."""
    if not 0.0 < round_up_bias < 1.0:
        raise ValueError("round_up_bias should be greater than 0.0 and smaller than 1.0 "
                         f"instead of {round_up_bias}")
    new_val = max(divisor, int(val + divisor / 2) // divisor * divisor)
    return new_val if new_val >= round_up_bias * val else new_val + divisor


def mnasnet_depths(alpha: float) -> tuple[int, ...]:
    """torchvision's ``_get_depths``: every width of the network scaled by ``alpha``, stem
    included, rounded to multiples of 8."""
    return tuple(round_to_multiple_of(depth * alpha, 8) for depth in _DEPTHS)


class InvertedResidual(nn.Module):
    """torchvision's ``_InvertedResidual``: 1x1 expand + BN + ReLU (``layers_0``, ``layers_1``),
    depthwise conv + BN + ReLU (``layers_3``, ``layers_4``), 1x1 linear projection + BN
    (``layers_6``, ``layers_7``); residual when the shape is kept."""

    out_channels: int
    kernel_size: int
    stride: int
    expansion_factor: int
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x, train: bool):
        if self.stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2 instead of {self.stride}")
        if self.kernel_size not in (3, 5):
            raise ValueError(f"kernel_size should be 3 or 5 instead of {self.kernel_size}")
        conv, norm = self.conv, self.norm
        in_channels = x.shape[-1]
        mid = in_channels * self.expansion_factor
        out = conv(mid, 1, name="layers_0")(x)
        out = nn.relu(norm(name="layers_1")(out, train))
        # torchvision: padding kernel_size // 2, layers.conv's default for odd kernels.
        out = conv(mid, self.kernel_size, self.stride, groups=mid, name="layers_3")(out)
        out = nn.relu(norm(name="layers_4")(out, train))
        out = conv(self.out_channels, 1, name="layers_6")(out)
        out = norm(name="layers_7")(out, train)
        if in_channels == self.out_channels and self.stride == 1:
            return out + x
        return out


class MNASNet(layers.ZooModel):
    """torchvision's MNASNet: ``alpha`` scales every width (``mnasnet_depths``); the last conv
    has 1280 channels whatever ``alpha``; dropout, then the classifier Linear.

    ``features``: the pooled features before the classifier (the input of ``classifier.1``),
    (N, 1280). ``feature_maps``: the outputs of stacks 1, 2 and 4 (strides 4, 8, 16) and of the
    last conv (stride 32).
    """

    alpha: float = 1.0
    dropout: float = 0.2
    arch: str = "mnasnet"
    min_size: int = 32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, output: str = "logits"):
        layers.check_input(x, self.arch, self.min_size, self.in_channels, output)
        if self.alpha <= 0.0:
            raise ValueError(f"alpha should be greater than 0.0 instead of {self.alpha}")
        conv, norm = layers.conv_and_norm(self, momentum=_BN_MOMENTUM)
        depths = mnasnet_depths(self.alpha)

        x = x.astype(self.dtype)
        x = conv(depths[0], 3, 2, name="layers_0")(x)
        x = nn.relu(norm(name="layers_1")(x, train))
        # Depthwise separable, no skip.
        x = conv(depths[0], 3, groups=depths[0], name="layers_3")(x)
        x = nn.relu(norm(name="layers_4")(x, train))
        x = conv(depths[1], 1, name="layers_6")(x)
        x = norm(name="layers_7")(x, train)  # torchvision: no activation here
        maps = layers.StrideMaps(2, x)
        for s, (kernel, stride, expansion, repeats) in enumerate(_STACKS):
            for i in range(repeats):
                block_stride = stride if i == 0 else 1
                x = InvertedResidual(depths[s + 2], kernel, block_stride, expansion, conv, norm,
                                     name=f"layers_{8 + s}_{i}")(x, train)
                maps.add(block_stride, x)
        x = conv(1280, 1, name="layers_14")(x)
        x = nn.relu(norm(name="layers_15")(x, train))
        if output == "feature_maps":
            return maps.add(1, x).at_strides()

        x = layers.global_avg_pool(x)  # torchvision: x.mean([2, 3])
        if output == "features":
            return x
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        # torchvision: kaiming_uniform_(mode="fan_out", nonlinearity="sigmoid"), zero bias.
        kernel_init = nn.initializers.variance_scaling(1.0, "fan_out", "uniform")
        return layers.dense(self.num_classes, dtype=self.dtype, kernel_init=kernel_init,
                            name="classifier_1")(x)


def _register(name, alpha):
    def builder(num_classes=1000, dtype=jnp.float32, **kwargs):
        return MNASNet(num_classes=num_classes, alpha=alpha, dtype=dtype, arch=name, **kwargs)

    depths = mnasnet_depths(alpha)
    register(ModelSpec(name=name, builder=builder, torchvision=name, head=("classifier.1",),
                       default_size=224, min_size=32,
                       feature_channels=(depths[2], depths[3], depths[5], 1280),
                       feature_strides=(4, 8, 16, 32),
                       description=f"MNASNet-B1 {alpha}x"))


for _name, _alpha in (("mnasnet0_5", 0.5), ("mnasnet0_75", 0.75), ("mnasnet1_0", 1.0),
                      ("mnasnet1_3", 1.3)):
    _register(_name, _alpha)
