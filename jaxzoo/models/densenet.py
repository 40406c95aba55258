"""DenseNet-121/161/169/201 (DenseNet-BC), mirroring ``torchvision.models.densenet``.

torchvision keeps the whole backbone in one ``features`` module whose children have names, not
indices (``conv0``, ``denseblock1``, ``transition1``, ``norm5``), so here too ``features`` is a
module of its own and the names nest:

    features.conv0.weight                          ->  params/features/conv0/kernel
    features.denseblock1.denselayer1.norm1.weight  ->  params/features/denseblock1/denselayer1/norm1/scale
    features.transition1.conv.weight               ->  params/features/transition1/conv/kernel
    classifier.weight                              ->  params/classifier/kernel

(no ``_<n>`` in any name, so the converter's Sequential-index rule leaves them alone).
torchvision's older checkpoints name the dense layers' parameters ``norm.1``/``conv.2``;
``torchvision.models.densenet`` renames them on loading, and state dicts of its models carry the
new names (``norm1``, ``conv2``), the ones used here.
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

# The stem's 7x7/2 conv and 3x3/2 max-pool, then three 2x2/2 average pools: below 29 pixels the
# last transition has no full window left (torchvision fails there too).
MIN_SIZE = 29

# torchvision's DenseNet init: kaiming_normal_ (fan_in, gain sqrt(2)) for the convs; the Linear
# keeps torch's default weight init and gets a zero bias.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (``bn_size * growth_rate`` channels), BN-ReLU-3x3 conv (``growth_rate``
    channels), dropout; returns only the new channels."""

    growth_rate: int
    bn_size: int
    drop_rate: float
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        out = nn.relu(self.norm(name="norm1")(x, train))
        out = self.conv(self.bn_size * self.growth_rate, 1, name="conv1")(out)
        out = nn.relu(self.norm(name="norm2")(out, train))
        out = self.conv(self.growth_rate, 3, name="conv2")(out)
        if self.drop_rate > 0:
            out = nn.Dropout(self.drop_rate, deterministic=not train)(out)
        return out


class DenseBlock(nn.Module):
    """``num_layers`` dense layers (``denselayer1`` ...), each fed the concatenation of the
    block's input and every earlier layer's output; returns the concatenation of all."""

    num_layers: int
    growth_rate: int
    bn_size: int
    drop_rate: float
    conv: ModuleDef
    norm: ModuleDef
    memory_efficient: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        # torchvision's memory_efficient checkpoints each layer's bottleneck: the layer is
        # recomputed in the backward pass instead of keeping its activations.
        layer = nn.remat(DenseLayer, static_argnums=(2,)) if self.memory_efficient else DenseLayer
        for i in range(self.num_layers):
            new = layer(self.growth_rate, self.bn_size, self.drop_rate, self.conv, self.norm,
                        name=f"denselayer{i + 1}")(x, train)
            x = jnp.concatenate([x, new], axis=-1)  # torch.cat along channels, input first
        return x


class Transition(nn.Module):
    """BN-ReLU-1x1 conv to ``out_channels``, then 2x2/2 average pool."""

    out_channels: int
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.relu(self.norm(name="norm")(x, train))
        x = self.conv(self.out_channels, 1, name="conv")(x)
        return layers.avg_pool(x, 2, 2)


class DenseNetFeatures(nn.Module):
    """torchvision's ``DenseNet.features``: stem, dense blocks and transitions, ``norm5``.
    Returns the output of ``norm5`` (before the final ReLU) and the outputs of the dense blocks
    but the last."""

    growth_rate: int
    block_config: Sequence[int]
    num_init_features: int
    bn_size: int
    drop_rate: float
    memory_efficient: bool
    conv: ModuleDef
    norm: ModuleDef
    max_pool: ModuleDef

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, list[jax.Array]]:
        conv, norm = self.conv, self.norm
        x = conv(self.num_init_features, 7, 2, 3, name="conv0")(x)
        x = nn.relu(norm(name="norm0")(x, train))
        x = self.max_pool(x, 3, 2, padding=1)

        block_outputs = []
        num_features = self.num_init_features
        for i, num_layers in enumerate(self.block_config):
            x = DenseBlock(num_layers, self.growth_rate, self.bn_size, self.drop_rate, conv, norm,
                           self.memory_efficient, name=f"denseblock{i + 1}")(x, train)
            num_features += num_layers * self.growth_rate
            if i != len(self.block_config) - 1:
                block_outputs.append(x)
                num_features //= 2
                x = Transition(num_features, conv, norm, name=f"transition{i + 1}")(x, train)
        return norm(name="norm5")(x, train), block_outputs


class DenseNet(layers.ZooModel):
    """torchvision's DenseNet: ``features`` (a submodule, see ``DenseNetFeatures``), then ReLU,
    global average pool and the Linear ``classifier``. The options are torchvision's;
    ``memory_efficient`` recomputes each dense layer in the backward pass (``nn.remat``).

    ``features``: the pooled features before the classifier, (N, channels of norm5).
    ``feature_maps``: the outputs of the dense blocks before each transition (strides 4, 8, 16)
    and the final ReLU(norm5) map (stride 32).
    """

    growth_rate: int = 32
    block_config: Sequence[int] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    drop_rate: float = 0.0
    memory_efficient: bool = False
    arch: str = "densenet"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, output: str = "logits"):
        layers.check_input(x, self.arch, MIN_SIZE, self.in_channels, output)
        # torch's defaults: BatchNorm eps 1e-5, momentum 0.1 (flax 0.9); convs without bias.
        conv, norm = layers.conv_and_norm(self, kernel_init=_conv_init)
        max_pool = functools.partial(layers.max_pool, lowering=self.lowering)

        x = x.astype(self.dtype)
        x, block_outputs = DenseNetFeatures(
            self.growth_rate, tuple(self.block_config), self.num_init_features, self.bn_size,
            self.drop_rate, self.memory_efficient, conv, norm, max_pool, name="features")(x, train)
        x = nn.relu(x)  # torchvision's forward: F.relu after features (norm5 has no ReLU)
        if output == "feature_maps":
            return [*block_outputs, x]
        x = layers.global_avg_pool(x)
        if output == "features":
            return x
        return layers.dense(self.num_classes, dtype=self.dtype, name="classifier")(x)


def _channels(growth_rate, block_config, num_init_features):
    """Channels of the dense blocks' outputs (the feature maps)."""
    channels, num_features = [], num_init_features
    for num_layers in block_config:
        num_features += num_layers * growth_rate
        channels.append(num_features)
        num_features //= 2
    return tuple(channels)


def _register(name, growth_rate, block_config, num_init_features, description):
    def builder(num_classes=1000, dtype=jnp.float32, **kwargs):
        options = {"growth_rate": growth_rate, "block_config": block_config,
                   "num_init_features": num_init_features}
        options.update(kwargs)
        options["block_config"] = tuple(options["block_config"])
        return DenseNet(num_classes=num_classes, dtype=dtype, arch=name, **options)

    register(ModelSpec(name=name, builder=builder, torchvision=name, head=("classifier",),
                       features_at="classifier", default_size=224, min_size=MIN_SIZE,
                       feature_channels=_channels(growth_rate, block_config, num_init_features),
                       feature_strides=(4, 8, 16, 32), description=description))


_register("densenet121", 32, (6, 12, 24, 16), 64, "DenseNet-121")
_register("densenet161", 48, (6, 12, 36, 24), 96, "DenseNet-161")
_register("densenet169", 32, (6, 12, 32, 32), 64, "DenseNet-169")
_register("densenet201", 32, (6, 12, 48, 32), 64, "DenseNet-201")
