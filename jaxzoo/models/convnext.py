"""ConvNeXt, mirroring ``torchvision.models.convnext``.

torchvision's ``features`` Sequential holds the stem (4x4/4 conv + LayerNorm2d), the stages of
``CNBlock`` and, between stages, the downsampling layers (LayerNorm2d + 2x2/2 conv); its
``classifier`` is LayerNorm2d, Flatten, Linear. The flax modules carry those indices:

    features.0.0.weight             ->  params/features_0_0/kernel   (stem conv; features.0.1: norm)
    features.1.0.block.0.weight     ->  params/features_1_0/block_0/kernel   (7x7 depthwise)
    features.1.0.block.2.weight     ->  params/features_1_0/block_2/scale    (LayerNorm)
    features.1.0.block.3 / block.5  ->  params/features_1_0/block_3 / block_5 (Linear layers)
    features.1.0.layer_scale        ->  params/features_1_0/layer_scale      (bare parameter)
    features.2.0 / features.2.1     ->  params/features_2_0 / features_2_1   (downsampling)
    classifier.0 / classifier.2     ->  params/classifier_0 / classifier_2

The feature maps are channels-last already, so torchvision's ``Permute`` layers (``block.1``,
``block.6``) have nothing to do, its ``LayerNorm2d`` is a layer norm over the last axis and its
Linear layers act on the last axis directly.

``layer_scale`` keeps torchvision's shape (C, 1, 1): the converter copies such bare parameters as
they are, under their own name.
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

# torchvision: nn.init.trunc_normal_(weight, std=0.02) for every Conv2d and Linear, zero biases.
# torch truncates at -2 and 2 in absolute terms, flax in standard deviations: 2 / 0.02 = 100.
_trunc_normal = nn.initializers.truncated_normal(0.02, lower=-100.0, upper=100.0)


class CNBlock(nn.Module):
    """torchvision's ``CNBlock``: 7x7 depthwise conv (with bias), LayerNorm, Linear to 4x the
    channels, GELU, Linear back, times ``layer_scale``, stochastic depth, plus the input."""

    layer_scale: float
    stochastic_depth_prob: float
    conv: ModuleDef
    norm: ModuleDef
    dense: ModuleDef

    @nn.compact
    def __call__(self, x, train: bool):
        dim = x.shape[-1]
        out = self.conv(dim, 7, padding=3, groups=dim, use_bias=True, name="block_0")(x)
        out = self.norm(name="block_2")(out)
        out = self.dense(4 * dim, name="block_3")(out)
        out = nn.gelu(out, approximate=False)  # torch's nn.GELU(): the exact erf form
        out = self.dense(dim, name="block_5")(out)
        # torchvision: nn.Parameter(torch.ones(dim, 1, 1) * layer_scale), broadcast over NCHW's
        # channel axis; here the channels are the last axis.
        gamma = self.param("layer_scale", nn.initializers.constant(self.layer_scale),
                           (dim, 1, 1), jnp.float32)
        out = out * gamma.reshape(dim).astype(out.dtype)
        out = layers.StochasticDepth(self.stochastic_depth_prob, "row",
                                     name="stochastic_depth")(out, train)
        return out + x


class ConvNeXt(layers.ZooModel):
    """torchvision's ConvNeXt. ``block_setting``: per stage (channels, channels of the next
    stage or None for the last, number of blocks). ``stochastic_depth_prob`` is the drop
    probability of the last block; block ``k`` of ``n`` gets ``stochastic_depth_prob * k /
    (n - 1)``. It draws from the "dropout" rng in train mode.

    ``features``: the pooled and layer-normalized features, the input of the classifier Linear
    (``classifier.2``). ``feature_maps``: the output of each stage, strides 4, 8, 16 and 32.

    There is no BatchNorm: ``bn_axis_name`` is accepted (the trainer passes it to every model)
    and unused.
    """

    block_setting: Sequence[tuple[int, int | None, int]] = (
        (96, 192, 3), (192, 384, 3), (384, 768, 9), (768, None, 3))
    stochastic_depth_prob: float = 0.1
    layer_scale: float = 1e-6
    arch: str = "convnext"
    min_size: int = 32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, output: str = "logits"):
        layers.check_input(x, self.arch, self.min_size, self.in_channels, output)
        if not self.block_setting:
            raise ValueError("The block_setting should not be empty")
        conv = functools.partial(layers.conv, dtype=self.dtype, lowering=self.lowering,
                                 kernel_init=_trunc_normal)
        # torchvision's LayerNorm2d (and the blocks' nn.LayerNorm), eps 1e-6, over the channels.
        # Two-pass variance, as torch computes it (flax's fast variance is E[x^2] - E[x]^2).
        norm = functools.partial(nn.LayerNorm, epsilon=1e-6, dtype=self.dtype,
                                 param_dtype=jnp.float32, use_fast_variance=False)
        dense = functools.partial(layers.dense, dtype=self.dtype, kernel_init=_trunc_normal)

        x = x.astype(self.dtype)
        x = conv(self.block_setting[0][0], 4, 4, padding=0, use_bias=True, name="features_0_0")(x)
        x = norm(name="features_0_1")(x)

        total_blocks = sum(num_layers for _, _, num_layers in self.block_setting)
        block_id, index, maps = 0, 1, []
        for channels, out_channels, num_layers in self.block_setting:
            for i in range(num_layers):
                # torchvision: the probability grows linearly with the block's depth.
                sd_prob = self.stochastic_depth_prob * block_id / (total_blocks - 1.0)
                x = CNBlock(self.layer_scale, sd_prob, conv, norm, dense,
                            name=f"features_{index}_{i}")(x, train)
                block_id += 1
            maps.append(x)
            index += 1
            if out_channels is not None:
                x = norm(name=f"features_{index}_0")(x)
                x = conv(out_channels, 2, 2, padding=0, use_bias=True,
                         name=f"features_{index}_1")(x)
                index += 1
        if output == "feature_maps":
            return maps

        x = layers.global_avg_pool(x)  # torchvision: nn.AdaptiveAvgPool2d(1), then Flatten
        x = norm(name="classifier_0")(x)  # LayerNorm2d on (N, C, 1, 1): over the channels
        if output == "features":
            return x
        return dense(self.num_classes, name="classifier_2")(x)


# torchvision's CNBlockConfig lists and default stochastic depth probabilities.
_CONVNEXTS = {
    "convnext_tiny": (((96, 192, 3), (192, 384, 3), (384, 768, 9), (768, None, 3)), 0.1, "Tiny"),
    "convnext_small": (((96, 192, 3), (192, 384, 3), (384, 768, 27), (768, None, 3)), 0.4,
                       "Small"),
    "convnext_base": (((128, 256, 3), (256, 512, 3), (512, 1024, 27), (1024, None, 3)), 0.5,
                      "Base"),
    "convnext_large": (((192, 384, 3), (384, 768, 3), (768, 1536, 27), (1536, None, 3)), 0.5,
                       "Large"),
}


def _register(name, block_setting, stochastic_depth_prob, size):
    def builder(num_classes=1000, dtype=jnp.float32, **kwargs):
        kwargs.setdefault("stochastic_depth_prob", stochastic_depth_prob)
        return ConvNeXt(num_classes=num_classes, block_setting=block_setting, dtype=dtype,
                        arch=name, **kwargs)

    register(ModelSpec(name=name, builder=builder, torchvision=name, head=("classifier.2",),
                       features_at="classifier.2", default_size=224, min_size=32,
                       feature_channels=tuple(channels for channels, _, _ in block_setting),
                       feature_strides=(4, 8, 16, 32),
                       description=f"ConvNeXt {size}"))


for _name, (_setting, _sd_prob, _size) in _CONVNEXTS.items():
    _register(_name, _setting, _sd_prob, _size)
