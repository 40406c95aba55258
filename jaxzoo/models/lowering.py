"""How convolutions and max-pool gradients are lowered: XLA's own ops, or formulations that
XLA's CPU backend runs faster. Every model takes the choice as its ``lowering`` field
("xla" or "cpu"), set once at the top and handed to its layers; the code that builds a step for
some devices picks it with ``for_devices`` (the trainer, the predictor, the benchmark). Being a
field of the model, the choice is part of what ``jax.jit`` traces: a function can never run with
a lowering other than the one its model was built with.

XLA's CPU backend runs grouped and depthwise convolutions (``feature_group_count > 1``) far slower
than PyTorch does: a 32-group 3x3 conv's forward+backward is hundreds of times slower, a depthwise
3x3 about ten times. The same arithmetic written as one small product per kernel tap runs well:

- depthwise (one input channel per group): for each of the kh*kw taps, a shifted (and strided) view
  of the padded input times that tap's per-channel weights, summed. Elementwise only, so XLA fuses
  the whole thing into a few loops. Its gradient (a ``custom_vjp``) keeps only the input, not the
  kh*kw views, for the backward pass.
- grouped (several input channels per group): for each tap, an einsum of the shifted view, split
  into (groups, channels per group), with that tap's (channels in, groups, channels out) weights:
  a batched matmul over groups. XLA:CPU's native grouped forward is faster than this one, only its
  backward is slow, so grouped convs keep the native forward and take the gradient of the einsums
  (a ``custom_vjp``).
- dense: 1x1 convs, and kxk convs on maps of at most 8x8, are one matmul (im2col: the kh*kw
  shifted views concatenated along channels), unless those patches would pass 32 MiB (large
  batches), where XLA's native conv is as fast and the patches cost memory. On larger maps XLA's
  native forward is faster, its backward is not (the kernel gradient is a convolution whose
  window is the whole feature map): those convs keep the native forward and take the gradient
  of the im2col matmul.
- max-pool: torch's backward written as shifted compares instead of the select-and-scatter JAX
  derives for ``reduce_window``.

All keep the HWIO kernel layout and ``feature_group_count`` semantics (stride, explicit or string
padding, kernel dilation, input dilation), so parameters, checkpoints and torchvision conversion are
unchanged. GPUs and TPUs get "xla" (cuDNN and XLA's TPU convs). Measurements: benchmarks/README.md.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

LOWERINGS = ("xla", "cpu")
# Dense kxk convs on feature maps of at most this many pixels (8x8) run as im2col + one matmul:
# XLA:CPU's native conv runs at a fraction of its usual rate on such small maps.
_IM2COL_MAX_PIXELS = 64
# ... unless the patches would be this large: at batch sizes that make them so, XLA's native conv
# runs as fast on these maps (resnet18_cifar at batch 128, benchmarks/README.md), and the patches
# and their gradient were a third of the train step's buffers.
_IM2COL_MAX_PATCH_BYTES = 32 * 2**20
# A depthwise kernel gradient sums over the padded map when it is at most this much larger than
# the output (below).
_PAD_TRICK_MAX_AREA = 1.3


def for_devices(devices: Iterable[jax.Device]) -> str:
    """The lowering for a computation on ``devices``: "cpu" when they are all CPUs, else "xla"."""
    platforms = {d.platform for d in devices}
    if not platforms:
        raise ValueError("for_devices needs at least one device")
    return "cpu" if platforms == {"cpu"} else "xla"


def check(lowering: str) -> str:
    if lowering not in LOWERINGS:
        raise ValueError(f"lowering must be one of {LOWERINGS}, got {lowering!r}")
    return lowering


def conv_function(lowering: str):
    """What ``nn.Conv`` should call for ``conv_general_dilated`` under ``lowering``."""
    return conv_general_dilated if check(lowering) == "cpu" else lax.conv_general_dilated


def _is_nhwc_hwio(lhs, rhs, dimension_numbers) -> bool:
    if lhs.ndim != 4 or rhs.ndim != 4:
        return False
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    nhwc_hwio = lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
    return tuple(dn) == tuple(nhwc_hwio)


def formulation_for(lhs_shape, rhs_shape, feature_group_count: int,
                    batch_group_count: int = 1) -> str:
    """Which CPU formulation a conv of these (NHWC, HWIO) shapes gets: 'native', 'im2col',
    'im2col_grad' (native forward, im2col gradient), 'depthwise' or 'grouped'."""
    if batch_group_count != 1:
        return "native"
    if feature_group_count == 1:
        kh, kw = rhs_shape[:2]
        if kh * kw == 1:
            return "im2col"
        if lhs_shape[1] * lhs_shape[2] <= _IM2COL_MAX_PIXELS:
            # Sized at the input's resolution (a strided conv's are a quarter of this), in float32.
            patch_bytes = lhs_shape[0] * lhs_shape[1] * lhs_shape[2] * kh * kw * lhs_shape[3] * 4
            if jax.export.is_symbolic_dim(lhs_shape[0]):
                # A symbolic batch (jax.export, batch-polymorphic): the patches may be of any
                # size, so the conv that needs none.
                return "native"
            return "im2col" if patch_bytes <= _IM2COL_MAX_PATCH_BYTES else "native"
        # On larger maps XLA's forward is the faster one, its backward the slower one.
        return "im2col_grad"
    if rhs_shape[2] == 1:
        return "depthwise"
    return "grouped"


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int], padding,
                         lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers=None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision=None,
                         preferred_element_type=None):
    """``lax.conv_general_dilated`` with 2-D NHWC convs lowered for XLA:CPU (module docstring)."""
    native = lambda: lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type)
    if not _is_nhwc_hwio(lhs, rhs, dimension_numbers):
        return native()
    method = formulation_for(lhs.shape, rhs.shape, feature_group_count, batch_group_count)
    if method == "native":
        return native()
    if not isinstance(padding, str):
        padding = tuple(tuple(p) for p in padding)
    args = (tuple(window_strides), padding, tuple(lhs_dilation or (1, 1)),
            tuple(rhs_dilation or (1, 1)), feature_group_count, precision, preferred_element_type)
    if method == "depthwise":
        if rhs.shape[-1] == feature_group_count:  # channel multiplier 1, the zoo's case
            return _depthwise_conv(lhs, rhs, *args)
        return _shifted_conv(lhs, rhs, *args)
    if method == "im2col":
        return _im2col_conv(lhs, rhs, *args)
    if method == "im2col_grad":
        return _native_forward_im2col_backward(lhs, rhs, *args)
    return _native_forward_shifted_backward(lhs, rhs, *args)


def _native(lhs, rhs, strides, padding, lhs_dilation, rhs_dilation, groups, precision,
            preferred_element_type):
    return lax.conv_general_dilated(
        lhs, rhs, strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups,
        precision=precision, preferred_element_type=preferred_element_type)


def _padded_input(lhs, kernel_size, strides, padding, lhs_dilation, rhs_dilation):
    """The input padded (and dilated) as the conv sees it, with the output's height and width."""
    kh, kw = kernel_size
    if isinstance(padding, str):
        dilated_in = [(n - 1) * d + 1 for n, d in zip(lhs.shape[1:3], lhs_dilation)]
        dilated_k = [(k - 1) * d + 1 for k, d in zip((kh, kw), rhs_dilation)]
        padding = lax.padtype_to_pads(dilated_in, dilated_k, strides, padding)
    (pt, pb), (pl, pr) = padding
    # lax.pad does input dilation (interior padding) and negative padding, as the conv would.
    x = lax.pad(lhs, jnp.zeros((), lhs.dtype),
                [(0, 0, 0), (pt, pb, lhs_dilation[0] - 1), (pl, pr, lhs_dilation[1] - 1), (0, 0, 0)])
    (sh, sw), (dh, dw) = strides, rhs_dilation
    oh = (x.shape[1] - ((kh - 1) * dh + 1)) // sh + 1
    ow = (x.shape[2] - ((kw - 1) * dw + 1)) // sw + 1
    return x, oh, ow


def _taps(lhs, rhs, strides, padding, lhs_dilation, rhs_dilation):
    """Pad (and dilate) the input once; yield (i, j, view) for each kernel tap, where ``view`` is
    the (N, OH, OW, C) slice of the padded input that tap (i, j) multiplies."""
    kernel_size = rhs.shape[:2]
    x, oh, ow = _padded_input(lhs, kernel_size, strides, padding, lhs_dilation, rhs_dilation)
    return _views(x, oh, ow, kernel_size, strides, rhs_dilation)


def _views(x, oh, ow, kernel_size, strides, rhs_dilation):
    """``_taps`` of an input already padded by ``_padded_input``."""
    kh, kw = kernel_size
    (sh, sw), (dh, dw) = strides, rhs_dilation
    for i in range(kh):
        for j in range(kw):
            start = (0, i * dh, j * dw, 0)
            limit = (x.shape[0], i * dh + (oh - 1) * sh + 1, j * dw + (ow - 1) * sw + 1, x.shape[3])
            yield i, j, lax.slice(x, start, limit, (1, sh, sw, 1))


def _im2col_conv(lhs, rhs, strides, padding, lhs_dilation, rhs_dilation, groups, precision,
                 preferred_element_type):
    """A dense conv as one matmul: the kh*kw shifted views concatenated along channels (tap-major,
    as HWIO's kernel flattens) times the (kh*kw*C, O) kernel. A 1x1 conv is a plain matmul."""
    assert groups == 1, groups
    views = [view for _, _, view in _taps(lhs, rhs, strides, padding, lhs_dilation, rhs_dilation)]
    patches = views[0] if len(views) == 1 else jnp.concatenate(views, axis=-1)
    n, oh, ow, k = patches.shape
    # A 2-D (N*OH*OW, K) x (K, O) matmul, not an "nhwk,ko" einsum: the einsum's gradient made
    # XLA:CPU write the kernel gradient's (N, H, W, O) operand transposed, fused into BatchNorm's
    # backward loop, for every layer.
    out = jnp.dot(patches.reshape(n * oh * ow, k), rhs.reshape(k, rhs.shape[-1]),
                  precision=precision, preferred_element_type=preferred_element_type)
    out = out.reshape(n, oh, ow, -1)
    return out.astype(preferred_element_type or jnp.result_type(lhs.dtype, rhs.dtype))


def _shifted_conv(lhs, rhs, strides, padding, lhs_dilation, rhs_dilation, groups, precision,
                  preferred_element_type):
    _, _, cin_g, cout = rhs.shape
    cout_g = cout // groups
    out_dtype = preferred_element_type or jnp.result_type(lhs.dtype, rhs.dtype)
    out = None
    for i, j, view in _taps(lhs, rhs, strides, padding, lhs_dilation, rhs_dilation):
        n, oh, ow, _ = view.shape
        if cin_g == 1 and cout_g == 1:
            # Depthwise: out[..., c] += x[..., c] * w[c]. Kept 4-D on purpose: with a trailing
            # unit axis (the general case below) XLA:CPU runs the kernel gradient's per-channel
            # sums an order of magnitude slower.
            term = (view * rhs[i, j, 0]).astype(out_dtype)
        elif cin_g == 1:
            # Depthwise with channel multiplier cout_g: out[..., g, m] += x[..., g] * w[g, m].
            w = rhs[i, j, 0].reshape(groups, cout_g)
            term = (view[..., None] * w).reshape(n, oh, ow, cout).astype(out_dtype)
        else:
            # Grouped: a batched matmul over groups. HWIO's O axis is group-major (g * cout_g + o).
            w = rhs[i, j].reshape(cin_g, groups, cout_g)
            term = jnp.einsum("nhwgc,cgo->nhwgo", view.reshape(n, oh, ow, groups, cin_g), w,
                              precision=precision, preferred_element_type=preferred_element_type)
            term = term.reshape(n, oh, ow, cout).astype(out_dtype)
        out = term if out is None else out + term
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6, 7, 8))
def _depthwise_conv(lhs, rhs, *args):
    """A depthwise conv (channel multiplier 1): the shifted multiply-adds, with a gradient that
    keeps only the input for the backward pass and sums each tap's products there."""
    return _shifted_conv(lhs, rhs, *args)


def _depthwise_forward(lhs, rhs, *args):
    return _depthwise_conv(lhs, rhs, *args), (lhs, rhs)


def _depthwise_backward(strides, padding, lhs_dilation, rhs_dilation, groups, precision,
                        preferred_element_type, residuals, g):
    lhs, rhs = residuals
    args = (strides, padding, lhs_dilation, rhs_dilation, groups, precision,
            preferred_element_type)
    _, input_vjp = jax.vjp(lambda x: _shifted_conv(x, rhs, *args), lhs)
    (input_grad,) = input_vjp(g)
    g = g.astype(jnp.float32)
    kh, kw = rhs.shape[:2]
    x, oh, ow = _padded_input(lhs, (kh, kw), strides, padding, lhs_dilation, rhs_dilation)
    if strides == (1, 1) and x.shape[1] * x.shape[2] <= _PAD_TRICK_MAX_AREA * oh * ow:
        # Move the gradient onto the padded input's grid instead of slicing the input: XLA:CPU
        # fuses a pad into the sum but copies a slice first. Each tap then reads the whole
        # padded map, so this wins only where padding adds little (a 3x3 kernel on a large map,
        # not a 5x5 on an 8x8 one).
        x, sums = x.astype(jnp.float32), []
        for i in range(kh):
            for j in range(kw):
                top, left = i * rhs_dilation[0], j * rhs_dilation[1]
                placed = lax.pad(g, jnp.zeros((), g.dtype),
                                 [(0, 0, 0), (top, x.shape[1] - top - oh, 0),
                                  (left, x.shape[2] - left - ow, 0), (0, 0, 0)])
                sums.append(jnp.sum(x * placed, axis=(0, 1, 2)))
    else:
        sums = [jnp.sum(view.astype(jnp.float32) * g, axis=(0, 1, 2))
                for _, _, view in _views(x, oh, ow, (kh, kw), strides, rhs_dilation)]
    kernel_grad = jnp.stack(sums).reshape(rhs.shape).astype(rhs.dtype)
    return input_grad, kernel_grad


_depthwise_conv.defvjp(_depthwise_forward, _depthwise_backward)


def _native_forward(gradient_formulation):
    """A conv with XLA's native forward whose gradient is that of ``gradient_formulation``.

    XLA:CPU's native forward is the faster one for dense convs on large maps and for grouped
    convs; what is slow is its backward (30-60x for 32-group convs), which computes the kernel
    gradient as a convolution whose window is the whole feature map. The formulations here make
    it matmuls contracting over N*H*W. Being a ``custom_vjp``, it has no second derivative.
    """

    @functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6, 7, 8))
    def conv(lhs, rhs, *args):
        return _native(lhs, rhs, *args)

    def forward(lhs, rhs, *args):
        return conv(lhs, rhs, *args), (lhs, rhs)

    def backward(*args_and_residuals):
        *args, (lhs, rhs), g = args_and_residuals
        # Of the formulation's forward, jit keeps only what its transpose needs (im2col's patches).
        _, vjp = jax.vjp(lambda x, w: gradient_formulation(x, w, *args), lhs, rhs)
        return vjp(g)

    conv.defvjp(forward, backward)
    return conv


_native_forward_shifted_backward = _native_forward(_shifted_conv)  # grouped


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6, 7, 8))
def _native_forward_im2col_backward(lhs, rhs, *args):
    """A dense conv on a map over 8x8: XLA's native forward and input gradient (a transposed
    conv, which XLA:CPU runs well), and the kernel gradient as one matmul per kernel tap,
    contracting each tap's shifted view of the input with the output gradient over N*H*W. The
    views are made one tap at a time: the kh*kw-times-larger im2col patches never exist."""
    return _native(lhs, rhs, *args)


def _native_forward_im2col_backward_fwd(lhs, rhs, *args):
    return _native_forward_im2col_backward(lhs, rhs, *args), (lhs, rhs)


def _native_forward_im2col_backward_bwd(strides, padding, lhs_dilation, rhs_dilation, groups,
                                        precision, preferred_element_type, residuals, g):
    lhs, rhs = residuals
    args = (strides, padding, lhs_dilation, rhs_dilation, groups, precision,
            preferred_element_type)
    _, input_vjp = jax.vjp(lambda x: _native(x, rhs, *args), lhs)
    (input_grad,) = input_vjp(g)
    kh, kw = rhs.shape[:2]
    x, oh, ow = _padded_input(lhs, (kh, kw), strides, padding, lhs_dilation, rhs_dilation)
    (sh, sw), (dh, dw) = strides, rhs_dilation
    window = (x.shape[0], (oh - 1) * sh + 1, (ow - 1) * sw + 1, x.shape[3])
    contract_nhw = (((0, 1, 2), (0, 1, 2)), ((), ()))

    def tap_gradient(tap):
        # A loop, not kh*kw unrolled slices: XLA would make every tap's view at once.
        i, j = tap // kw, tap % kw
        view = lax.dynamic_slice(x, (0, i * dh, j * dw, 0), window)[:, ::sh, ::sw]
        return lax.dot_general(view, g, contract_nhw, precision=precision,
                               preferred_element_type=jnp.float32)

    taps = lax.map(tap_gradient, jnp.arange(kh * kw))
    kernel_grad = taps.reshape(rhs.shape).astype(rhs.dtype)
    return input_grad, kernel_grad


_native_forward_im2col_backward.defvjp(_native_forward_im2col_backward_fwd,
                                       _native_forward_im2col_backward_bwd)


# ---------------------------------------------------------------------------------------------
# Max-pool
# ---------------------------------------------------------------------------------------------

def max_pool(x: jax.Array, kernel_size: int, stride: int, pads, lowering: str) -> jax.Array:
    """A max-pool of NHWC ``x`` with explicit ``pads`` ((top, bottom), (left, right)) of -inf.
    Under "cpu" its gradient is ``_max_pool_backward``; under "xla" it is what JAX derives."""
    if check(lowering) == "cpu":
        return _max_pool(x, kernel_size, stride, pads)
    return nn.max_pool(x, (kernel_size, kernel_size), (stride, stride), padding=pads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, kernel_size, stride, pads):
    return nn.max_pool(x, (kernel_size, kernel_size), (stride, stride), padding=pads)


def _max_pool_forward(x, kernel_size, stride, pads):
    y = _max_pool(x, kernel_size, stride, pads)
    return y, (x, y)


def _max_pool_backward(kernel_size, stride, pads, residuals, g):
    """torch's max_pool2d backward: each window's gradient goes to the first position, in row-major
    order, that holds the window's max (the gradient JAX derives gives the same). Written as
    kernel_size**2 shifted compares and strided pads, which XLA:CPU fuses into a few loops, in
    place of select-and-scatter with an iota of the padded input's size."""
    x, y = residuals
    (pt, pb), (pl, pr) = pads
    padded = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-jnp.inf)
    n, oh, ow, c = y.shape
    ph, pw = padded.shape[1:3]
    taken = jnp.zeros(y.shape, bool)
    grad = jnp.zeros(padded.shape, g.dtype)
    for i in range(kernel_size):
        for j in range(kernel_size):
            limit = (n, i + (oh - 1) * stride + 1, j + (ow - 1) * stride + 1, c)
            view = lax.slice(padded, (0, i, j, 0), limit, (1, stride, stride, 1))
            first = (view == y) & ~taken
            taken = taken | first
            # Back to the padded input's positions i + stride * a, j + stride * b.
            grad = grad + lax.pad(jnp.where(first, g, 0), jnp.zeros((), g.dtype),
                                  ((0, 0, 0), (i, ph - limit[1], stride - 1),
                                   (j, pw - limit[2], stride - 1), (0, 0, 0)))
    return (grad[:, pt:ph - pb, pl:pw - pr, :],)


_max_pool.defvjp(_max_pool_forward, _max_pool_backward)
