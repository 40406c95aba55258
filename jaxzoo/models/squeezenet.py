"""SqueezeNet 1.0 and 1.1, mirroring ``torchvision.models.squeezenet``.

Module names are torchvision's: ``features.3.squeeze.weight`` is flax's
``params/features_3/squeeze/kernel``; the classifier is a 1x1 convolution,
``classifier.1.weight`` -> ``params/classifier_1/kernel``. The max-pools use ``ceil_mode=True``,
as torchvision's do. The network ends in that 1x1 convolution, a ReLU and a global average pool:
the logits are the average of non-negative class maps.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxzoo.models import layers
from jaxzoo.models.registry import ModelSpec, register

ModuleDef = Any

# Per version: the stem conv (channels, kernel; stride 2, no padding), then "M" for a 3x3/2
# ceil-mode max-pool or a Fire module's (squeeze, expand1x1, expand3x3) channels. With the stem's
# conv and ReLU, each entry is one index of torchvision's ``features`` Sequential.
VERSIONS = {
    "1_0": ((96, 7), ("M", (16, 64, 64), (16, 64, 64), (32, 128, 128), "M", (32, 128, 128),
                      (48, 192, 192), (48, 192, 192), (64, 256, 256), "M", (64, 256, 256))),
    "1_1": ((64, 3), ("M", (16, 64, 64), (16, 64, 64), "M", (32, 128, 128), (32, 128, 128), "M",
                      (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256))),
}
# The smallest input side torchvision accepts: a ceil-mode pool still makes one window of an
# input of 2 pixels, but none of 1.
MIN_SIZES = {"1_0": 21, "1_1": 17}

# torchvision's init: kaiming_uniform_ (a=0: bound sqrt(6 / fan_in)) for every conv but the final
# one, N(0, 0.01) for the final conv, zero biases.
_kaiming_uniform = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")
_final_conv_init = nn.initializers.normal(0.01)


class Fire(nn.Module):
    """1x1 ``squeeze`` + ReLU, then ``expand1x1`` and ``expand3x3`` (each + ReLU) concatenated
    along channels, 1x1 first."""

    squeeze_planes: int
    expand1x1_planes: int
    expand3x3_planes: int
    conv: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(self.conv(self.squeeze_planes, 1, name="squeeze")(x))
        left = nn.relu(self.conv(self.expand1x1_planes, 1, name="expand1x1")(x))
        right = nn.relu(self.conv(self.expand3x3_planes, 3, 1, 1, name="expand3x3")(x))
        return jnp.concatenate([left, right], axis=-1)


class SqueezeNet(layers.ZooModel):
    """torchvision's SqueezeNet (``version`` "1_0" or "1_1").

    ``features``: the global average of the last Fire module's map, (N, 512): the network has no
    Linear layer, its classifier (dropout, 1x1 conv, ReLU, average pool) takes the map itself.
    ``feature_maps``: the last Fire module's output at strides 4, 8 and 16 (SqueezeNet has no
    stride 32).
    """

    version: str = "1_0"
    dropout: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, output: str = "logits"):
        if self.version not in VERSIONS:
            raise ValueError(f"Unsupported SqueezeNet version {self.version}: 1_0 or 1_1 expected")
        layers.check_input(x, f"squeezenet{self.version}", MIN_SIZES[self.version],
                           self.in_channels, output)
        conv = functools.partial(layers.conv, use_bias=True, dtype=self.dtype,
                                 lowering=self.lowering, kernel_init=_kaiming_uniform)
        max_pool = functools.partial(layers.max_pool, lowering=self.lowering)
        (stem_channels, stem_kernel), body = VERSIONS[self.version]

        x = x.astype(self.dtype)
        x = nn.relu(conv(stem_channels, stem_kernel, 2, 0, name="features_0")(x))
        maps = layers.StrideMaps(2, x)
        for index, entry in enumerate(body, start=2):  # features.1 is the stem's ReLU
            if entry == "M":
                x = max_pool(x, 3, 2, ceil_mode=True)
                maps.add(2, x)
            else:
                x = Fire(*entry, conv=conv, name=f"features_{index}")(x)
                maps.add(1, x)
        if output == "feature_maps":
            return maps.at_strides()
        if output == "features":
            return layers.global_avg_pool(x)

        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = conv(self.num_classes, 1, kernel_init=_final_conv_init, name="classifier_1")(x)
        return layers.global_avg_pool(nn.relu(x))


def _register(version, description):
    name = f"squeezenet{version}"

    def builder(num_classes=1000, dtype=jnp.float32, **kwargs):
        return SqueezeNet(version=version, num_classes=num_classes, dtype=dtype, **kwargs)

    last = (256, 512, 512) if version == "1_0" else (128, 256, 512)
    register(ModelSpec(name=name, builder=builder, torchvision=name, head=("classifier.1",),
                       features_at="classifier.0", default_size=224,
                       min_size=MIN_SIZES[version], feature_channels=last,
                       feature_strides=(4, 8, 16), description=description))


_register("1_0", "SqueezeNet 1.0")
_register("1_1", "SqueezeNet 1.1 (2.4x fewer computations than 1.0)")
