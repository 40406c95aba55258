"""AlexNet, mirroring ``torchvision.models.alexnet``.

This is torchvision's variant ("One weird trick", Krizhevsky 2014): 64-192-384-256-256 channels,
no local response normalization, no grouped convolutions. Module names are torchvision's
Sequential indices: ``features.3.weight`` is flax's ``params/features_3/kernel`` and
``classifier.6.weight`` is ``params/classifier_6/kernel``.

torchvision sets no initializers of its own here, so every layer has torch's defaults:
weights ``kaiming_uniform_(a=sqrt(5))`` and biases ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxzoo.models import layers
from jaxzoo.models.registry import ModelSpec, register

# Three 3x3/2 max-pools without padding after an 11x11/4 conv: below 63 pixels the last pool has
# no full window left (torchvision fails there too).
MIN_SIZE = 63


class AlexNet(layers.ZooModel):
    """torchvision's AlexNet: five convolutions, adaptive average pool to 6x6, three Linears.

    ``features``: the flattened 256 * 6 * 6 pooled map (the input of the classifier), in torch's
    channel-major flattening order. ``feature_maps``: the last map at strides 4, 8, 16 and 32:
    the ReLU after conv 1, conv 2 and conv 5, and the last max-pool (the output of torchvision's
    ``features``). AlexNet has no BatchNorm; ``bn_axis_name`` is accepted like every model's.
    """

    dropout: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, output: str = "logits"):
        layers.check_input(x, "alexnet", MIN_SIZE, self.in_channels, output)
        conv = functools.partial(layers.conv, use_bias=True, dtype=self.dtype,
                                 lowering=self.lowering, kernel_init=layers.torch_default_kernel)
        max_pool = functools.partial(layers.max_pool, lowering=self.lowering)

        def conv_relu(x, features, kernel_size, stride, padding, index):
            fan_in = x.shape[-1] * kernel_size * kernel_size
            x = conv(features, kernel_size, stride, padding,
                     bias_init=layers.torch_default_bias(fan_in), name=f"features_{index}")(x)
            return nn.relu(x)

        x = x.astype(self.dtype)
        x = conv_relu(x, 64, 11, 4, 2, 0)
        maps = layers.StrideMaps(4, x)
        x = max_pool(x, 3, 2)
        x = conv_relu(x, 192, 5, 1, 2, 3)
        maps.add(2, x)
        x = max_pool(x, 3, 2)
        x = conv_relu(x, 384, 3, 1, 1, 6)
        x = conv_relu(x, 256, 3, 1, 1, 8)
        x = conv_relu(x, 256, 3, 1, 1, 10)
        maps.add(2, x)
        x = max_pool(x, 3, 2)
        if output == "feature_maps":
            return maps.add(2, x).at_strides()

        x = layers.flatten_nchw(layers.adaptive_avg_pool(x, 6))
        if output == "features":
            return x

        def dense(x, features, index):
            return layers.dense(features, dtype=self.dtype,
                                bias_init=layers.torch_default_bias(x.shape[-1]),
                                name=f"classifier_{index}")(x)

        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = nn.relu(dense(x, 4096, 1))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = nn.relu(dense(x, 4096, 4))
        return dense(x, self.num_classes, 6)


def _alexnet(num_classes=1000, dtype=jnp.float32, **kwargs):
    return AlexNet(num_classes=num_classes, dtype=dtype, **kwargs)


register(ModelSpec(name="alexnet", builder=_alexnet, torchvision="alexnet",
                   head=("classifier.6",), features_at="classifier.0",
                   default_size=224, min_size=MIN_SIZE,
                   feature_channels=(64, 192, 256, 256), feature_strides=(4, 8, 16, 32),
                   description="AlexNet (torchvision's one-GPU variant)"))
