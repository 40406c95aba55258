"""RegNetX and RegNetY, mirroring ``torchvision.models.regnet``.

Module names follow torchvision's, hyphens included (flax names may hold them, and the converter
only rewrites ``_<digits>``): each ``Conv2dNormActivation`` is a flat conv ``<name>_0`` and
BatchNorm ``<name>_1``, each stage a module ``block<s>`` inside ``trunk_output``, each block
``block<s>-<i>`` with its bottleneck ``f`` and projection ``proj``:

    stem.0.weight                                 ->  params/stem_0/kernel
    trunk_output.block1.block1-0.proj.0.weight    ->  params/trunk_output/block1/block1-0/
                                                          proj_0/kernel
    trunk_output.block1.block1-0.f.b.0.weight     ->  .../block1-0/f/b_0/kernel (grouped 3x3)
    trunk_output.block1.block1-0.f.se.fc1.weight  ->  .../block1-0/f/se/fc1/kernel (RegNetY)
    fc.weight                                     ->  params/fc/kernel

The widths of the stages follow torchvision's ``BlockParams.from_init_params`` (``block_params``),
computed in float32 as torchvision computes them with torch tensors.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxzoo.models import layers
from jaxzoo.models.registry import ModelSpec, register

ModuleDef = Any


StageParams = tuple[int, int, int, int, float]  # width, stride, depth, group width, multiplier


def block_params(depth: int, w_0: int, w_a: float, w_m: float, group_width: int,
                 bottleneck_multiplier: float = 1.0) -> tuple[StageParams, ...]:
    """torchvision's ``BlockParams.from_init_params``: per stage (width, stride, depth,
    group width, bottleneck multiplier).

    Block ``j`` has the continuous width ``w_0 + j * w_a``, quantized in log space with step
    ``w_m`` and rounded to a multiple of 8; consecutive blocks of the same width form a stage,
    whose width and group width are then made compatible. torchvision computes the quantization
    with float32 torch tensors; so does this (the rounding follows the float32 values).
    """
    quant, stride = 8, 2
    if w_a < 0 or w_0 <= 0 or w_m <= 1 or w_0 % 8 != 0:
        raise ValueError("Invalid RegNet settings")
    f32 = np.float32
    # torch.arange(depth) * w_a + w_0: an integer tensor times a Python float is float32.
    widths_cont = np.arange(depth).astype(f32) * f32(w_a) + f32(w_0)
    # torch.round(torch.log(widths_cont / w_0) / math.log(w_m)); torch.round rounds half to even,
    # as np.round does.
    block_capacity = np.round(np.log(widths_cont / f32(w_0)) / f32(math.log(w_m)))
    # torch.round(torch.divide(w_0 * torch.pow(w_m, block_capacity), QUANT)) * QUANT, then .int()
    powers = np.power(f32(w_m), block_capacity.astype(f32))
    block_widths = (np.round(f32(w_0) * powers / f32(quant)) * f32(quant)).astype(np.int32).tolist()

    # A new stage starts wherever the width changes.
    starts = [j for j in range(depth) if j == 0 or block_widths[j] != block_widths[j - 1]]
    stage_widths = [block_widths[j] for j in starts]
    stage_depths = [end - start for start, end in zip(starts, starts[1:] + [depth])]

    # BlockParams._adjust_widths_groups_compatibilty: the bottleneck width becomes a multiple of
    # the group width (which never exceeds the bottleneck width).
    bottleneck_widths = [int(w * bottleneck_multiplier) for w in stage_widths]
    group_widths = [min(group_width, w) for w in bottleneck_widths]
    bottleneck_widths = [layers.make_divisible(w, g)
                         for w, g in zip(bottleneck_widths, group_widths)]
    stage_widths = [int(w / bottleneck_multiplier) for w in bottleneck_widths]
    return tuple((w, stride, d, g, bottleneck_multiplier)
                 for w, d, g in zip(stage_widths, stage_depths, group_widths))


class BottleneckTransform(nn.Module):
    """torchvision's ``BottleneckTransform``: 1x1 (``a``), grouped 3x3 with the stride (``b``),
    squeeze-excitation (``se``, RegNetY), 1x1 without activation (``c``)."""

    width_out: int
    stride: int
    group_width: int
    bottleneck_multiplier: float
    se_ratio: float | None
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x, train: bool):
        block = functools.partial(layers.conv_norm_act, conv=self.conv, norm=self.norm)
        width_in = x.shape[-1]
        w_b = round(self.width_out * self.bottleneck_multiplier)
        groups = w_b // self.group_width
        x = block(x, train, w_b, 1, name="a")
        x = block(x, train, w_b, 3, self.stride, groups=groups, name="b")
        if self.se_ratio:
            # torchvision: the squeeze width follows the block's input width, not w_b; the
            # activations are SqueezeExcitation's defaults (ReLU, sigmoid).
            squeeze = round(self.se_ratio * width_in)
            x = layers.SqueezeExcitation(squeeze, self.conv, name="se")(x)
        return block(x, train, self.width_out, 1, activation=None, name="c")


class ResBottleneckBlock(nn.Module):
    """torchvision's ``ResBottleneckBlock``: ReLU(shortcut + f(x)); the shortcut is a 1x1 conv
    + BN (``proj``) where the width or the resolution changes, else the identity."""

    width_out: int
    stride: int
    group_width: int
    bottleneck_multiplier: float
    se_ratio: float | None
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x, train: bool):
        out = BottleneckTransform(self.width_out, self.stride, self.group_width,
                                  self.bottleneck_multiplier, self.se_ratio, self.conv, self.norm,
                                  name="f")(x, train)
        if x.shape[-1] != self.width_out or self.stride != 1:
            x = layers.conv_norm_act(x, train, self.width_out, 1, self.stride, conv=self.conv,
                                     norm=self.norm, activation=None, name="proj")
        return nn.relu(x + out)


class AnyStage(nn.Module):
    """torchvision's ``AnyStage``: ``depth`` blocks named ``block<index>-<i>``, the first with
    the stride."""

    index: int
    width_out: int
    stride: int
    depth: int
    group_width: int
    bottleneck_multiplier: float
    se_ratio: float | None
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x, train: bool):
        for i in range(self.depth):
            x = ResBottleneckBlock(self.width_out, self.stride if i == 0 else 1, self.group_width,
                                   self.bottleneck_multiplier, self.se_ratio, self.conv,
                                   self.norm, name=f"block{self.index}-{i}")(x, train)
        return x


class TrunkOutput(nn.Module):
    """torchvision's ``trunk_output`` Sequential: the stages ``block1``, ``block2``, ...;
    returns the output of each."""

    stages: tuple[StageParams, ...]
    se_ratio: float | None
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x, train: bool):
        outputs = []
        for i, (width, stride, depth, group_width, multiplier) in enumerate(self.stages):
            x = AnyStage(i + 1, width, stride, depth, group_width, multiplier, self.se_ratio,
                         self.conv, self.norm, name=f"block{i + 1}")(x, train)
            outputs.append(x)
        return outputs


class RegNet(layers.ZooModel):
    """torchvision's RegNet: 3x3/2 stem of ``stem_width`` channels, the stages
    ``block_params(depth, w_0, w_a, w_m, group_width, bottleneck_multiplier)`` (each stride 2),
    global average pool, fc. ``se_ratio`` (RegNetY) adds squeeze-excitation to every block.

    ``features``: the pooled features before the classifier, (N, width of the last stage).
    ``feature_maps``: the output of each stage, strides 4, 8, 16 and 32.
    """

    depth: int
    w_0: int
    w_a: float
    w_m: float
    group_width: int
    bottleneck_multiplier: float = 1.0
    se_ratio: float | None = None
    stem_width: int = 32
    arch: str = "regnet"
    min_size: int = 32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, output: str = "logits"):
        layers.check_input(x, self.arch, self.min_size, self.in_channels, output)
        stages = block_params(self.depth, self.w_0, self.w_a, self.w_m, self.group_width,
                              self.bottleneck_multiplier)
        # torchvision: normal(0, sqrt(2 / fan_out)) for every conv, layers.conv's default, and
        # _regnet's BatchNorm2d(eps=1e-05, momentum=0.1), the defaults.
        conv, norm = layers.conv_and_norm(self)

        x = x.astype(self.dtype)
        x = layers.conv_norm_act(x, train, self.stem_width, 3, 2, conv=conv, norm=norm,
                                 name="stem")
        maps = layers.StrideMaps(2, x)
        outputs = TrunkOutput(stages, self.se_ratio, conv, norm, name="trunk_output")(x, train)
        for (_, stride, *_), out in zip(stages, outputs):
            maps.add(stride, out)
        if output == "feature_maps":
            return maps.at_strides()

        x = layers.global_avg_pool(outputs[-1])
        if output == "features":
            return x
        # torchvision: normal(0, 0.01) weights, zero bias.
        return layers.dense(self.num_classes, dtype=self.dtype,
                            kernel_init=nn.initializers.normal(0.01), name="fc")(x)


# torchvision's builders: depth, w_0, w_a, w_m, group width; RegNetY adds se_ratio=0.25.
_REGNETS = {
    "regnet_y_400mf": (16, 48, 27.89, 2.09, 8),
    "regnet_y_800mf": (14, 56, 38.84, 2.4, 16),
    "regnet_y_1_6gf": (27, 48, 20.71, 2.65, 24),
    "regnet_y_3_2gf": (21, 80, 42.63, 2.66, 24),
    "regnet_y_8gf": (17, 192, 76.82, 2.19, 56),
    "regnet_y_16gf": (18, 200, 106.23, 2.48, 112),
    "regnet_y_32gf": (20, 232, 115.89, 2.53, 232),
    "regnet_y_128gf": (27, 456, 160.83, 2.52, 264),
    "regnet_x_400mf": (22, 24, 24.48, 2.54, 16),
    "regnet_x_800mf": (16, 56, 35.73, 2.28, 16),
    "regnet_x_1_6gf": (18, 80, 34.01, 2.25, 24),
    "regnet_x_3_2gf": (25, 88, 26.31, 2.25, 48),
    "regnet_x_8gf": (23, 80, 49.56, 2.88, 120),
    "regnet_x_16gf": (22, 216, 55.59, 2.1, 128),
    "regnet_x_32gf": (23, 320, 69.86, 2.0, 168),
}


def _register(name, depth, w_0, w_a, w_m, group_width):
    se_ratio = 0.25 if name.startswith("regnet_y") else None

    def builder(num_classes=1000, dtype=jnp.float32, **kwargs):
        return RegNet(depth=depth, w_0=w_0, w_a=w_a, w_m=w_m, group_width=group_width,
                      se_ratio=se_ratio, num_classes=num_classes, dtype=dtype, arch=name,
                      **kwargs)

    stages = block_params(depth, w_0, w_a, w_m, group_width)
    size = name.split("_", 2)[2].replace("_", ".").upper()
    register(ModelSpec(name=name, builder=builder, torchvision=name, head=("fc",),
                       default_size=224, min_size=32,
                       feature_channels=tuple(width for width, *_ in stages),
                       feature_strides=(4, 8, 16, 32),
                       description=f"RegNet{'Y' if se_ratio else 'X'}-{size}"))


for _name, _settings in _REGNETS.items():
    _register(_name, *_settings)
