"""GoogLeNet (Inception v1), mirroring ``torchvision.models.googlenet``.

This is torchvision's variant, not the paper's exact network: every convolution is a
``BasicConv2d`` (conv without bias + BatchNorm with eps 1e-3 + ReLU), the max-pools use
``ceil_mode=True``, and the "5x5" branch of each Inception block has a 3x3 kernel (kept by
torchvision so that its weights load, pytorch/vision#906).

Module names follow torchvision's attribute names (``conv1/conv``, ``inception3a/branch2_0/conv``,
``aux1/fc1`` ...), so torchvision's ``inception3a.branch2.0.conv.weight`` is flax's
``params/inception3a/branch2_0/conv/kernel``.

torchvision's pretrained weights expect ``transform_input=True`` (``googlenet(weights=...)`` sets
it); ``googlenet(weights=None)`` builds ``transform_input=False, aux_logits=True``, as do the
defaults here.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxzoo import imagenet
from jaxzoo.models import layers
from jaxzoo.models.registry import ModelSpec, register

MIN_SIZE = 15  # below this, maxpool3's ceil-mode window has no input left (as in torchvision)


def trunc_normal(std: float):
    """torch.nn.init.trunc_normal_(w, std=std, a=-2, b=2): the bounds are absolute values, not
    multiples of std."""
    return nn.initializers.truncated_normal(std, lower=-2.0 / std, upper=2.0 / std)


def transform_input(x: jax.Array) -> jax.Array:
    """torchvision's ``_transform_input``: re-normalize ImageNet-normalized input (mean/std per
    channel) to the ``(x - 0.5) / 0.5`` convention the ported Google weights were trained with."""
    mean, std = np.array(imagenet.MEAN), np.array(imagenet.STD)
    scale = jnp.asarray(std / 0.5, x.dtype)
    shift = jnp.asarray((mean - 0.5) / 0.5, x.dtype)
    return x * scale + shift


ModuleDef = Any


class BasicConv2d(nn.Module):
    """torchvision's BasicConv2d: Conv2d(bias=False) + BatchNorm2d(eps=0.001) + ReLU.
    ``padding`` is torch's (default 0). ``conv`` and ``norm`` are the model's (its dtype,
    lowering, initializer and BatchNorm axis set)."""

    features: int
    kernel_size: int | Sequence[int]
    stride: int = 1
    padding: int | Sequence[int] = 0
    conv: ModuleDef = layers.conv
    norm: ModuleDef = functools.partial(layers.BatchNorm, epsilon=1e-3)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = self.conv(self.features, self.kernel_size, self.stride, self.padding, name="conv")(x)
        return nn.relu(self.norm(name="bn")(x, train))


def basic_conv(module: nn.Module, kernel_init) -> ModuleDef:
    """``BasicConv2d`` with ``module``'s dtype, lowering and BatchNorm axis, and ``kernel_init``."""
    conv, norm = layers.conv_and_norm(module, kernel_init=kernel_init, epsilon=1e-3)
    return functools.partial(BasicConv2d, conv=conv, norm=norm)


class Inception(nn.Module):
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int
    conv: ModuleDef  # BasicConv2d, configured
    max_pool: Callable  # layers.max_pool, lowering set

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv = self.conv
        branch1 = conv(self.ch1x1, 1, name="branch1")(x, train)

        branch2 = conv(self.ch3x3red, 1, name="branch2_0")(x, train)
        branch2 = conv(self.ch3x3, 3, padding=1, name="branch2_1")(branch2, train)

        branch3 = conv(self.ch5x5red, 1, name="branch3_0")(x, train)
        # 3x3, not the paper's 5x5: torchvision's known deviation, kept for its weights.
        branch3 = conv(self.ch5x5, 3, padding=1, name="branch3_1")(branch3, train)

        branch4 = self.max_pool(x, 3, 1, padding=1, ceil_mode=True)
        branch4 = conv(self.pool_proj, 1, name="branch4_1")(branch4, train)
        return jnp.concatenate([branch1, branch2, branch3, branch4], axis=-1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: adaptive average pool to 4x4 (torch's windows: 14x14 -> 4x4 overlaps),
    1x1 conv to 128, fc 2048 -> 1024, ReLU, dropout, fc."""

    num_classes: int
    conv: ModuleDef  # BasicConv2d, configured
    dense: ModuleDef  # layers.dense, configured
    dropout: float = 0.7

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = layers.adaptive_avg_pool(x, (4, 4))
        x = self.conv(128, 1, name="conv")(x, train)
        x = layers.flatten_nchw(x)
        x = nn.relu(self.dense(1024, name="fc1")(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return self.dense(self.num_classes, name="fc2")(x)


class GoogLeNet(layers.ZooModel):
    """torchvision's GoogLeNet.

    Train mode with ``aux_logits`` returns ``(logits, aux2, aux1)`` (torchvision's order; the
    paper's loss is ``loss + 0.3 * (aux1 + aux2)``); eval mode returns the logits. ``dropout`` is
    the main classifier's (torchvision 0.2, the paper 0.4), ``dropout_aux`` the auxiliary heads'.
    Dropout draws from the ``"dropout"`` rng.

    ``features``: the pooled features before dropout and the classifier, (N, 1024).
    ``feature_maps``: the outputs of conv3, inception3b, inception4e and inception5b, strides 4,
    8, 16 and 32.
    """

    aux_logits: bool = True
    transform_input: bool = False
    dropout: float = 0.2
    dropout_aux: float = 0.7
    remat: str = "none"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, output: str = "logits"):
        layers.check_input(x, "googlenet", MIN_SIZE, self.in_channels, output)
        # torchvision's init_weights=True: trunc_normal_(std=0.01) for every conv and linear weight.
        init = trunc_normal(0.01)
        conv = basic_conv(self, init)
        max_pool = functools.partial(layers.max_pool, lowering=self.lowering)
        dense = functools.partial(layers.dense, dtype=self.dtype, kernel_init=init)
        block = functools.partial(layers.remat_block(Inception, self.remat), conv=conv,
                                  max_pool=max_pool)
        aux = functools.partial(InceptionAux, self.num_classes, conv, dense, self.dropout_aux)
        # The auxiliary heads run in train mode only, but their parameters exist in eval mode too
        # (they are in torchvision's state dict), so they also run when initializing.
        run_aux = self.aux_logits and (train or self.is_initializing()) and output == "logits"

        x = x.astype(self.dtype)
        if self.transform_input:
            x = transform_input(x)
        x = conv(64, 7, 2, 3, name="conv1")(x, train)
        x = max_pool(x, 3, 2, ceil_mode=True)
        x = conv(64, 1, name="conv2")(x, train)
        x = conv(192, 3, padding=1, name="conv3")(x, train)
        maps = [x]
        x = max_pool(x, 3, 2, ceil_mode=True)

        x = block(64, 96, 128, 16, 32, 32, name="inception3a")(x, train)
        x = block(128, 128, 192, 32, 96, 64, name="inception3b")(x, train)
        maps.append(x)
        x = max_pool(x, 3, 2, ceil_mode=True)

        x = block(192, 96, 208, 16, 48, 64, name="inception4a")(x, train)
        aux1 = aux(name="aux1")(x, train) if run_aux else None
        x = block(160, 112, 224, 24, 64, 64, name="inception4b")(x, train)
        x = block(128, 128, 256, 24, 64, 64, name="inception4c")(x, train)
        x = block(112, 144, 288, 32, 64, 64, name="inception4d")(x, train)
        aux2 = aux(name="aux2")(x, train) if run_aux else None
        x = block(256, 160, 320, 32, 128, 128, name="inception4e")(x, train)
        maps.append(x)
        x = max_pool(x, 2, 2, ceil_mode=True)

        x = block(256, 160, 320, 32, 128, 128, name="inception5a")(x, train)
        x = block(384, 192, 384, 48, 128, 128, name="inception5b")(x, train)
        if output == "feature_maps":
            return [*maps, x]

        x = layers.global_avg_pool(x)
        if output == "features":
            return x
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        logits = dense(self.num_classes, name="fc")(x)
        if train and self.aux_logits:
            return logits, aux2, aux1
        return logits


def _builder(num_classes=1000, dtype=jnp.float32, **kwargs):
    return GoogLeNet(num_classes=num_classes, dtype=dtype, **kwargs)


register(ModelSpec(
    name="googlenet", builder=_builder, torchvision="googlenet",
    # The network googlenet(weights=None) builds. init_weights=False skips torchvision's slow
    # truncated-normal initialization (and its FutureWarning); weights are compared, not drawn.
    torch_kwargs={"aux_logits": True, "transform_input": False, "init_weights": False},
    head=("fc", "aux1.fc2", "aux2.fc2"), default_size=224, min_size=MIN_SIZE,
    feature_channels=(192, 480, 832, 1024),
    description="GoogLeNet (Inception v1, torchvision's BatchNorm variant, auxiliary heads)"))
