"""inception10: the small CIFAR-10 Inception network of the classic TensorFlow 2 tutorial.

A 3x3 conv-BN-ReLU stem of ``init_ch`` channels, then ``num_blocks`` blocks of two Inception
blocks each (the first with stride 2), channels doubling from block to block, global average pool
and a dense classifier. Each Inception block concatenates four branches, each conv followed by
BatchNorm and ReLU:

    branch1    1x1
    branch2    1x1 -> 3x3
    branch3    1x1 -> 5x5
    branch4    3x3 max-pool (stride 1, padding 1) -> 1x1

The stride sits in the 1x1 convs that take the block's input (the pool branch strides in its 1x1
conv), as in the tutorial, so every padded conv runs at stride 1 and torch-style symmetric padding
equals Keras' 'same'. Names follow torchvision's GoogLeNet (``blocks.0.branch2.1.conv.weight``).

Differences from the Keras original, both PyTorch conventions: the convs have no bias (the
BatchNorm that follows cancels it; Keras' Conv2D adds one by default), and BatchNorm uses torch's
defaults (eps 1e-5, momentum 0.1, i.e. flax 0.9) rather than Keras' (1e-3, 0.99). The classifier
returns logits; the tutorial's softmax belongs in the loss.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxzoo.models import layers
from jaxzoo.models.registry import ModelSpec, register

ModuleDef = Any


class ConvBNReLU(nn.Module):
    """conv (``conv``, no bias, size-keeping padding) + BatchNorm (``bn``) + ReLU; ``conv`` and
    ``norm`` are the model's."""

    features: int
    kernel_size: int
    conv: ModuleDef
    norm: ModuleDef
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        x = self.conv(self.features, self.kernel_size, self.stride, name="conv")(x)
        return nn.relu(self.norm(name="bn")(x, train))


class InceptionBlock(nn.Module):
    """Four branches of ``channels`` each, concatenated: output has ``4 * channels`` channels."""

    channels: int
    conv: ModuleDef
    norm: ModuleDef
    max_pool: Any  # layers.max_pool, lowering set
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        cbr = functools.partial(ConvBNReLU, self.channels, conv=self.conv, norm=self.norm)
        b1 = cbr(1, stride=self.stride, name="branch1")(x, train)
        b2 = cbr(1, stride=self.stride, name="branch2_0")(x, train)
        b2 = cbr(3, name="branch2_1")(b2, train)
        b3 = cbr(1, stride=self.stride, name="branch3_0")(x, train)
        b3 = cbr(5, name="branch3_1")(b3, train)
        b4 = self.max_pool(x, 3, 1, padding=1)  # Keras MaxPool2D(3, strides=1, padding='same')
        b4 = cbr(1, stride=self.stride, name="branch4_1")(b4, train)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class Inception10(layers.ZooModel):
    """The TF2 tutorial's Inception10: a conv-BN-ReLU stem, ``num_blocks`` pairs of Inception
    blocks, global average pool, fc (see the module docstring).

    ``features``: the pooled features before the classifier, (N, 4 * init_ch *
    2**(num_blocks - 1)). ``feature_maps``: the output of each pair of Inception blocks, strides
    2, 4, ... (one per block pair).
    """

    num_classes: int = dataclasses.field(default=10, kw_only=True)  # CIFAR-10's classes
    num_blocks: int = 2
    init_ch: int = 16

    @property
    def min_size(self) -> int:
        # The total stride: every block halves the resolution, so smaller inputs reach a block
        # as a single pixel that its stride-2 convs can no longer subsample.
        return 2 ** self.num_blocks

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, output: str = "logits"):
        layers.check_input(x, "inception10", self.min_size, self.in_channels, output)
        if self.num_blocks < 1:
            raise ValueError(f"num_blocks must be at least 1, got {self.num_blocks}")
        conv, norm = layers.conv_and_norm(self)
        max_pool = functools.partial(layers.max_pool, lowering=self.lowering)
        x = x.astype(self.dtype)
        x = ConvBNReLU(self.init_ch, 3, conv, norm, name="conv1")(x, train)
        channels, index, maps = self.init_ch, 0, []
        for _ in range(self.num_blocks):
            for stride in (2, 1):
                x = InceptionBlock(channels, conv, norm, max_pool, stride,
                                   name=f"blocks_{index}")(x, train)
                index += 1
            maps.append(x)
            channels *= 2
        if output == "feature_maps":
            return maps
        x = layers.global_avg_pool(x)
        if output == "features":
            return x
        return layers.dense(self.num_classes, dtype=self.dtype, name="fc")(x)


def _inception10(num_classes=10, dtype=jnp.float32, **kwargs):
    return Inception10(num_classes=num_classes, dtype=dtype, **kwargs)


register(ModelSpec(name="inception10", builder=_inception10, torchvision=None, head=("fc",),
                   default_size=32, min_size=4, feature_channels=(64, 128),
                   feature_strides=(2, 4),
                   description="Inception for 32x32 inputs (CIFAR-10), TF2 tutorial's Inception10"))
