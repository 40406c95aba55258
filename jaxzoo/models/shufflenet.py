"""ShuffleNet V2, mirroring ``torchvision.models.shufflenetv2``.

Module names follow torchvision's attribute names; its Sequentials are flat flax modules named
``<attribute>_<index>``:

    conv1.0.weight                  ->  params/conv1_0/kernel       (3x3/2 conv; conv1.1: BatchNorm)
    stage2.0.branch1.0.weight       ->  params/stage2_0/branch1_0/kernel
    stage3.2.branch2.3.weight       ->  params/stage3_2/branch2_3/kernel
    conv5.0 / conv5.1 / fc          ->  params/conv5_0 / conv5_1 / fc

A unit that strides runs two branches on its whole input; a unit that does not splits the channels
in two halves, passes the first through and runs ``branch2`` on the second. Both concatenate their
halves and shuffle the channels across the two groups.
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


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
    """torchvision's ``channel_shuffle`` on NHWC input.

    torchvision views the NCHW channels as (groups, channels // groups), transposes those two axes
    and flattens them back: output channel ``j * groups + g`` is input channel
    ``g * (channels // groups) + j``. The channel axis here is the last one; the same split, swap
    and flatten give the same order.
    """
    n, h, w, c = x.shape
    x = x.reshape(n, h, w, groups, c // groups)
    return jnp.swapaxes(x, -1, -2).reshape(n, h, w, c)


class InvertedResidual(nn.Module):
    """ShuffleNetV2's unit. ``branch1`` (stride > 1 only): 3x3 depthwise conv (stride) + BN,
    1x1 conv + BN + ReLU. ``branch2``: 1x1 conv + BN + ReLU, 3x3 depthwise conv (stride) + BN,
    1x1 conv + BN + ReLU. Each branch gives half of ``out_channels``."""

    out_channels: int
    stride: int
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x, train: bool):
        if not 1 <= self.stride <= 3:
            raise ValueError("illegal stride value")
        conv, norm = self.conv, self.norm
        in_channels = x.shape[-1]
        branch_features = self.out_channels // 2
        if self.stride == 1 and in_channels != branch_features * 2:
            raise ValueError(
                f"Invalid combination of stride {self.stride}, inp {in_channels} and oup "
                f"{self.out_channels} values. If stride == 1 then inp should be equal to "
                "oup // 2 << 1.")

        if self.stride > 1:
            left = conv(in_channels, 3, self.stride, padding=1, groups=in_channels,
                        name="branch1_0")(x)
            left = norm(name="branch1_1")(left, train)
            left = conv(branch_features, 1, name="branch1_2")(left)
            left = nn.relu(norm(name="branch1_3")(left, train))
            right = x
        else:
            # torchvision: x.chunk(2, dim=1); the first half passes through unchanged.
            left, right = jnp.split(x, 2, axis=-1)

        right = conv(branch_features, 1, name="branch2_0")(right)
        right = nn.relu(norm(name="branch2_1")(right, train))
        right = conv(branch_features, 3, self.stride, padding=1, groups=branch_features,
                     name="branch2_3")(right)
        right = norm(name="branch2_4")(right, train)
        right = conv(branch_features, 1, name="branch2_5")(right)
        right = nn.relu(norm(name="branch2_6")(right, train))
        # torchvision: torch.cat((x1, branch2(x2)), dim=1), then channel_shuffle(out, 2).
        return channel_shuffle(jnp.concatenate([left, right], axis=-1), 2)


class ShuffleNetV2(layers.ZooModel):
    """torchvision's ShuffleNetV2: 3x3/2 conv, 3x3/2 max-pool, three stages of units (the first
    of each strides), 1x1 conv, global average pool, fc.

    ``stages_out_channels``: the stem's channels, the three stages', then the last conv's.

    ``features``: the pooled features before the classifier, (N, stages_out_channels[-1]).
    ``feature_maps``: the max-pool's output (stride 4), the outputs of stage2 and stage3
    (strides 8, 16) and of conv5 (stride 32).
    """

    stages_repeats: Sequence[int] = (4, 8, 4)
    stages_out_channels: Sequence[int] = (24, 116, 232, 464, 1024)
    arch: str = "shufflenet_v2"
    min_size: int = 32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, output: str = "logits"):
        layers.check_input(x, self.arch, self.min_size, self.in_channels, output)
        if len(self.stages_repeats) != 3:
            raise ValueError("expected stages_repeats as list of 3 positive ints")
        if len(self.stages_out_channels) != 5:
            raise ValueError("expected stages_out_channels as list of 5 positive ints")
        # torchvision's ShuffleNetV2 keeps torch's default conv init, kaiming_uniform_(a=sqrt(5)).
        conv, norm = layers.conv_and_norm(self, kernel_init=layers.torch_default_kernel)
        max_pool = functools.partial(layers.max_pool, lowering=self.lowering)

        x = x.astype(self.dtype)
        x = layers.conv_norm_act(x, train, self.stages_out_channels[0], 3, 2, conv=conv,
                                 norm=norm, name="conv1")
        maps = layers.StrideMaps(2, x)
        x = max_pool(x, 3, 2, padding=1)  # torchvision: nn.MaxPool2d(3, stride=2, padding=1)
        maps.add(2, x)
        for stage, (repeats, channels) in enumerate(
                zip(self.stages_repeats, self.stages_out_channels[1:4])):
            for i in range(repeats):
                stride = 2 if i == 0 else 1
                x = InvertedResidual(channels, stride, conv, norm,
                                     name=f"stage{stage + 2}_{i}")(x, train)
                maps.add(stride, x)
        x = layers.conv_norm_act(x, train, self.stages_out_channels[-1], 1, conv=conv,
                                 norm=norm, name="conv5")
        if output == "feature_maps":
            return maps.add(1, x).at_strides()

        x = layers.global_avg_pool(x)  # torchvision: x.mean([2, 3])
        if output == "features":
            return x
        return layers.dense(self.num_classes, dtype=self.dtype, name="fc")(x)


# torchvision's stages_out_channels per width; stages_repeats is (4, 8, 4) for all.
_SHUFFLENET_CHANNELS = {
    "shufflenet_v2_x0_5": ((24, 48, 96, 192, 1024), "0.5x"),
    "shufflenet_v2_x1_0": ((24, 116, 232, 464, 1024), "1.0x"),
    "shufflenet_v2_x1_5": ((24, 176, 352, 704, 1024), "1.5x"),
    "shufflenet_v2_x2_0": ((24, 244, 488, 976, 2048), "2.0x"),
}


def _register(name, channels, width):
    def builder(num_classes=1000, dtype=jnp.float32, **kwargs):
        return ShuffleNetV2(num_classes=num_classes, stages_out_channels=channels, dtype=dtype,
                            arch=name, **kwargs)

    register(ModelSpec(name=name, builder=builder, torchvision=name, head=("fc",),
                       default_size=224, min_size=32,
                       feature_channels=(channels[0], channels[1], channels[2], channels[4]),
                       feature_strides=(4, 8, 16, 32),
                       description=f"ShuffleNet V2 {width}"))


for _name, (_channels, _width) in _SHUFFLENET_CHANNELS.items():
    _register(_name, _channels, _width)
