"""VGG 11/13/16/19, with and without BatchNorm, mirroring ``torchvision.models.vgg``.

Module names are torchvision's Sequential indices, counted as ``make_layers`` counts them (a
ReLU or a max-pool takes an index too): in vgg11 ``features.3.weight`` is flax's
``params/features_3/kernel``; in vgg11_bn, ``features.1`` is the first BatchNorm. The
classifier's Linears are ``classifier_0``, ``classifier_3`` and ``classifier_6``.

The convolutions keep their bias in the BatchNorm variants, as torchvision's do.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxzoo.models import layers
from jaxzoo.models.registry import ModelSpec, register

MIN_SIZE = 32  # five 2x2/2 max-pools

# torchvision's cfgs: output channels of each 3x3 conv, "M" for a 2x2/2 max-pool.
CFGS: dict[str, tuple[int | str, ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"),
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"),
}

# torchvision's VGG init: Linear weights N(0, 0.01), zero biases.
_linear_init = nn.initializers.normal(0.01)


class VGG(layers.ZooModel):
    """torchvision's VGG: ``cfg`` (see ``CFGS``) of 3x3 convs (+ BatchNorm with ``batch_norm``)
    and max-pools, adaptive average pool to 7x7, three Linears with dropout.

    ``features``: the pooled features before the classifier, (N, 512 * 7 * 7), in torch's
    channel-major flattening order. ``feature_maps``: the last map at strides 4, 8, 16 and 32:
    the last ReLU of the third, fourth and fifth stages, and the last max-pool (the output of
    torchvision's ``features``).
    """

    cfg: Sequence[int | str] = CFGS["A"]
    batch_norm: bool = False
    dropout: float = 0.5
    arch: str = "vgg"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, output: str = "logits"):
        layers.check_input(x, self.arch, MIN_SIZE, self.in_channels, output)
        # torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu"), zero bias.
        conv, norm = layers.conv_and_norm(self, use_bias=True)
        max_pool = functools.partial(layers.max_pool, lowering=self.lowering)

        x = x.astype(self.dtype)
        maps = layers.StrideMaps(1, x)
        index = 0
        for v in self.cfg:
            if v == "M":
                x = max_pool(x, 2, 2)
                index += 1
                maps.add(2, x)
                continue
            x = conv(int(v), 3, 1, 1, name=f"features_{index}")(x)
            index += 1
            if self.batch_norm:
                x = norm(name=f"features_{index}")(x, train)
                index += 1
            x = nn.relu(x)
            index += 1  # the ReLU's index
            maps.add(1, x)
        if output == "feature_maps":
            return maps.at_strides()

        # An exact copy at 224 pixels (7x7 maps); smaller inputs repeat pixels, as torch does.
        x = layers.flatten_nchw(layers.adaptive_avg_pool(x, 7))
        if output == "features":
            return x
        dense = functools.partial(layers.dense, dtype=self.dtype, kernel_init=_linear_init)
        x = nn.relu(dense(4096, name="classifier_0")(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = nn.relu(dense(4096, name="classifier_3")(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return dense(self.num_classes, name="classifier_6")(x)


def _register(name, cfg, batch_norm, description):
    def builder(num_classes=1000, dtype=jnp.float32, **kwargs):
        return VGG(cfg=CFGS[cfg], batch_norm=batch_norm, num_classes=num_classes, dtype=dtype,
                   arch=name, **kwargs)

    register(ModelSpec(name=name, builder=builder, torchvision=name, head=("classifier.6",),
                       features_at="classifier.0", default_size=224, min_size=MIN_SIZE,
                       feature_channels=(256, 512, 512, 512), feature_strides=(4, 8, 16, 32),
                       description=description))


for _depth, _cfg in ((11, "A"), (13, "B"), (16, "D"), (19, "E")):
    _register(f"vgg{_depth}", _cfg, False, f"VGG-{_depth}")
    _register(f"vgg{_depth}_bn", _cfg, True, f"VGG-{_depth} with BatchNorm")
