"""ResNet, ResNeXt and Wide ResNet, mirroring ``torchvision.models.resnet``.

Module names follow torchvision's attribute names (``conv1``, ``bn1``, ``layer1_0``,
``downsample_0`` ...), so torchvision's ``layer1.0.downsample.0.weight`` is flax's
``params/layer1_0/downsample_0/kernel``. Like torchvision (ResNet v1.5), a bottleneck block
strides in its 3x3 convolution, not in the first 1x1.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxzoo.models import layers
from jaxzoo.models.registry import ModelSpec, register

ModuleDef = Any


class BasicBlock(nn.Module):
    """Two 3x3 convs; ``conv`` and ``norm`` are the model's (``layers.conv`` and
    ``layers.BatchNorm`` with its dtype, lowering and BatchNorm axis already set)."""

    planes: int
    conv: ModuleDef
    norm: ModuleDef
    stride: int = 1
    groups: int = 1
    base_width: int = 64
    zero_init_residual: bool = False

    expansion = 1

    @nn.compact
    def __call__(self, x, train: bool):
        if self.groups != 1 or self.base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64 (as torchvision)")
        conv, norm = self.conv, self.norm
        last_scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones

        out = conv(self.planes, 3, self.stride, name="conv1")(x)
        out = nn.relu(norm(name="bn1")(out, train))
        out = conv(self.planes, 3, name="conv2")(out)
        out = norm(scale_init=last_scale, name="bn2")(out, train)
        return nn.relu(out + _shortcut(self, x, train))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt; it carries the stride: ResNet v1.5), 1x1 expand."""

    planes: int
    conv: ModuleDef
    norm: ModuleDef
    stride: int = 1
    groups: int = 1
    base_width: int = 64
    zero_init_residual: bool = False

    expansion = 4

    @nn.compact
    def __call__(self, x, train: bool):
        conv, norm = self.conv, self.norm
        last_scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
        width = int(self.planes * (self.base_width / 64.0)) * self.groups

        out = conv(width, 1, name="conv1")(x)
        out = nn.relu(norm(name="bn1")(out, train))
        out = conv(width, 3, self.stride, groups=self.groups, name="conv2")(out)
        out = nn.relu(norm(name="bn2")(out, train))
        out = conv(self.planes * self.expansion, 1, name="conv3")(out)
        out = norm(scale_init=last_scale, name="bn3")(out, train)
        return nn.relu(out + _shortcut(self, x, train))


def _shortcut(block, x, train):
    """The identity, or torchvision's ``downsample`` (1x1 conv + BatchNorm) where the shape
    changes. Called inside the block's compact method: the layers are the block's."""
    out_channels = block.planes * block.expansion
    if block.stride == 1 and x.shape[-1] == out_channels:
        return x
    x = block.conv(out_channels, 1, block.stride, name="downsample_0")(x)
    return block.norm(name="downsample_1")(x, train)


class ResNet(layers.ZooModel):
    """torchvision's ResNet. ``small_input=True`` swaps the 7x7/2 stem and max-pool for a 3x3/1
    stem (the usual CIFAR-10 variant for 32x32 images).

    ``features``: the pooled features before the classifier, (N, 512 * block.expansion).
    ``feature_maps``: the outputs of layer1..layer4, strides 4, 8, 16, 32 (1, 2, 4, 8 with the
    small stem).
    """

    block: Any
    stage_sizes: Sequence[int]
    groups: int = 1
    width_per_group: int = 64
    zero_init_residual: bool = False
    small_input: bool = False
    remat: str = "none"
    arch: str = "resnet"
    min_size: int = 32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, output: str = "logits"):
        layers.check_input(x, self.arch, self.min_size, self.in_channels, output)
        conv, norm = layers.conv_and_norm(self)
        x = x.astype(self.dtype)
        if self.small_input:
            x = conv(64, 3, 1, name="conv1")(x)
            x = nn.relu(norm(name="bn1")(x, train))
        else:
            x = conv(64, 7, 2, name="conv1")(x)
            x = nn.relu(norm(name="bn1")(x, train))
            x = layers.max_pool(x, 3, 2, padding=1, lowering=self.lowering)

        block = layers.remat_block(self.block, self.remat)
        maps = []
        for stage, num_blocks in enumerate(self.stage_sizes):
            planes = 64 * 2**stage
            for i in range(num_blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                x = block(planes, conv=conv, norm=norm, stride=stride, groups=self.groups,
                               base_width=self.width_per_group,
                               zero_init_residual=self.zero_init_residual,
                               name=f"layer{stage + 1}_{i}")(x, train)
            maps.append(x)
        if output == "feature_maps":
            return maps

        x = layers.global_avg_pool(x)
        if output == "features":
            return x
        # torchvision: nn.Linear's default init for the classifier.
        return layers.dense(self.num_classes, dtype=self.dtype, name="fc")(x)


def _register(name, block, stage_sizes, *, groups=1, width_per_group=64, small_input=False,
              torchvision=True, min_size=32, default_size=224, description=""):
    def builder(num_classes=1000, dtype=jnp.float32, **kwargs):
        return ResNet(block=block, stage_sizes=tuple(stage_sizes), num_classes=num_classes,
                      groups=groups, width_per_group=width_per_group, small_input=small_input,
                      dtype=dtype, arch=name, min_size=min_size, **kwargs)

    register(ModelSpec(name=name, builder=builder, torchvision=name if torchvision else None,
                       head=("fc",), default_size=default_size, min_size=min_size,
                       feature_channels=tuple(64 * 2**i * block.expansion for i in range(4)),
                       feature_strides=(1, 2, 4, 8) if small_input else (4, 8, 16, 32),
                       description=description))


_register("resnet18", BasicBlock, [2, 2, 2, 2], description="ResNet-18")
_register("resnet34", BasicBlock, [3, 4, 6, 3], description="ResNet-34")
_register("resnet50", Bottleneck, [3, 4, 6, 3], description="ResNet-50 (v1.5)")
_register("resnet101", Bottleneck, [3, 4, 23, 3], description="ResNet-101 (v1.5)")
_register("resnet152", Bottleneck, [3, 8, 36, 3], description="ResNet-152 (v1.5)")
_register("resnext50_32x4d", Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4,
          description="ResNeXt-50 32x4d")
_register("resnext101_32x8d", Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=8,
          description="ResNeXt-101 32x8d")
_register("resnext101_64x4d", Bottleneck, [3, 4, 23, 3], groups=64, width_per_group=4,
          description="ResNeXt-101 64x4d")
_register("wide_resnet50_2", Bottleneck, [3, 4, 6, 3], width_per_group=128,
          description="Wide ResNet-50-2")
_register("wide_resnet101_2", Bottleneck, [3, 4, 23, 3], width_per_group=128,
          description="Wide ResNet-101-2")
_register("resnet18_cifar", BasicBlock, [2, 2, 2, 2], small_input=True, torchvision=False,
          min_size=8, default_size=32,
          description="ResNet-18 for 32x32 inputs: 3x3 stem, no max-pool")
