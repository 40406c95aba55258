"""The small Inception network for MNIST of the classic "PyTorch deep learning practice" course
(its GoogLeNet lesson): two 5x5 convs, each followed by a 2x2 max-pool and ReLU, each followed by
an ``InceptionA`` block of four branches concatenated to 88 channels, then one Linear.

    28x28x1 -> conv1 5x5 (10) -> max-pool 2 -> ReLU -> incep1 (88) -> 12x12
            -> conv2 5x5 (20) -> max-pool 2 -> ReLU -> incep2 (88) -> 4x4
            -> flatten (88 * 4 * 4 = 1408, torch's NCHW order) -> fc (10)

The course's code is the reference: every conv has a bias, there is no BatchNorm, the inception
branches have no activation, and the pool comes before the ReLU. Module names are its attribute
names (``conv1``, ``incep1/branch5x5_1``, ``fc``), which end in digits themselves, so the
converter keeps them as they are (``dotted_indices=False``): ``incep1.branch5x5_1.weight`` is
``params/incep1/branch5x5_1/kernel``. There is no torchvision counterpart.
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
NAME = "inception_mnist"
MIN_SIZE = 28


def _torch_conv(conv: ModuleDef, x: jax.Array, features: int, kernel_size: int,
                padding: int = 0, *, name: str) -> jax.Array:
    """``torch.nn.Conv2d(in, features, kernel_size, padding=padding)`` with its default
    initialization (bias included) applied to ``x``; call inside a compact method."""
    fan_in = x.shape[-1] * kernel_size * kernel_size
    return conv(features, kernel_size, padding=padding, use_bias=True,
                kernel_init=layers.torch_default_kernel,
                bias_init=layers.torch_default_bias(fan_in), name=name)(x)


class InceptionA(nn.Module):
    """The course's ``InceptionA``: 1x1 (16); 1x1 (16) -> 5x5 (24, pad 2); 1x1 (16) -> 3x3 (24,
    pad 1) -> 3x3 (24, pad 1); 3x3/1 average pool (pad 1, padding counted) -> 1x1 (24);
    concatenated in that order: 88 channels. No activations."""

    conv: ModuleDef

    @nn.compact
    def __call__(self, x):
        conv = functools.partial(_torch_conv, self.conv)
        branch1x1 = conv(x, 16, 1, name="branch1x1")
        branch5x5 = conv(x, 16, 1, name="branch5x5_1")
        branch5x5 = conv(branch5x5, 24, 5, 2, name="branch5x5_2")
        branch3x3 = conv(x, 16, 1, name="branch3x3_1")
        branch3x3 = conv(branch3x3, 24, 3, 1, name="branch3x3_2")
        branch3x3 = conv(branch3x3, 24, 3, 1, name="branch3x3_3")
        # F.avg_pool2d(x, kernel_size=3, stride=1, padding=1): count_include_pad=True.
        branch_pool = conv(layers.avg_pool(x, 3, 1, 1), 24, 1, name="branch_pool")
        # torch.cat(..., dim=1) on NCHW is the channel axis: the last one here.
        return jnp.concatenate([branch1x1, branch5x5, branch3x3, branch_pool], axis=-1)


def _final_side(n: int) -> int:
    """The side of incep2's output for an input side ``n``: two unpadded 5x5 convs and two
    2x2 max-pools (floor)."""
    return ((n - 4) // 2 - 4) // 2


class InceptionMNIST(layers.ZooModel):
    """The course's ``Net``. Its classifier reads 88 * 4 * 4 = 1408 features, so logits and
    features need a final 4x4 map: inputs of 28 (to 31) pixels; ``feature_maps`` takes any size
    from 28 up.

    ``features``: incep2's output flattened in torch's NCHW order, the input of ``fc``,
    (N, 1408). ``feature_maps``: incep2's output, the only map at a stride among 4, 8, 16, 32
    (stride 4, 88 channels).
    """

    # MNIST's ten digits, gray images.
    num_classes: int = dataclasses.field(default=10, kw_only=True)
    in_channels: int = dataclasses.field(default=1, kw_only=True)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, output: str = "logits"):
        del train  # no BatchNorm, no dropout: train and eval mode compute the same
        layers.check_input(x, NAME, MIN_SIZE, self.in_channels, output)
        sides = (_final_side(x.shape[1]), _final_side(x.shape[2]))
        if output != "feature_maps" and sides != (4, 4):
            raise ValueError(
                f"{NAME} takes 28x28 images: its classifier reads 88 x 4 x 4 = 1408 features, "
                f"but {x.shape[1]}x{x.shape[2]} inputs give {sides[0]}x{sides[1]} maps. Resize "
                f"the images to 28x28.")
        conv = functools.partial(layers.conv, dtype=self.dtype, lowering=self.lowering)
        max_pool = functools.partial(layers.max_pool, lowering=self.lowering)

        x = x.astype(self.dtype)
        # The course's order: F.relu(self.mp(self.conv1(x))), pool before ReLU.
        x = nn.relu(max_pool(_torch_conv(conv, x, 10, 5, name="conv1"), 2, 2))
        x = InceptionA(conv, name="incep1")(x)
        x = nn.relu(max_pool(_torch_conv(conv, x, 20, 5, name="conv2"), 2, 2))
        x = InceptionA(conv, name="incep2")(x)
        if output == "feature_maps":
            return [x]

        x = layers.flatten_nchw(x)  # x.view(in_size, -1) on NCHW: channel-major
        if output == "features":
            return x
        return layers.dense(self.num_classes, dtype=self.dtype,
                            bias_init=layers.torch_default_bias(x.shape[-1]), name="fc")(x)


def _builder(num_classes=1000, dtype=jnp.float32, **kwargs):
    return InceptionMNIST(num_classes=num_classes, dtype=dtype, **kwargs)


register(ModelSpec(name=NAME, builder=_builder, torchvision=None, head=("fc",),
                   features_at="fc", default_size=28, min_size=MIN_SIZE, dotted_indices=False,
                   feature_channels=(88,), feature_strides=(4,),
                   description="The small Inception net for 28x28 MNIST digits of the classic "
                               "PyTorch course (conv-pool-ReLU, InceptionA, 1408 -> 10 Linear)"))
