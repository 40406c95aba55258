"""Layers shared by every model family, written to reproduce PyTorch's numerics exactly.

Mixed precision, the one policy of every model and of the train step: a model's ``dtype``
(``config.dtype``: float32 or bfloat16) is the dtype its convolutions, matmuls and activations
compute in. Parameters are float32 (``param_dtype``), and so are the optimizer state built from
them, BatchNorm's batch and running statistics (computed from a float32 copy of the input), and
the softmax and loss (``train.step.cross_entropy`` casts the logits). float16, which would need
loss scaling, is not offered.

The rules (ARCHITECTURE.md, "Numerics"): explicit symmetric padding, PyTorch's ceil-mode and
adaptive pooling windows, BatchNorm that normalizes with the biased batch variance but stores the
unbiased one, torchvision's initializers.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

from jaxzoo.models import lowering as lowerings

Dtype = Any
ModuleDef = Any  # a layer constructor handed to a block: a configured conv, norm or block

# torchvision's initializers, in flax terms.
# nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"): N(0, 2 / fan_out), not truncated.
kaiming_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# torch's default for Conv2d and Linear weights, kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_default_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias(fan_in: int):
    """torch's default bias init for Conv2d and Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


def conv(
    features: int,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | None = None,
    *,
    groups: int = 1,
    dilation: int = 1,
    use_bias: bool = False,
    dtype: Dtype = jnp.float32,
    lowering: str = "xla",
    kernel_init=kaiming_normal_fan_out,
    bias_init=nn.initializers.zeros,
    name: str | None = None,
) -> nn.Conv:
    """An ``nn.Conv`` configured like ``torch.nn.Conv2d``.

    ``padding`` is PyTorch's: an int or (pad_h, pad_w), applied symmetrically. The default is
    ``dilation * (k - 1) // 2`` per side, which keeps the size for odd kernels at stride 1. Flax's
    'SAME' is never used: at stride 2 it pads bottom/right only, which shifts every feature map by
    half a pixel against torchvision's weights. ``lowering`` ("xla" or "cpu") picks the
    ``conv_general_dilated`` the layer calls (``lowerings.conv_function``).
    """
    kh, kw = _pair(kernel_size)
    if padding is None:
        padding = (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)
    ph, pw = _pair(padding)
    return nn.Conv(
        features,
        (kh, kw),
        strides=_pair(stride),
        padding=((ph, ph), (pw, pw)),
        kernel_dilation=(dilation, dilation),
        feature_group_count=groups,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=kernel_init,
        bias_init=bias_init,
        conv_general_dilated=lowerings.conv_function(lowering),
        name=name,
    )


def dense(features: int, *, dtype: Dtype = jnp.float32, kernel_init=torch_default_kernel,
          bias_init=nn.initializers.zeros, name: str | None = None) -> nn.Dense:
    """An ``nn.Dense`` with torch.nn.Linear's default weight initializer."""
    return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, kernel_init=kernel_init,
                    bias_init=bias_init, name=name)


class BatchNorm(nn.Module):
    """``torch.nn.BatchNorm2d`` in flax terms.

    Parameters ``scale``/``bias`` and running statistics ``mean``/``var`` (collection
    ``batch_stats``) map one to one onto torch's ``weight``/``bias``/``running_mean``/``running_var``.

    ``momentum`` follows flax's convention, ``running = momentum * running + (1 - momentum) * batch``,
    so torch's default 0.1 is 0.9 here and MobileNetV3's 0.01 is 0.99.

    In train mode the batch is normalized with the biased variance, but the running variance is
    updated with the unbiased one (times n / (n - 1)), as torch does; flax's own BatchNorm stores the
    biased variance and so drifts from torch after every step. With ``axis_name`` the statistics are
    averaged over that mapped axis (synchronized BatchNorm under shard_map).
    """

    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Dtype = jnp.float32
    axis_name: str | None = None
    scale_init: Any = nn.initializers.ones

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        features = x.shape[-1]
        scale = self.param("scale", self.scale_init, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        running_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)

        if train:
            x32 = x.astype(jnp.float32)
            axes = tuple(range(x.ndim - 1))
            count = x.size // features
            mean = x32.mean(axes)
            if self.axis_name is not None:
                mean = lax.pmean(mean, self.axis_name)
            # Two-pass variance around the (global) mean: exact where E[x^2] - E[x]^2 cancels.
            var = jnp.square(x32 - mean).mean(axes)
            if self.axis_name is not None:
                var = lax.pmean(var, self.axis_name)
                count = count * lax.psum(1, self.axis_name)
            if not self.is_initializing():
                unbiased_var = var * (count / jnp.maximum(count - 1, 1))
                m = self.momentum
                running_mean.value = m * running_mean.value + (1.0 - m) * mean
                running_var.value = m * running_var.value + (1.0 - m) * unbiased_var
        else:
            mean, var = running_mean.value, running_var.value

        multiplier = scale * lax.rsqrt(var + self.epsilon)
        offset = bias - mean * multiplier
        return x.astype(self.dtype) * multiplier.astype(self.dtype) + offset.astype(self.dtype)


def max_pool(x: jax.Array, kernel_size: int, stride: int, padding: int = 0,
             ceil_mode: bool = False, *, lowering: str = "xla") -> jax.Array:
    """``torch.nn.MaxPool2d(kernel_size, stride, padding, ceil_mode)`` on NHWC input, its gradient
    lowered as ``lowering`` says (``lowerings.max_pool``).

    Padding is -inf, as in torch. With ``ceil_mode`` the output has
    ``ceil((n + 2p - k) / s) + 1`` positions, less one if the last window would start in the
    right/bottom padding (torch's rule); the windows that hang over the edge get extra -inf padding.
    """
    pads = []
    for n in x.shape[1:3]:
        span = n + 2 * padding - kernel_size
        if ceil_mode:
            out = -(-span // stride) + 1
            if (out - 1) * stride >= n + padding:
                out -= 1
        else:
            out = span // stride + 1
        extra = (out - 1) * stride + kernel_size - (n + 2 * padding)
        pads.append((padding, padding + max(extra, 0)))
    return lowerings.max_pool(x, kernel_size, stride, tuple(pads), lowering)


def avg_pool(x: jax.Array, kernel_size: int, stride: int, padding: int = 0) -> jax.Array:
    """``torch.nn.functional.avg_pool2d`` with its default ``count_include_pad=True``."""
    return nn.avg_pool(x, (kernel_size, kernel_size), (stride, stride),
                       padding=((padding, padding), (padding, padding)), count_include_pad=True)


def _adaptive_pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    # torch's AdaptiveAvgPool2d window i covers [floor(i*n_in/n_out), ceil((i+1)*n_in/n_out)).
    m = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        start = (i * n_in) // n_out
        end = -(-((i + 1) * n_in) // n_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(x: jax.Array, output_size: int | Sequence[int]) -> jax.Array:
    """``torch.nn.AdaptiveAvgPool2d(output_size)`` on NHWC input (windows may overlap)."""
    oh, ow = _pair(output_size)
    _, h, w, _ = x.shape
    if (oh, ow) == (1, 1):
        return x.mean(axis=(1, 2), keepdims=True)
    ph = jnp.asarray(_adaptive_pool_matrix(h, oh), x.dtype)
    pw = jnp.asarray(_adaptive_pool_matrix(w, ow), x.dtype)
    return jnp.einsum("nhwc,ih,jw->nijc", x, ph, pw)


def global_avg_pool(x: jax.Array) -> jax.Array:
    """Mean over height and width: (N, H, W, C) -> (N, C)."""
    return x.mean(axis=(1, 2))


def flatten_nchw(x: jax.Array) -> jax.Array:
    """``torch.flatten(x, 1)`` of the NCHW tensor: channel-major order, which the torch Linear
    weights that follow expect."""
    return x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)


# Rematerialization of a model's blocks (``remat`` field, ``config.remat``): their activations are
# recomputed in the backward pass instead of kept. "blocks" keeps the outputs of the convs and
# matmuls (recomputing BatchNorm, activations and pools: cheap); "blocks_full" keeps nothing of a
# block but its input.
REMAT_POLICIES = {"none": None, "blocks": jax.checkpoint_policies.dots_saveable,
                  "blocks_full": jax.checkpoint_policies.nothing_saveable}


def remat_block(block_class, remat: str):
    """``block_class``, or ``nn.remat`` of it with the policy named ``remat``. The block's
    ``__call__(x, train)`` takes ``train`` as its second argument (static: it selects code)."""
    if remat not in REMAT_POLICIES:
        raise ValueError(f"remat must be one of {', '.join(REMAT_POLICIES)}, got {remat!r}")
    if remat == "none":
        return block_class
    return nn.remat(block_class, policy=REMAT_POLICIES[remat], static_argnums=(2,))


def make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision's ``_make_divisible``: round to the nearest multiple of ``divisor``, never
    going below ``min_value`` (default ``divisor``) nor more than 10% below ``v``."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


# ---------------------------------------------------------------------------------------------
# Pieces several families build their blocks from
# ---------------------------------------------------------------------------------------------

def conv_and_norm(model: nn.Module, *, use_bias: bool = False,
                  kernel_init=kaiming_normal_fan_out, **norm_kwargs) -> tuple[ModuleDef, ModuleDef]:
    """A model's ``conv`` and ``norm``: ``conv`` and ``BatchNorm`` with its dtype, lowering and
    BatchNorm axis; ``use_bias`` and ``kernel_init`` go to the convs, ``norm_kwargs`` (momentum,
    epsilon) to the BatchNorms."""
    model_conv = functools.partial(conv, use_bias=use_bias, dtype=model.dtype,
                                   lowering=model.lowering, kernel_init=kernel_init)
    model_norm = functools.partial(BatchNorm, dtype=model.dtype, axis_name=model.bn_axis_name,
                                   **norm_kwargs)
    return model_conv, model_norm


def conv_norm_act(x, train: bool, features: int, kernel_size: int, stride: int = 1, *,
                  name: str, conv: ModuleDef, norm: ModuleDef, groups: int = 1,
                  dilation: int = 1, activation: Callable | None = nn.relu):
    """torchvision's ``Conv2dNormActivation``: conv (no bias) ``<name>_0``, BatchNorm
    ``<name>_1``, then the activation. Padding ``(k - 1) // 2 * dilation``, as torchvision's.
    ``conv`` and ``norm`` are the model's (``conv_and_norm``).

    Call it inside a compact method: the layers belong to the calling module.
    """
    x = conv(features, kernel_size, stride, groups=groups, dilation=dilation, name=f"{name}_0")(x)
    x = norm(name=f"{name}_1")(x, train)
    return x if activation is None else activation(x)


class StochasticDepth(nn.Module):
    """torchvision's ``StochasticDepth(p, mode)``: in train mode, zero the whole input
    (``mode="batch"``) or each sample (``mode="row"``) with probability ``p`` and scale what is
    kept by ``1 / (1 - p)``. The mask is drawn from the "dropout" rng. Identity in eval mode and
    when ``p == 0``."""

    p: float
    mode: str = "row"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.p < 0.0 or self.p > 1.0:
            raise ValueError(f"drop probability has to be between 0 and 1, but got {self.p}")
        if self.mode not in ("batch", "row"):
            raise ValueError(f"mode has to be either 'batch' or 'row', but got {self.mode}")
        if not train or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        # "row": one Bernoulli(survival) per sample, broadcast over H, W, C; "batch": one in all.
        shape = (x.shape[0],) + (1,) * (x.ndim - 1) if self.mode == "row" else (1,) * x.ndim
        noise = jax.random.bernoulli(self.make_rng("dropout"), survival, shape).astype(x.dtype)
        if survival > 0.0:  # torchvision: noise.div_(survival_rate) only when it is positive
            noise = noise / survival
        return x * noise


class SqueezeExcitation(nn.Module):
    """torchvision's ``SqueezeExcitation``: average pool, 1x1 conv ``fc1`` (with bias) +
    ``activation``, 1x1 conv ``fc2`` (with bias) + ``scale_activation``, times the input.

    The defaults are torchvision's (ReLU, sigmoid: RegNetY); EfficientNet passes SiLU and
    MobileNetV3 hardsigmoid. As in torchvision, the block computes ``squeeze_channels`` itself:
    each family rounds it its own way.
    """

    squeeze_channels: int
    conv: ModuleDef
    activation: Callable = nn.relu
    scale_activation: Callable = nn.sigmoid

    @nn.compact
    def __call__(self, x):
        scale = x.mean(axis=(1, 2), keepdims=True)  # torchvision: nn.AdaptiveAvgPool2d(1)
        scale = self.conv(self.squeeze_channels, 1, use_bias=True, name="fc1")(scale)
        scale = self.activation(scale)
        scale = self.conv(x.shape[-1], 1, use_bias=True, name="fc2")(scale)
        return self.scale_activation(scale) * x


class StrideMaps:
    """The last feature map seen at each stride, for ``method="feature_maps"``: ``add(stride, x)``
    after each layer, with the layer's own stride; ``at_strides()`` lists them at 4, 8, 16, 32."""

    def __init__(self, stride: int, x: jax.Array):
        self.stride, self.maps = stride, {stride: x}

    def add(self, stride: int, x: jax.Array) -> StrideMaps:
        self.stride *= stride
        self.maps[self.stride] = x
        return self

    def at_strides(self, strides=(4, 8, 16, 32)) -> list[jax.Array]:
        return [self.maps[s] for s in strides if s in self.maps]


# What a model's ``__call__`` returns, by its ``output`` argument: the classifier's logits, the
# pooled features before the classifier (``method="features"``), or the list of feature maps at
# each stride (``method="feature_maps"``, timm's ``features_only``).
OUTPUTS = ("logits", "features", "feature_maps")


class ZooModel(nn.Module):
    """Base class of the registered models: the contract's fields (ARCHITECTURE.md, "The model
    contract") and its ``features`` and ``feature_maps`` methods, ``__call__`` with that
    ``output``. Each model's docstring says what they return.

    The fields are keyword-only, so a family adds its own (positional or not) after them, and a
    family whose default differs redeclares just that field, keyword-only too
    (``num_classes: int = dataclasses.field(default=10, kw_only=True)``). A model without
    BatchNorm accepts ``bn_axis_name`` all the same: the trainer passes it to every model.
    """

    num_classes: int = dataclasses.field(default=1000, kw_only=True)
    # The compute dtype (the module docstring's policy); parameters are float32 whatever it is.
    dtype: Dtype = dataclasses.field(default=jnp.float32, kw_only=True)
    # The mapped axis BatchNorm averages its batch statistics over under shard_map (None: none).
    bn_axis_name: str | None = dataclasses.field(default=None, kw_only=True)
    # "xla" or "cpu": how convolutions and max-pool gradients lower (jaxzoo.models.lowering).
    lowering: str = dataclasses.field(default="xla", kw_only=True)
    in_channels: int = dataclasses.field(default=3, kw_only=True)  # 1 for grayscale

    def features(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Pooled features before the classifier, (N, C)."""
        return self(x, train, output="features")

    def feature_maps(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
        """The feature maps at the strides the registry records (``feature_strides``)."""
        return self(x, train, output="feature_maps")


# The contract's fields (ZooModel's), and those of them that are options of the network itself:
# a config's ``model_kwargs`` may set them and converted weights record them.
CONTRACT_FIELDS = tuple(f.name for f in dataclasses.fields(ZooModel)
                        if f.name not in ("parent", "name"))  # flax's own
NETWORK_FIELDS = ("in_channels",)
# The rest say how a model is built and run rather than which network it is: create_model's own
# arguments (num_classes, dtype, lowering) and the trainer's mesh axis. A config's model_kwargs
# never sets them, and converted weights do not keep them among their model_kwargs.
BUILD_FIELDS = tuple(f for f in CONTRACT_FIELDS if f not in NETWORK_FIELDS)


def check_input(x: jax.Array, model_name: str, min_size: int, in_channels: int = 3,
                output: str = "logits") -> None:
    """Raise a readable error for inputs the network cannot take (instead of an XLA shape dump)."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    shape = tuple(x.shape)
    if len(shape) != 4 or shape[-1] != in_channels:
        hint = ""
        if len(shape) == 4 and shape[1] == in_channels:
            hint = " It looks like NCHW (PyTorch's layout): transpose it with x.transpose(0, 2, 3, 1)."
        elif len(shape) == 3:
            hint = " Add a batch dimension: x[None]."
        elif len(shape) == 4:
            hint = (f" For {shape[-1]}-channel images create the model with "
                    f"in_channels={shape[-1]}.")
        what = "RGB images" if in_channels == 3 else f"{in_channels}-channel images"
        raise ValueError(
            f"{model_name} expects a batch of {what} in NHWC layout, shape (batch, height, "
            f"width, {in_channels}); got shape {shape}.{hint}")
    height, width = shape[1], shape[2]
    if min(height, width) < min_size:
        raise ValueError(
            f"{model_name} needs inputs of at least {min_size}x{min_size} pixels; got "
            f"{height}x{width}. Resize the images up (or use a model made for small inputs, such "
            f"as resnet18_cifar or inception10).")


relu6 = jax.nn.relu6
# torch.nn.Hardsigmoid / Hardswish: relu6(x + 3) / 6 and x * relu6(x + 3) / 6
# (not Keras 2's 0.2 * x + 0.5).
hard_sigmoid = jax.nn.hard_sigmoid
hard_swish = jax.nn.hard_swish

