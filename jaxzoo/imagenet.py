"""ImageNet's facts that the models, the input pipelines and prediction share."""
from __future__ import annotations

import functools
from importlib import resources

import numpy as np

# torchvision's transforms.Normalize for ImageNet-trained weights (RGB, after ToTensor's / 255).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@functools.lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names, in torchvision's order (shipped with jaxzoo)."""
    text = resources.files("jaxzoo").joinpath("imagenet_classes.txt").read_text("utf-8")
    return tuple(text.splitlines())


def normalize(images):
    """uint8 RGB images (any leading axes, channels last) -> float32 normalized with ImageNet's
    mean and std, as torchvision's ToTensor + Normalize (transposed). Works on numpy and jax
    arrays: the train and eval steps call it on the device for uint8 batches."""
    mean = np.asarray(MEAN, np.float32) * 255.0
    std = np.asarray(STD, np.float32) * 255.0
    return (images.astype(np.float32) - mean) / std
