"""Inception v3, mirroring ``torchvision.models.inception_v3`` (``Inception3``).

Module names are torchvision's attribute names (``Conv2d_1a_3x3/conv``,
``Mixed_5b/branch3x3dbl_1/conv``, ``AuxLogits/fc`` ...). They end in digits themselves, so the
converter maps them verbatim (``dotted_indices=False``): flax's
``params/Mixed_5b/branch3x3dbl_1/conv/kernel`` is torch's ``Mixed_5b.branch3x3dbl_1.conv.weight``.

torchvision's pretrained weights expect 299x299 inputs and ``transform_input=True``
(``inception_v3(weights=...)`` sets it); ``inception_v3(weights=None)`` builds
``transform_input=False, aux_logits=True``, as do the defaults here.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxzoo.models import layers
from jaxzoo.models.googlenet import ModuleDef, basic_conv, transform_input, trunc_normal
from jaxzoo.models.registry import ModelSpec, register

MIN_SIZE = 75  # Mixed_7a's stride-2 3x3 convolution needs a 3x3 map
# The auxiliary head needs Mixed_6e's map to be at least 17x17 (a 5x5/3 average pool, then an
# unpadded 5x5 conv): inputs of at least 299x299, the size the network was designed for.
AUX_MIN_SIZE = 299

# torchvision's init_weights=True: trunc_normal_(std=0.1) for every conv and linear weight, except
# AuxLogits.fc (std 0.001). AuxLogits.conv1 also asks for 0.01, but torchvision sets that on the
# BasicConv2d rather than its Conv2d, so the conv gets 0.1 like the rest.
_INIT = trunc_normal(0.1)


class InceptionA(nn.Module):
    pool_features: int
    conv: ModuleDef  # BasicConv2d, configured

    @nn.compact
    def __call__(self, x, train: bool):
        conv = self.conv
        branch1x1 = conv(64, 1, name="branch1x1")(x, train)

        branch5x5 = conv(48, 1, name="branch5x5_1")(x, train)
        branch5x5 = conv(64, 5, padding=2, name="branch5x5_2")(branch5x5, train)

        branch3x3dbl = conv(64, 1, name="branch3x3dbl_1")(x, train)
        branch3x3dbl = conv(96, 3, padding=1, name="branch3x3dbl_2")(branch3x3dbl, train)
        branch3x3dbl = conv(96, 3, padding=1, name="branch3x3dbl_3")(branch3x3dbl, train)

        branch_pool = layers.avg_pool(x, 3, 1, padding=1)  # count_include_pad, as F.avg_pool2d
        branch_pool = conv(self.pool_features, 1, name="branch_pool")(branch_pool, train)
        return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(nn.Module):
    conv: ModuleDef  # BasicConv2d, configured
    max_pool: Callable  # layers.max_pool, lowering set

    @nn.compact
    def __call__(self, x, train: bool):
        conv = self.conv
        branch3x3 = conv(384, 3, 2, name="branch3x3")(x, train)

        branch3x3dbl = conv(64, 1, name="branch3x3dbl_1")(x, train)
        branch3x3dbl = conv(96, 3, padding=1, name="branch3x3dbl_2")(branch3x3dbl, train)
        branch3x3dbl = conv(96, 3, 2, name="branch3x3dbl_3")(branch3x3dbl, train)

        branch_pool = self.max_pool(x, 3, 2)
        return jnp.concatenate([branch3x3, branch3x3dbl, branch_pool], axis=-1)


class InceptionC(nn.Module):
    channels_7x7: int
    conv: ModuleDef  # BasicConv2d, configured

    @nn.compact
    def __call__(self, x, train: bool):
        conv = self.conv
        c7 = self.channels_7x7
        branch1x1 = conv(192, 1, name="branch1x1")(x, train)

        # Factorized 7x7: 1x7 padded (0, 3) and 7x1 padded (3, 0).
        branch7x7 = conv(c7, 1, name="branch7x7_1")(x, train)
        branch7x7 = conv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(branch7x7, train)
        branch7x7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(branch7x7, train)

        dbl = conv(c7, 1, name="branch7x7dbl_1")(x, train)
        dbl = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(dbl, train)
        dbl = conv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(dbl, train)
        dbl = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(dbl, train)
        dbl = conv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(dbl, train)

        branch_pool = layers.avg_pool(x, 3, 1, padding=1)
        branch_pool = conv(192, 1, name="branch_pool")(branch_pool, train)
        return jnp.concatenate([branch1x1, branch7x7, dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):
    conv: ModuleDef  # BasicConv2d, configured
    max_pool: Callable  # layers.max_pool, lowering set

    @nn.compact
    def __call__(self, x, train: bool):
        conv = self.conv
        branch3x3 = conv(192, 1, name="branch3x3_1")(x, train)
        branch3x3 = conv(320, 3, 2, name="branch3x3_2")(branch3x3, train)

        branch7x7x3 = conv(192, 1, name="branch7x7x3_1")(x, train)
        branch7x7x3 = conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(branch7x7x3, train)
        branch7x7x3 = conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(branch7x7x3, train)
        branch7x7x3 = conv(192, 3, 2, name="branch7x7x3_4")(branch7x7x3, train)

        branch_pool = self.max_pool(x, 3, 2)
        return jnp.concatenate([branch3x3, branch7x7x3, branch_pool], axis=-1)


class InceptionE(nn.Module):
    conv: ModuleDef  # BasicConv2d, configured

    @nn.compact
    def __call__(self, x, train: bool):
        conv = self.conv
        branch1x1 = conv(320, 1, name="branch1x1")(x, train)

        branch3x3 = conv(384, 1, name="branch3x3_1")(x, train)
        branch3x3 = jnp.concatenate([
            conv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(branch3x3, train),
            conv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(branch3x3, train),
        ], axis=-1)

        dbl = conv(448, 1, name="branch3x3dbl_1")(x, train)
        dbl = conv(384, 3, padding=1, name="branch3x3dbl_2")(dbl, train)
        dbl = jnp.concatenate([
            conv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(dbl, train),
            conv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(dbl, train),
        ], axis=-1)

        branch_pool = layers.avg_pool(x, 3, 1, padding=1)
        branch_pool = conv(192, 1, name="branch_pool")(branch_pool, train)
        return jnp.concatenate([branch1x1, branch3x3, dbl, branch_pool], axis=-1)


class InceptionAux(nn.Module):
    """Auxiliary classifier after Mixed_6e: 5x5/3 average pool, 1x1 conv to 128, 5x5 conv to 768,
    global average pool, fc."""

    num_classes: int
    conv: ModuleDef  # BasicConv2d, configured
    dense: ModuleDef  # layers.dense, dtype set

    @nn.compact
    def __call__(self, x, train: bool):
        x = layers.avg_pool(x, 5, 3)
        x = self.conv(128, 1, name="conv0")(x, train)
        x = self.conv(768, 5, name="conv1")(x, train)
        x = layers.global_avg_pool(x)
        return self.dense(self.num_classes, kernel_init=trunc_normal(0.001), name="fc")(x)


class Inception3(layers.ZooModel):
    """torchvision's Inception3.

    Train mode with ``aux_logits`` returns ``(logits, aux)`` (torchvision's order; the usual loss
    is ``loss + 0.4 * aux``) and needs inputs of at least 299x299 for the auxiliary head; eval
    mode returns the logits and takes inputs from 75x75. Dropout (``dropout``, torchvision's 0.5)
    draws from the ``"dropout"`` rng.

    ``features``: the pooled features before dropout and the classifier, (N, 2048).
    ``feature_maps``: the outputs of Conv2d_4a_3x3, Mixed_5d, Mixed_6e and Mixed_7c, strides 4,
    8, 16 and 32 (timm's ``inception_v3`` feature maps from stride 4 on).
    """

    aux_logits: bool = True
    transform_input: bool = False
    dropout: float = 0.5
    remat: str = "none"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, *, output: str = "logits"):
        layers.check_input(x, "inception_v3", MIN_SIZE, self.in_channels, output)
        run_aux = self.aux_logits and train and output == "logits"
        if run_aux and min(x.shape[1:3]) < AUX_MIN_SIZE:
            raise ValueError(
                f"inception_v3's auxiliary head needs inputs of at least {AUX_MIN_SIZE}x"
                f"{AUX_MIN_SIZE} pixels in train mode; got {x.shape[1]}x{x.shape[2]}. Resize the "
                f"images up, or create the model with aux_logits=False to train on smaller ones.")
        conv = basic_conv(self, _INIT)
        max_pool = functools.partial(layers.max_pool, lowering=self.lowering)
        dense = functools.partial(layers.dense, dtype=self.dtype, kernel_init=_INIT)
        blk = {"conv": conv}
        block_a, block_b, block_c, block_d, block_e = (
            layers.remat_block(cls, self.remat)
            for cls in (InceptionA, InceptionB, InceptionC, InceptionD, InceptionE))

        x = x.astype(self.dtype)
        if self.transform_input:
            x = transform_input(x)
        x = conv(32, 3, 2, name="Conv2d_1a_3x3")(x, train)
        x = conv(32, 3, name="Conv2d_2a_3x3")(x, train)
        x = conv(64, 3, padding=1, name="Conv2d_2b_3x3")(x, train)
        x = max_pool(x, 3, 2)
        x = conv(80, 1, name="Conv2d_3b_1x1")(x, train)
        x = conv(192, 3, name="Conv2d_4a_3x3")(x, train)
        maps = [x]
        x = max_pool(x, 3, 2)

        x = block_a(32, **blk, name="Mixed_5b")(x, train)
        x = block_a(64, **blk, name="Mixed_5c")(x, train)
        x = block_a(64, **blk, name="Mixed_5d")(x, train)
        maps.append(x)
        x = block_b(**blk, max_pool=max_pool, name="Mixed_6a")(x, train)
        x = block_c(128, **blk, name="Mixed_6b")(x, train)
        x = block_c(160, **blk, name="Mixed_6c")(x, train)
        x = block_c(160, **blk, name="Mixed_6d")(x, train)
        x = block_c(192, **blk, name="Mixed_6e")(x, train)
        maps.append(x)

        aux = None
        if run_aux:
            aux = InceptionAux(self.num_classes, dense=dense, **blk, name="AuxLogits")(x, train)
        elif self.aux_logits and self.is_initializing() and output == "logits":
            # The head runs in train mode only, but its parameters exist in eval mode too (they
            # are in torchvision's state dict). Its parameter shapes do not depend on the spatial
            # size, so at eval-mode init (maybe below 299 pixels) it is built on a 17x17 stand-in.
            stand_in = jnp.zeros((1, 17, 17, x.shape[-1]), x.dtype)
            InceptionAux(self.num_classes, dense=dense, **blk, name="AuxLogits")(stand_in, train)

        x = block_d(**blk, max_pool=max_pool, name="Mixed_7a")(x, train)
        x = block_e(**blk, name="Mixed_7b")(x, train)
        x = block_e(**blk, name="Mixed_7c")(x, train)
        if output == "feature_maps":
            return [*maps, x]

        x = layers.global_avg_pool(x)
        if output == "features":
            return x
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        logits = dense(self.num_classes, name="fc")(x)
        if train and self.aux_logits:
            return logits, aux
        return logits


def _builder(num_classes=1000, dtype=jnp.float32, **kwargs):
    return Inception3(num_classes=num_classes, dtype=dtype, **kwargs)


register(ModelSpec(
    name="inception_v3", builder=_builder, torchvision="inception_v3",
    # What inception_v3(weights=None) builds, without its FutureWarning about init_weights. Its
    # std-0.1 initialization keeps the logits input-dependent with eval-mode BatchNorm (torch's
    # default initialization does not), which the parity check needs to see the whole network.
    torch_kwargs={"aux_logits": True, "transform_input": False, "init_weights": True},
    head=("fc", "AuxLogits.fc"), default_size=299, min_size=MIN_SIZE, dotted_indices=False,
    feature_channels=(192, 288, 768, 2048),
    description="Inception v3 (auxiliary head after Mixed_6e)"))
