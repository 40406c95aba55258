"""torchvision's automatic augmentation policies and random erasing, on uint8 numpy images.

    image = apply_op(image, "Rotate", 30.0, interpolation="bilinear")   # (H, W, 3) or (H, W, 1)
    policy = make_policy("ta_wide", interpolation="bilinear")          # or "imagenet", "ra", ...
    image = policy(image, np.random.default_rng(seed))

The ops are those of ``torchvision.transforms.autoaugment._apply_op`` on PIL images, the backend
of torchvision's reference scripts (``references/classification/presets.py`` augments PIL
images): each one makes the PIL call torchvision's ``_functional_pil`` makes, with the arguments
torchvision's ``functional`` computes, so the pixels are PIL's own. The policies
(``AutoAugment``, ``RandAugment``, ``TrivialAugmentWide``, ``AugMix``) draw their random numbers
from ``rng`` in the order torchvision draws them from torch's generator, one ``rng`` call for
each torch call: ``rng.integers(n)`` for ``torch.randint(n, (1,))``, ``rng.random(2)`` for
``torch.rand((2,))``, ``rng.dirichlet`` for ``torch._sample_dirichlet``. A numpy ``Generator``
is what the input pipeline passes (seeded per example, ``pipeline.Datasets``); the tests pass
an object answering those calls from torch's generator and get torchvision's choices.

The input pipeline runs these in ``tf.numpy_function``: PIL is the reference's backend, so the
pixels are the reference's, and an op on a 224-px image costs about as much as a fraction of the
JPEG decode and crop before it. Measured side by side in one process (2 shared cores, load
about 3, 512 JPEGs of 500x375, 224-px uint8 batches of 32, median of 3 epochs): 377 images/s
without a policy, 267 with ``ta_wide`` (0.71x), 232 with ``ta_wide`` and random erasing 0.1
(0.62x), 56 with ``augmix`` (0.15x: three chains of one to three ops, its shears and rotations
on the tensor backend in numpy, 5 ms each at 224 px against PIL's 1 ms, and a float mix).
"""
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from jaxzoo import imagenet

OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness",
       "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
       "Invert")
# PIL's resampling filter for each of the interpolations (imagenet.INTERPOLATIONS).
INTERPOLATIONS = {name: getattr(Image.Resampling, name.upper()) for name in imagenet.INTERPOLATIONS}
AUTO_AUGMENT_POLICIES = ("imagenet", "cifar10", "svhn")
POLICIES = ("",) + AUTO_AUGMENT_POLICIES + ("ra", "ta_wide", "augmix")  # the reference's names


def _to_pil(image: np.ndarray) -> Image.Image:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"expected a uint8 (H, W, 3) or (H, W, 1) image, got {image.dtype} "
                         f"{image.shape}")
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _from_pil(image: Image.Image, channels: int) -> np.ndarray:
    array = np.asarray(image)
    return array[..., None] if channels == 1 else array


def _fill(fill, channels: int):
    """The ``fillcolor`` torchvision's ``_parse_fill`` gives PIL: 0 by default, one int per band."""
    if fill is None:
        fill = 0
    if isinstance(fill, (int, float)):
        fill = [fill]
    fill = list(fill)
    if len(fill) == 1:
        fill = fill * channels
    if len(fill) != channels:
        raise ValueError(f"fill has {len(fill)} values; the image has {channels} channels")
    return int(fill[0]) if channels == 1 else tuple(int(v) for v in fill)


def _inverse_affine_matrix(center, angle: float, translate, shear) -> list[float]:
    """torchvision's ``functional._get_inverse_affine_matrix`` at scale 1: the output-to-input
    map PIL's ``Image.transform(AFFINE)`` takes. Angles and shears in degrees."""
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    matrix = [d, -b, 0.0, -c, a, 0.0]
    matrix[2] += matrix[0] * (-cx - tx) + matrix[1] * (-cy - ty)
    matrix[5] += matrix[3] * (-cx - tx) + matrix[4] * (-cy - ty)
    matrix[2] += cx
    matrix[5] += cy
    return matrix


def _affine(image: Image.Image, *, translate=(0, 0), shear=(0.0, 0.0), center=None,
            resample, fill) -> Image.Image:
    """torchvision's ``F.affine`` on a PIL image (angle 0, scale 1): about the image's centre
    (width / 2, height / 2, without torchvision's commented-out 0.5) unless ``center`` is given."""
    width, height = image.size
    if center is None:
        center = [width * 0.5, height * 0.5]
    matrix = _inverse_affine_matrix(center, 0.0, translate, shear)
    return image.transform(image.size, Image.AFFINE, matrix, resample, fillcolor=fill)


def _tensor_geometric(image: np.ndarray, op: str, magnitude: float, interpolation: str,
                      fill) -> np.ndarray:
    """A geometric op as torchvision's tensor backend computes it (``F_t.affine``/``rotate``):
    its inverse matrix about the image's centre in float32, ``_gen_affine_grid``'s sampling grid
    (pixel centres, align_corners=False), ``grid_sample`` with zero padding (nearest: round
    half to even; bilinear: the four neighbours' weights), a fill blended by the sampled mask,
    then rounded to uint8 (``_cast_squeeze_out``). AugMix runs its ops on this backend."""
    height, width, channels = image.shape
    if op == "Rotate":  # F.rotate on tensors: -angle, about the centre
        matrix = _inverse_affine_matrix([0.0, 0.0], -magnitude, [0.0, 0.0], [0.0, 0.0])
    elif op in ("ShearX", "ShearY"):  # center=[0, 0] given: the top-left corner
        shear = math.degrees(math.atan(magnitude))
        matrix = _inverse_affine_matrix([-width * 0.5, -height * 0.5], 0.0, [0.0, 0.0],
                                        [shear, 0.0] if op == "ShearX" else [0.0, shear])
    else:
        shift = float(int(magnitude))
        matrix = _inverse_affine_matrix([0.0, 0.0], 0.0, [shift, 0.0] if op == "TranslateX"
                                        else [0.0, shift], [0.0, 0.0])
    theta = np.asarray(matrix, np.float32).reshape(2, 3)
    base = np.empty((height, width, 3), np.float32)
    base[..., 0] = linspace(-width * 0.5 + 0.5, width * 0.5 + 0.5 - 1, width)[None, :]
    base[..., 1] = linspace(-height * 0.5 + 0.5, height * 0.5 + 0.5 - 1, height)[:, None]
    base[..., 2] = 1.0
    grid = base @ (theta.T / np.asarray([0.5 * width, 0.5 * height], np.float32))
    one, two = np.float32(1), np.float32(2)
    x = ((grid[..., 0] + one) * np.float32(width) - one) / two  # grid_sample's unnormalize
    y = ((grid[..., 1] + one) * np.float32(height) - one) / two
    # The image (and, to blend a fill, a mask of ones) inside a border of zeros: a sample
    # outside the image reads the border (grid_sample's zero padding).
    layers = [image.astype(np.float32)]
    if fill is not None:
        layers.append(np.ones((height, width, 1), np.float32))
    source = np.pad(np.concatenate(layers, axis=-1), ((1, 1), (1, 1), (0, 0)))
    source = source.reshape((height + 2) * (width + 2), -1)

    def at(rows, cols):
        rows, cols = np.clip(rows, -1, height) + 1, np.clip(cols, -1, width) + 1
        return np.take(source, rows * (width + 2) + cols, axis=0)

    if interpolation == "nearest":
        out = at(np.rint(y).astype(np.int64), np.rint(x).astype(np.int64))
    elif interpolation == "bilinear":
        left, top = np.floor(x), np.floor(y)
        wx, wy = (x - left)[..., None], (y - top)[..., None]
        left, top = left.astype(np.int64), top.astype(np.int64)
        out = (at(top, left) * (1 - wy) * (1 - wx) + at(top, left + 1) * (1 - wy) * wx
               + at(top + 1, left) * wy * (1 - wx) + at(top + 1, left + 1) * wy * wx)
    else:
        raise ValueError(f"torchvision's tensor backend resamples with nearest or bilinear, "
                         f"not {interpolation!r}")
    out, mask = out[..., :channels], out[..., channels:]  # mask: empty without a fill
    if fill is not None:
        fill_value = np.broadcast_to(np.asarray(fill, np.float32), (channels,))
        out = (np.where(mask < 0.5, fill_value, out) if interpolation == "nearest"
               else out * mask + (1 - mask) * fill_value)
    return np.round(out).astype(np.uint8)


def apply_op(image: np.ndarray, op: str, magnitude: float, *, interpolation: str = "nearest",
             fill: float | Sequence[float] | None = None, backend: str = "pil") -> np.ndarray:
    """One op of torchvision's ``_apply_op`` on a uint8 (H, W, 3) or (H, W, 1) image, with the
    op names and magnitudes it takes: shears are the shear factor (torchvision shears by
    ``degrees(atan(magnitude))``, i.e. by that factor, about the top-left corner), translations
    in pixels (truncated to an int), rotations in degrees counter-clockwise, the four enhance
    ops ``1 + magnitude`` as their PIL factor, Posterize the bits kept, Solarize the threshold.
    ``interpolation`` resamples the geometric ops; ``fill`` is the value of the pixels they
    uncover (0 by default). ``backend="tensor"``: the geometric ops as torchvision computes
    them on tensors (what its AugMix runs), the others as on PIL images (within a grey level)."""
    imagenet.check_interpolation(interpolation)
    if backend not in ("pil", "tensor"):
        raise ValueError(f'backend must be "pil" or "tensor", got {backend!r}')
    channels = image.shape[-1] if image.ndim == 3 else 0
    if backend == "tensor" and op in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"):
        _to_pil(image)  # the same checks of the image
        return _tensor_geometric(image, op, magnitude, interpolation, fill)
    pil = _to_pil(image)
    resample = INTERPOLATIONS[interpolation]
    fillcolor = _fill(fill, channels)
    if op == "ShearX":
        pil = _affine(pil, shear=(math.degrees(math.atan(magnitude)), 0.0), center=[0, 0],
                      resample=resample, fill=fillcolor)
    elif op == "ShearY":
        pil = _affine(pil, shear=(0.0, math.degrees(math.atan(magnitude))), center=[0, 0],
                      resample=resample, fill=fillcolor)
    elif op == "TranslateX":
        pil = _affine(pil, translate=(int(magnitude), 0), resample=resample, fill=fillcolor)
    elif op == "TranslateY":
        pil = _affine(pil, translate=(0, int(magnitude)), resample=resample, fill=fillcolor)
    elif op == "Rotate":
        pil = pil.rotate(magnitude, resample, expand=False, center=None, fillcolor=fillcolor)
    elif op == "Brightness":
        pil = ImageEnhance.Brightness(pil).enhance(1.0 + magnitude)
    elif op == "Color":  # torchvision's adjust_saturation
        pil = ImageEnhance.Color(pil).enhance(1.0 + magnitude)
    elif op == "Contrast":
        pil = ImageEnhance.Contrast(pil).enhance(1.0 + magnitude)
    elif op == "Sharpness":
        pil = ImageEnhance.Sharpness(pil).enhance(1.0 + magnitude)
    elif op == "Posterize":
        pil = ImageOps.posterize(pil, int(magnitude))
    elif op == "Solarize":
        pil = ImageOps.solarize(pil, magnitude)
    elif op == "AutoContrast":
        pil = ImageOps.autocontrast(pil)
    elif op == "Equalize":
        pil = ImageOps.equalize(pil)
    elif op == "Invert":
        pil = ImageOps.invert(pil)
    elif op != "Identity":
        raise ValueError(f"unknown augmentation op {op!r}; the ops are {', '.join(OPS)}")
    return _from_pil(pil, channels)


# --------------------------------------------------------------------------- magnitudes


def linspace(start: float, end: float, steps: int) -> np.ndarray:
    """``torch.linspace(start, end, steps)`` in float32, bit for bit: torch fills the first half
    as ``start + step * i`` and the second as ``end - step * (steps - 1 - i)``, each one fused
    multiply-add (one rounding). The exact values matter: Solarize's threshold 238.0 must not be
    237.99998, nor TranslateX's 16.0 be 15.999999 before ``int``."""
    start32, end32 = np.float32(start), np.float32(end)
    step = (end32 - start32) / np.float32(steps - 1)
    i = np.arange(steps)
    # float64 holds a float32 product exactly: one rounding to float32, as the fused op.
    low = (np.float64(start32) + np.float64(step) * i).astype(np.float32)
    high = (np.float64(end32) - np.float64(step) * (steps - 1 - i)).astype(np.float32)
    return np.where(i < steps // 2, low, high)


def _posterize_bits(top: int, steps: int, levels: int) -> np.ndarray:
    """torchvision's ``top - (torch.arange(steps) / ((steps - 1) / levels)).round().int()``
    (float32 division, round half to even)."""
    return top - np.round(np.arange(steps, dtype=np.float32)
                          / np.float32((steps - 1) / levels)).astype(np.int64)


def augmentation_space(policy: str, num_bins: int, height: int = 0,
                       width: int = 0) -> dict[str, tuple[np.ndarray | None, bool]]:
    """``{op: (magnitudes, signed)}`` of torchvision's ``_augmentation_space`` of a policy, in its
    order (the op drawn is an index into it): ``"aa"`` (AutoAugment), ``"ra"`` (RandAugment: no
    Invert, Identity first), ``"ta_wide"``, ``"augmix"`` (all ops). ``magnitudes`` is None for
    the ops without one (torchvision's 0-d tensor: magnitude 0.0). The translations of "aa",
    "ra" and "augmix" scale with the image's ``height`` and ``width``."""
    if policy in ("aa", "ra"):
        space = {
            "ShearX": (linspace(0.0, 0.3, num_bins), True),
            "ShearY": (linspace(0.0, 0.3, num_bins), True),
            "TranslateX": (linspace(0.0, 150.0 / 331.0 * width, num_bins), True),
            "TranslateY": (linspace(0.0, 150.0 / 331.0 * height, num_bins), True),
            "Rotate": (linspace(0.0, 30.0, num_bins), True),
            "Brightness": (linspace(0.0, 0.9, num_bins), True),
            "Color": (linspace(0.0, 0.9, num_bins), True),
            "Contrast": (linspace(0.0, 0.9, num_bins), True),
            "Sharpness": (linspace(0.0, 0.9, num_bins), True),
            "Posterize": (_posterize_bits(8, num_bins, 4), False),
            "Solarize": (linspace(255.0, 0.0, num_bins), False),
            "AutoContrast": (None, False),
            "Equalize": (None, False),
        }
        if policy == "aa":
            return {**space, "Invert": (None, False)}
        return {"Identity": (None, False), **space}
    if policy == "ta_wide":
        return {
            "Identity": (None, False),
            "ShearX": (linspace(0.0, 0.99, num_bins), True),
            "ShearY": (linspace(0.0, 0.99, num_bins), True),
            "TranslateX": (linspace(0.0, 32.0, num_bins), True),
            "TranslateY": (linspace(0.0, 32.0, num_bins), True),
            "Rotate": (linspace(0.0, 135.0, num_bins), True),
            "Brightness": (linspace(0.0, 0.99, num_bins), True),
            "Color": (linspace(0.0, 0.99, num_bins), True),
            "Contrast": (linspace(0.0, 0.99, num_bins), True),
            "Sharpness": (linspace(0.0, 0.99, num_bins), True),
            "Posterize": (_posterize_bits(8, num_bins, 6), False),
            "Solarize": (linspace(255.0, 0.0, num_bins), False),
            "AutoContrast": (None, False),
            "Equalize": (None, False),
        }
    if policy == "augmix":
        return {
            "ShearX": (linspace(0.0, 0.3, num_bins), True),
            "ShearY": (linspace(0.0, 0.3, num_bins), True),
            "TranslateX": (linspace(0.0, width / 3.0, num_bins), True),
            "TranslateY": (linspace(0.0, height / 3.0, num_bins), True),
            "Rotate": (linspace(0.0, 30.0, num_bins), True),
            "Posterize": (_posterize_bits(4, num_bins, 4), False),
            "Solarize": (linspace(255.0, 0.0, num_bins), False),
            "AutoContrast": (None, False),
            "Equalize": (None, False),
            "Brightness": (linspace(0.0, 0.9, num_bins), True),
            "Color": (linspace(0.0, 0.9, num_bins), True),
            "Contrast": (linspace(0.0, 0.9, num_bins), True),
            "Sharpness": (linspace(0.0, 0.9, num_bins), True),
        }
    raise ValueError(f"unknown augmentation space {policy!r}")


def _signed(magnitude: float, signed: bool, rng) -> float:
    """torchvision's ``if signed and torch.randint(2, (1,)): magnitude *= -1.0``: the draw is
    made only for signed ops."""
    if signed and rng.integers(2):
        return -magnitude
    return magnitude


# --------------------------------------------------------------------------- policies

_AUTO_AUGMENT = {  # torchvision's AutoAugment._get_policies: ((op, probability, magnitude bin), x2)
    "imagenet": [
        (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
        (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
        (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
        (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
        (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
        (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
        (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
        (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
        (("Color", 0.4, 0), ("Equalize", 0.6, None)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    ],
    "cifar10": [
        (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
        (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
        (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
        (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
        (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
        (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
        (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
        (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
        (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
        (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
        (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
        (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
        (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
        (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
        (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
        (("Color", 0.9, 9), ("Equalize", 0.6, None)),
        (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
        (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
        (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
        (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
        (("Equalize", 0.8, None), ("Invert", 0.1, None)),
        (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
    ],
    "svhn": [
        (("ShearX", 0.9, 4), ("Invert", 0.2, None)),
        (("ShearY", 0.9, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.6, None), ("Solarize", 0.6, 6)),
        (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
        (("ShearX", 0.9, 4), ("AutoContrast", 0.8, None)),
        (("ShearY", 0.9, 8), ("Invert", 0.4, None)),
        (("ShearY", 0.9, 5), ("Solarize", 0.2, 6)),
        (("Invert", 0.9, None), ("AutoContrast", 0.8, None)),
        (("Equalize", 0.6, None), ("Rotate", 0.9, 3)),
        (("ShearX", 0.9, 4), ("Solarize", 0.3, 3)),
        (("ShearY", 0.8, 8), ("Invert", 0.7, None)),
        (("Equalize", 0.9, None), ("TranslateY", 0.6, 6)),
        (("Invert", 0.9, None), ("Equalize", 0.6, None)),
        (("Contrast", 0.3, 3), ("Rotate", 0.8, 4)),
        (("Invert", 0.8, None), ("TranslateY", 0.0, 2)),
        (("ShearY", 0.7, 6), ("Solarize", 0.4, 8)),
        (("Invert", 0.6, None), ("Rotate", 0.8, 4)),
        (("ShearY", 0.3, 7), ("TranslateX", 0.9, 3)),
        (("ShearX", 0.1, 6), ("Invert", 0.6, None)),
        (("Solarize", 0.7, 2), ("TranslateY", 0.6, 7)),
        (("ShearY", 0.8, 4), ("Invert", 0.8, None)),
        (("ShearX", 0.7, 9), ("TranslateY", 0.8, 3)),
        (("ShearY", 0.8, 5), ("AutoContrast", 0.7, None)),
        (("ShearX", 0.7, 2), ("Invert", 0.1, None)),
    ],
}


class AutoAugment:
    """torchvision's ``AutoAugment(policy)``: one of the policy's 25 sub-policies, each of its
    two ops applied with its probability, at its magnitude bin of 10, with a random sign."""

    def __init__(self, policy: str = "imagenet", interpolation: str = "nearest", fill=None):
        if policy not in _AUTO_AUGMENT:
            raise ValueError(f"unknown AutoAugment policy {policy!r}; the policies are "
                             f"{', '.join(_AUTO_AUGMENT)}")
        self.policy, self.interpolation, self.fill = policy, interpolation, fill
        self.policies = _AUTO_AUGMENT[policy]

    def __call__(self, image: np.ndarray, rng) -> np.ndarray:
        height, width = image.shape[:2]
        # AutoAugment.get_params: randint(25, (1,)), rand((2,)), randint(2, (2,)).
        transform_id = int(rng.integers(len(self.policies)))
        probs = rng.random(2)
        signs = rng.integers(2, size=2)
        space = augmentation_space("aa", 10, height, width)
        for i, (op, p, magnitude_id) in enumerate(self.policies[transform_id]):
            if probs[i] <= p:
                magnitudes, signed = space[op]
                magnitude = float(magnitudes[magnitude_id]) if magnitude_id is not None else 0.0
                if signed and signs[i] == 0:
                    magnitude = -magnitude
                image = apply_op(image, op, magnitude, interpolation=self.interpolation,
                                 fill=self.fill)
        return image


class RandAugment:
    """torchvision's ``RandAugment``: ``num_ops`` ops drawn uniformly (Identity included), each
    at bin ``magnitude`` of ``num_magnitude_bins``, with a random sign."""

    def __init__(self, num_ops: int = 2, magnitude: int = 9, num_magnitude_bins: int = 31,
                 interpolation: str = "nearest", fill=None):
        if not 0 <= magnitude < num_magnitude_bins:
            raise ValueError(f"RandAugment's magnitude={magnitude} must be a bin in "
                             f"[0, {num_magnitude_bins - 1}]")
        self.num_ops, self.magnitude = num_ops, magnitude
        self.num_magnitude_bins = num_magnitude_bins
        self.interpolation, self.fill = interpolation, fill

    def __call__(self, image: np.ndarray, rng) -> np.ndarray:
        space = augmentation_space("ra", self.num_magnitude_bins, *image.shape[:2])
        for _ in range(self.num_ops):
            op = list(space)[int(rng.integers(len(space)))]
            magnitudes, signed = space[op]
            magnitude = float(magnitudes[self.magnitude]) if magnitudes is not None else 0.0
            image = apply_op(image, op, _signed(magnitude, signed, rng),
                             interpolation=self.interpolation, fill=self.fill)
        return image


class TrivialAugmentWide:
    """torchvision's ``TrivialAugmentWide``: one op drawn uniformly, at a uniformly drawn bin of
    ``num_magnitude_bins`` of its wide ranges, with a random sign."""

    def __init__(self, num_magnitude_bins: int = 31, interpolation: str = "nearest", fill=None):
        self.num_magnitude_bins, self.interpolation, self.fill = (num_magnitude_bins,
                                                                  interpolation, fill)

    def __call__(self, image: np.ndarray, rng) -> np.ndarray:
        space = augmentation_space("ta_wide", self.num_magnitude_bins)
        op = list(space)[int(rng.integers(len(space)))]
        magnitudes, signed = space[op]
        magnitude = (float(magnitudes[int(rng.integers(len(magnitudes)))])
                     if magnitudes is not None else 0.0)
        return apply_op(image, op, _signed(magnitude, signed, rng),
                        interpolation=self.interpolation, fill=self.fill)


class AugMix:
    """torchvision's ``AugMix``: ``mixture_width`` chains of 1-3 ops (or ``chain_depth``) at bins
    below ``severity`` of 10, mixed with Dirichlet weights, then with the original image by a
    Beta(alpha, alpha) weight.

    torchvision's AugMix turns a PIL image into a tensor: its ops run on the tensor backend, its
    mix in float32, truncated to uint8 (``.to(torch.uint8)``). So do these: the geometric ops
    as the tensor backend samples (``apply_op(backend="tensor")``; PIL's bilinear shears and
    rotations differ from it by a grey level on half the pixels), the colour ops on PIL (the
    tensor backend truncates where PIL rounds: a grey level at most)."""

    PARAMETER_MAX = 10

    def __init__(self, severity: int = 3, mixture_width: int = 3, chain_depth: int = -1,
                 alpha: float = 1.0, all_ops: bool = True, interpolation: str = "bilinear",
                 fill=None):
        if not 1 <= severity <= self.PARAMETER_MAX:
            raise ValueError(f"AugMix's severity must be in [1, {self.PARAMETER_MAX}], got "
                             f"{severity}")
        self.severity, self.mixture_width, self.chain_depth = severity, mixture_width, chain_depth
        self.alpha, self.all_ops = alpha, all_ops
        self.interpolation, self.fill = interpolation, fill

    def __call__(self, image: np.ndarray, rng) -> np.ndarray:
        space = augmentation_space("augmix", self.PARAMETER_MAX, *image.shape[:2])
        if not self.all_ops:
            space = dict(list(space.items())[:9])  # without the four enhance ops
        # m: (original, augmented) weights; the chains' weights are a Dirichlet times m[1].
        m = np.asarray(rng.dirichlet([self.alpha, self.alpha]), np.float32)
        weights = (np.asarray(rng.dirichlet([self.alpha] * self.mixture_width), np.float32)
                   * m[1])
        mix = m[0] * image.astype(np.float32)
        for i in range(self.mixture_width):
            aug = image
            depth = self.chain_depth if self.chain_depth > 0 else int(rng.integers(1, 4))
            for _ in range(depth):
                op = list(space)[int(rng.integers(len(space)))]
                magnitudes, signed = space[op]
                magnitude = (float(magnitudes[int(rng.integers(self.severity))])
                             if magnitudes is not None else 0.0)
                aug = apply_op(aug, op, _signed(magnitude, signed, rng),
                               interpolation=self.interpolation, fill=self.fill,
                               backend="tensor")
            mix += weights[i] * aug.astype(np.float32)
        return mix.astype(np.uint8)  # truncation, as torch's float -> uint8 conversion


def make_policy(name: str, *, ra_magnitude: int = 9, augmix_severity: int = 3,
                interpolation: str = "bilinear"):
    """The policy the reference's ``--auto-augment NAME`` adds after the flip (presets.py):
    ``imagenet``, ``cifar10``, ``svhn`` (AutoAugment), ``ra`` (RandAugment with
    ``ra_magnitude``), ``ta_wide``, ``augmix`` (``augmix_severity``); None for ``""``."""
    if name not in POLICIES:
        raise ValueError(f"unknown auto_augment {name!r}; choose one of "
                         f"{', '.join(repr(p) for p in POLICIES)}")
    if name in AUTO_AUGMENT_POLICIES:
        return AutoAugment(name, interpolation=interpolation)
    if name == "ra":
        return RandAugment(magnitude=ra_magnitude, interpolation=interpolation)
    if name == "ta_wide":
        return TrivialAugmentWide(interpolation=interpolation)
    if name == "augmix":
        return AugMix(severity=augmix_severity, interpolation=interpolation)
    return None


# --------------------------------------------------------------------------- random erasing


class RandomErasing:
    """torchvision's ``RandomErasing`` box: with probability ``p``, a rectangle of ``scale`` of
    the image's area and aspect ``ratio`` (log-uniform), 10 tries to fit it, placed uniformly.
    ``box`` returns ``(top, left, height, width)`` or None; the pipeline erases it
    (``pipeline.erase``), after normalization as the reference does."""

    def __init__(self, p: float = 0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3)):
        if not 0 <= p <= 1:
            raise ValueError(f"random erasing's probability must be in [0, 1], got {p}")
        self.p, self.scale, self.ratio = p, tuple(scale), tuple(ratio)
        # torch.log(torch.tensor(ratio)): float32
        self.log_ratio = [float(v) for v in np.log(np.asarray(ratio, np.float32))]

    def box(self, height: int, width: int, rng) -> tuple[int, int, int, int] | None:
        if not rng.random() < self.p:
            return None
        area = height * width
        for _ in range(10):
            erase_area = area * float(rng.uniform(self.scale[0], self.scale[1]))
            aspect_ratio = float(np.exp(np.float32(rng.uniform(*self.log_ratio))))
            h = round(math.sqrt(erase_area * aspect_ratio))  # Python's round: half to even
            w = round(math.sqrt(erase_area / aspect_ratio))
            if not (h < height and w < width):
                continue
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
        return None  # torchvision then "erases" the image with itself: unchanged
