"""ImageNet's facts that the models, the input pipelines and prediction share."""
from __future__ import annotations

import functools
from importlib import resources

import numpy as np

# torchvision's transforms.Normalize for ImageNet-trained weights (RGB, after ToTensor's / 255).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# One-channel (grayscale) input: the average of the three. A model whose RGB input conv was summed
# into one channel (``convert.adapt_input_conv``, as timm's ``adapt_input_conv``) then sees a gray
# image nearly as the RGB model saw it.
GRAY_MEAN = (sum(MEAN) / 3,)
GRAY_STD = (sum(STD) / 3,)

# torchvision's reference evaluation: Resize(int(crop / 0.875)) then CenterCrop(crop) (224 -> 256),
# unless the weights publish their own resize size (``eval_resize_size``).
EVAL_CROP_FRACTION = 0.875
# The interpolations the evaluation transforms of torchvision's weights use (their Resize).
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def eval_resize_size(crop_size: int, resize_size: int | None = None) -> int:
    """The shorter side evaluation resizes to before its center crop of ``crop_size``:
    ``resize_size`` when given, else ``int(crop_size / EVAL_CROP_FRACTION)`` as torchvision's
    reference scripts."""
    return int(resize_size or crop_size / EVAL_CROP_FRACTION)


def check_interpolation(interpolation: str) -> str:
    """``interpolation`` when it is one of ``INTERPOLATIONS``; a one-line error otherwise."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got "
                         f"{interpolation!r}")
    return interpolation


def mean_std(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalization of ``channels``-channel images: ImageNet's for RGB, ``GRAY_*`` for one."""
    if channels == 3:
        return MEAN, STD
    if channels == 1:
        return GRAY_MEAN, GRAY_STD
    raise ValueError(f"images have 1 (grayscale) or 3 (RGB) channels, not {channels}; a model "
                     f"with in_channels={channels} needs inputs prepared by your own pipeline")


@functools.lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names, in torchvision's order (shipped with jaxzoo)."""
    text = resources.files("jaxzoo").joinpath("imagenet_classes.txt").read_text("utf-8")
    return tuple(text.splitlines())


def normalize(images):
    """uint8 RGB or grayscale images (any leading axes, channels last) -> float32 normalized
    with ``mean_std`` of their channel count, as torchvision's ToTensor + Normalize (transposed).
    Works on numpy and jax arrays: the train and eval steps call it on the device for uint8
    batches."""
    mean, std = mean_std(images.shape[-1])
    mean = np.asarray(mean, np.float32) * np.float32(255.0)
    std = np.asarray(std, np.float32) * np.float32(255.0)
    return (images.astype(np.float32) - mean) / std
