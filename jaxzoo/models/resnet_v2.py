"""Pre-activation ResNet (ResNet v2, He et al. 2016, "Identity Mappings in Deep Residual
Networks"), with timm's ``resnetv2_18/34/50/101/152`` layout and names.

Each block normalizes and activates its input first (BN-ReLU before every conv) and adds the
un-normalized input back; where the shape changes the 1x1 projection shortcut reads the
pre-activated input. The stem is a bare 7x7/2 conv and a 3x3/2 max-pool (no BatchNorm: the first
block normalizes), and a final BN-ReLU precedes the pooling. As in timm (and torchvision's v1.5), a
bottleneck strides in its 3x3 conv.

timm's ``resnetv2_50`` / ``resnetv2_101`` (not the ``*_bit`` variants, which use weight-standardized
convs and GroupNorm) are exactly this network with plain convs and BatchNorm, so module names give
its state-dict keys through the generic converter:

    stem.conv.weight                        ->  params/stem/conv/kernel
    stages.0.blocks.0.downsample.conv.weight ->  params/stages_0/blocks_0/downsample/conv/kernel
    stages.0.blocks.0.norm1.running_var     ->  batch_stats/stages_0/blocks_0/norm1/var
    norm.weight                             ->  params/norm/scale
    head.fc.weight (a 1x1 conv, with bias)  ->  params/head/fc/kernel

There are no torchvision weights for these models (``torchvision=None``).
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

ModuleDef = Any

# timm's head init for these models: N(0, 0.01) weight, zero bias.
_head_init = nn.initializers.normal(0.01)


class Downsample(nn.Module):
    """timm's ``DownsampleConv`` with ``preact=True``: a 1x1 conv ``conv`` (stride ``stride``),
    no norm (the block's input is already normalized)."""

    features: int
    conv: ModuleDef
    stride: int = 1

    @nn.compact
    def __call__(self, x):
        return self.conv(self.features, 1, self.stride, name="conv")(x)


class PreActBasic(nn.Module):
    """Two 3x3 convs, each after BN-ReLU (``norm1`` conv1 ``norm2`` conv2); the projection
    shortcut only where the stride or width changes (timm's ``PreActBasic``)."""

    features: int
    conv: ModuleDef
    norm: ModuleDef
    stride: int = 1
    zero_init_last: bool = False

    expansion = 1

    @nn.compact
    def __call__(self, x, train: bool):
        conv, norm = self.conv, self.norm
        last_init = nn.initializers.zeros if self.zero_init_last else layers.kaiming_normal_fan_out
        preact = nn.relu(norm(name="norm1")(x, train))
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.features:
            # The projection reads the pre-activated input, not x.
            shortcut = Downsample(self.features, conv, self.stride, name="downsample")(preact)
        out = conv(self.features, 3, self.stride, name="conv1")(preact)
        out = nn.relu(norm(name="norm2")(out, train))
        out = conv(self.features, 3, kernel_init=last_init, name="conv2")(out)
        return out + shortcut


class PreActBottleneck(nn.Module):
    """BN-ReLU, 1x1 reduce, BN-ReLU, 3x3 (with the stride), BN-ReLU, 1x1 expand (timm's
    ``PreActBottleneck``). The shortcut is projected where the stride or width changes: in the
    first block of every stage (timm gives each stage's first bottleneck a ``downsample``; stage 1
    widens 64 -> 256)."""

    features: int
    conv: ModuleDef
    norm: ModuleDef
    stride: int = 1
    zero_init_last: bool = False

    expansion = 4

    @nn.compact
    def __call__(self, x, train: bool):
        conv, norm = self.conv, self.norm
        last_init = nn.initializers.zeros if self.zero_init_last else layers.kaiming_normal_fan_out
        mid = self.features // self.expansion
        preact = nn.relu(norm(name="norm1")(x, train))
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = Downsample(self.features, conv, self.stride, name="downsample")(preact)
        out = conv(mid, 1, name="conv1")(preact)
        out = nn.relu(norm(name="norm2")(out, train))
        out = conv(mid, 3, self.stride, name="conv2")(out)
        out = nn.relu(norm(name="norm3")(out, train))
        out = conv(self.features, 1, kernel_init=last_init, name="conv3")(out)
        return out + shortcut


class ResNetStage(nn.Module):
    """timm's ``ResNetStage``: ``blocks_0`` ... ``blocks_<n-1>``, the first one striding."""

    block: Any
    features: int
    depth: int
    stride: int
    conv: ModuleDef
    norm: ModuleDef
    zero_init_last: bool = False

    @nn.compact
    def __call__(self, x, train: bool):
        for i in range(self.depth):
            x = self.block(self.features, self.conv, self.norm, self.stride if i == 0 else 1,
                           self.zero_init_last, name=f"blocks_{i}")(x, train)
        return x


class Stem(nn.Module):
    """timm's pre-activation stem: 7x7/2 conv ``conv`` (no norm, no activation), then a 3x3/2
    max-pool with padding 1."""

    conv: ModuleDef
    pool: Any
    features: int = 64

    @nn.compact
    def __call__(self, x):
        x = self.conv(self.features, 7, 2, name="conv")(x)
        return self.pool(x, 3, 2, padding=1)


class ClassifierHead(nn.Module):
    """timm's ``ClassifierHead(use_conv=True)``: the classifier is a 1x1 conv ``fc`` with bias on
    the pooled (N, 1, 1, C) map, flattened to (N, num_classes)."""

    num_classes: int
    conv: ModuleDef

    @nn.compact
    def __call__(self, x):
        x = x[:, None, None, :]
        x = self.conv(self.num_classes, 1, use_bias=True, kernel_init=_head_init, name="fc")(x)
        return x.reshape(x.shape[0], -1)


class ResNetV2(layers.ZooModel):
    """Pre-activation ResNet. ``zero_init_last`` zero-initializes each block's last conv (timm's
    option of the same name; off by default, as in timm's ResNetV2).

    ``features``: the pooled features after the final BN-ReLU, the input of ``head.fc``,
    (N, 512 * block.expansion). ``feature_maps``: the outputs of the four stages (strides 4, 8,
    16, 32), as timm's ``features_only``: not normalized (the final BN-ReLU follows the last
    stage only on the way to the head).
    """

    block: Any
    stage_sizes: Sequence[int]
    zero_init_last: bool = False
    arch: str = "resnet_v2"
    min_size: int = 32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, output: str = "logits"):
        layers.check_input(x, self.arch, self.min_size, self.in_channels, output)
        # timm's BatchNormAct2d: torch BatchNorm2d defaults (eps 1e-5, momentum 0.1) + ReLU.
        conv, norm = layers.conv_and_norm(self)
        pool = functools.partial(layers.max_pool, lowering=self.lowering)

        x = x.astype(self.dtype)
        x = Stem(conv, pool, name="stem")(x)
        maps = []
        for i, depth in enumerate(self.stage_sizes):
            x = ResNetStage(self.block, 64 * 2**i * self.block.expansion, depth,
                            1 if i == 0 else 2, conv, norm, self.zero_init_last,
                            name=f"stages_{i}")(x, train)
            maps.append(x)
        if output == "feature_maps":
            return maps

        x = nn.relu(norm(name="norm")(x, train))
        x = layers.global_avg_pool(x)
        if output == "features":
            return x
        return ClassifierHead(self.num_classes, conv, name="head")(x)


def _register(name, block, stage_sizes, description):
    def builder(num_classes=1000, dtype=jnp.float32, **kwargs):
        return ResNetV2(block=block, stage_sizes=tuple(stage_sizes), num_classes=num_classes,
                        dtype=dtype, arch=name, **kwargs)

    register(ModelSpec(name=name, builder=builder, torchvision=None, head=("head.fc",),
                       features_at="head.fc", default_size=224, min_size=32,
                       feature_channels=tuple(64 * 2**i * block.expansion for i in range(4)),
                       feature_strides=(4, 8, 16, 32), description=description))


_register("resnet18_v2", PreActBasic, [2, 2, 2, 2], "Pre-activation ResNet-18 (timm resnetv2_18)")
_register("resnet34_v2", PreActBasic, [3, 4, 6, 3], "Pre-activation ResNet-34 (timm resnetv2_34)")
_register("resnet50_v2", PreActBottleneck, [3, 4, 6, 3],
          "Pre-activation ResNet-50 (timm resnetv2_50)")
_register("resnet101_v2", PreActBottleneck, [3, 4, 23, 3],
          "Pre-activation ResNet-101 (timm resnetv2_101)")
_register("resnet152_v2", PreActBottleneck, [3, 8, 36, 3],
          "Pre-activation ResNet-152 (timm resnetv2_152)")
