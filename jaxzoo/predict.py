"""Predict with a trained or converted model.

    predictor = Predictor.from_workdir("runs/resnet34")            # best checkpoint of a run
    predictor = Predictor.from_weights("resnet50", "resnet50.pth")  # torchvision or converted
    predictor = Predictor.from_pretrained("resnet50", weights="DEFAULT")   # torchvision's, by name
    predictor.predict("tulip.jpg")                 # Prediction: tulips 0.9998 (roses 0.0001, ...)
    predictor.predict(["a.jpg", pil_image, uint8_array])

Images are prepared exactly as evaluation prepares them (``jaxzoo.data.pipeline``: Resize to
size / 0.875, CenterCrop, ImageNet normalization), after PIL decodes them, applies their EXIF
orientation and converts them to RGB (grayscale, RGBA, CMYK, 16-bit), then to gray for a model
with ``in_channels=1``. torchvision's pretrained weights use their own evaluation transform
instead (e.g. resnet50 IMAGENET1K_V2: Resize(232) bilinear, CenterCrop(224)).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import warnings
from typing import Iterable, Iterator, Sequence

import jax
import numpy as np

from jaxzoo import convert, imagenet, runtime, weights
from jaxzoo.models import create_model, get_spec
from jaxzoo.train.workdir import load_run
from jaxzoo.walk import walk


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names, in torchvision's order (``jaxzoo.imagenet.class_names``)."""
    return list(imagenet.class_names())


class UnreadableImage(ValueError):
    """An image file that cannot be read; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def read_image(path: str) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3), turned upright by its EXIF orientation."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from jaxzoo.data.folder import to_rgb

    if not os.path.exists(path):
        raise UnreadableImage(path, "no such file")
    if os.path.isdir(path):
        raise UnreadableImage(path, "is a folder")
    if os.path.getsize(path) == 0:
        raise UnreadableImage(path, "empty file")
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(ImageOps.exif_transpose(image))
    except UnidentifiedImageError:
        raise UnreadableImage(path, "not an image PIL can read") from None
    except Image.DecompressionBombError as e:
        raise UnreadableImage(path, str(e)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise UnreadableImage(path, f"corrupt or truncated image ({e})") from None


def image_files(inputs: Iterable[str]) -> list[str]:
    """Files named in ``inputs``, with each folder replaced by the images under it (walked
    recursively, sorted, by extension, hidden files and folders left out, each real folder
    once: symlinks that lead to a folder walked already are not followed, with a warning)."""
    files = []
    for item in inputs:
        if not os.path.isdir(item):
            files.append(item)
            continue
        listing = walk([item])
        files += [path for _, group in listing.files[0] for path, _, _ in group]
        if listing.not_followed_message():
            warnings.warn(f"in {item}: {listing.not_followed_message()}", stacklevel=2)
    return files


@dataclasses.dataclass
class Prediction:
    """The top classes of one image, most probable first."""

    classes: list[str]
    probabilities: list[float]
    indices: list[int]
    path: str | None = None

    @property
    def label(self) -> str:
        return self.classes[0]

    @property
    def probability(self) -> float:
        return self.probabilities[0]

    def to_json(self) -> dict:
        return {"path": self.path, "label": self.label, "probability": self.probability,
                "top_k": [{"class": c, "index": i, "probability": p} for c, i, p in
                          zip(self.classes, self.indices, self.probabilities)]}

    def __str__(self) -> str:
        others = ", ".join(f"{c} {p:.4f}" for c, p in zip(self.classes[1:], self.probabilities[1:]))
        return f"{self.label} {self.probability:.4f}" + (f"  ({others})" if others else "")


def _class_names_beside(path: str, num_classes: int) -> list[str]:
    """The class names of a weights file or folder: ``model.class_names.json`` beside
    ``model.pth`` (``export`` writes it) or a ``class_names.json`` in its folder; ImageNet's for
    1000 classes; else class_0, class_1, ..."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    for candidate in (os.path.splitext(path)[0] + ".class_names.json",
                      os.path.join(folder, "class_names.json")):
        if not os.path.isfile(candidate):
            continue
        with open(candidate) as f:
            names = json.load(f)
        names = [names[str(i)] for i in range(len(names))] if isinstance(names, dict) else names
        if len(names) == num_classes:
            return list(names)
    if num_classes == 1000:
        return imagenet_class_names()
    return [f"class_{i}" for i in range(num_classes)]


class Predictor:
    """A model, its weights, its class names and its input size, ready to classify images."""

    def __init__(self, model_name: str, variables: dict, class_names: Sequence[str],
                 image_size: int, model_kwargs: dict | None = None, batch_size: int = 32,
                 resize_size: int | None = None, interpolation: str = "bilinear",
                 lowering: str = "auto"):
        spec = get_spec(model_name)
        if image_size < spec.min_size:
            raise ValueError(f"{model_name} needs inputs of at least {spec.min_size} px; got "
                             f"image_size={image_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model_name, self.image_size, self.batch_size = model_name, int(image_size), batch_size
        # Resize the shorter side to resize_size (default image_size / 0.875), then center-crop.
        self.resize_size = int(resize_size) if resize_size else None
        self.interpolation = imagenet.check_interpolation(interpolation)
        if self.resize_size is not None and self.resize_size < self.image_size:
            raise ValueError(f"resize_size {self.resize_size} is smaller than the crop "
                             f"{self.image_size}")
        self.class_names = list(class_names)
        # The lowering for the devices the predictor runs on (jax's default device).
        self.model = create_model(model_name, num_classes=len(self.class_names),
                                  lowering=runtime.lowering_for(jax.devices()[:1], lowering),
                                  **(model_kwargs or {}))
        self.channels = self.model.in_channels  # 1: images are turned gray first
        self.model_kwargs = dict(model_kwargs or {})  # to rebuild the network (jaxzoo.export)
        self.variables = {k: jax.device_put(v) for k, v in variables.items()
                          if k in ("params", "batch_stats")}
        self._probabilities = _compiled_probabilities(self.model)
        self._tf_preprocess = None
        self.run = None  # the TrainedRun when loaded from a workdir
        self.weights = None  # the weights table's entry when loaded by from_pretrained

    @property
    def forward(self):
        """The jitted ``(variables, images) -> class probabilities`` the predictor runs."""
        return self._probabilities

    def __repr__(self) -> str:
        return (f"Predictor({self.model_name}, {len(self.class_names)} classes, "
                f"{self.image_size} px)")

    @classmethod
    def from_workdir(cls, workdir: str, step: int | None = None,
                     batch_size: int = 32) -> "Predictor":
        """The best checkpoint of a training workdir (or checkpoint ``step``), at the image size
        and with the class names it was trained with."""
        run = load_run(workdir, step)
        predictor = cls(run.model, run.variables, run.class_names, run.image_size,
                        run.model_kwargs, batch_size)
        predictor.run = run
        return predictor

    @classmethod
    def from_weights(cls, name: str | None, path: str, image_size: int | None = None,
                     batch_size: int = 32) -> "Predictor":
        """A torchvision state dict (``.pth``/``.safetensors``) of model ``name``, or a directory
        written by ``python -m jaxzoo convert`` (``name`` may then be None). ``image_size``
        defaults to the model's own (224 for most, 299 for Inception v3)."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"no weights at {path}: give a torchvision .pth/.safetensors "
                                    f"file or a directory from `python -m jaxzoo convert`")
        if os.path.isdir(path):
            if os.path.isfile(os.path.join(path, "config.json")):
                raise ValueError(f"{path} is a training workdir: use --workdir {path} "
                                 f"(Predictor.from_workdir)")
            if not weights.is_weights_dir(path):
                weights.load_weights(path)  # raises, saying what a weights directory holds
            with open(os.path.join(path, weights.MODEL_JSON)) as f:
                held = json.load(f)["model"]
            if name is not None and name != held:
                raise ValueError(f"{path} holds {held} weights, not {name}")
            name = held
        elif name is None:
            raise ValueError(f"say which model {path} holds (--model NAME)")
        loaded = convert.load(name, path)
        class_names = loaded.class_names or _class_names_beside(path, loaded.num_classes)
        return cls(name, loaded.variables, class_names, image_size or get_spec(name).default_size,
                   loaded.model_kwargs, batch_size)

    @classmethod
    def from_pretrained(cls, name: str, weights: str = "DEFAULT", image_size: int | None = None,
                        batch_size: int = 32, progress: bool = True) -> "Predictor":
        """torchvision's pretrained ``weights`` of model ``name`` ("DEFAULT", "IMAGENET1K_V1",
        ...; see ``jaxzoo.pretrained``), with ImageNet's class names and the weights' own
        evaluation transform (resize size, crop size, interpolation; e.g. resnet50 IMAGENET1K_V2:
        232, 224, bilinear). ``image_size`` crops to another size, resizing in proportion."""
        entry = convert.weights_entry(name, weights)
        class_names = entry.class_names()
        if class_names is None:
            raise ValueError(f"{entry.enum}.{entry.name} has no classifier to predict with "
                             f"(torchvision publishes it for feature extraction); choose other "
                             f"weights: python -m jaxzoo weights {name}")
        if (tuple(entry.transform.mean), tuple(entry.transform.std)) != (imagenet.MEAN,
                                                                         imagenet.STD):
            raise ValueError(f"{entry.enum}.{entry.name} expects another input normalization "
                             f"than ImageNet's mean and std, which the predictor applies")
        loaded = convert.load(name, entry, progress=progress)
        crop, resize = entry.transform.crop_size, entry.transform.resize_size
        if image_size and image_size != crop:
            crop, resize = int(image_size), int(round(image_size * resize / crop))
        predictor = cls(name, loaded.variables, class_names, crop, loaded.model_kwargs,
                        batch_size, resize_size=resize,
                        interpolation=entry.transform.interpolation)
        predictor.weights = entry
        return predictor

    # ------------------------------------------------------------------ preprocessing

    def preprocess(self, image) -> np.ndarray:
        """A path, PIL image or uint8 array (H, W[, 1, 3 or 4]) -> the normalized float32
        (size, size, channels) array the model sees, as evaluation prepares it."""
        if self._tf_preprocess is None:
            self._tf_preprocess = _tf_preprocess_fn(self.image_size, self.resize_size,
                                                    self.interpolation, self.channels)
        return self._tf_preprocess(_as_rgb_uint8(image)).numpy()

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N, num_classes) of preprocessed images (N, size, size, C). Runs
        in batches of at most ``batch_size``, padded to a power of two to compile few shapes."""
        batch = np.asarray(batch, np.float32)
        out = []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start:start + self.batch_size]
            n = len(chunk)
            padding = np.zeros((min(self.batch_size, 1 << (n - 1).bit_length()) - n,)
                               + chunk.shape[1:], np.float32)
            out.append(np.asarray(self._probabilities(self.variables,
                                                      np.concatenate([chunk, padding])))[:n])
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)

    def _top(self, probabilities: np.ndarray, top_k: int, path=None) -> Prediction:
        order = np.argsort(-probabilities, kind="stable")[:max(1, min(top_k, len(probabilities)))]
        return Prediction(classes=[self.class_names[i] for i in order],
                          probabilities=[float(probabilities[i]) for i in order],
                          indices=[int(i) for i in order], path=path)

    # ------------------------------------------------------------------ prediction

    def predict(self, images, top_k: int = 5):
        """The top-``top_k`` classes of one image (a path, PIL image or uint8 array) or of a list
        of them (or a uint8 array (N, H, W, 3)); an unreadable file raises ``UnreadableImage``."""
        single = not isinstance(images, (list, tuple)) and not (
            isinstance(images, np.ndarray) and images.ndim == 4)
        items = [images] if single else list(images)
        paths = [os.fspath(x) if isinstance(x, (str, os.PathLike)) else None for x in items]
        batch = np.stack([self.preprocess(x) for x in items]) if items else np.zeros(
            (0, self.image_size, self.image_size, self.channels), np.float32)
        results = [self._top(p, top_k, path) for p, path in zip(self.probabilities(batch), paths)]
        return results[0] if single else results

    def predict_files(self, inputs: Iterable[str], top_k: int = 5
                      ) -> Iterator[Prediction | UnreadableImage]:
        """Files and folders (walked) -> a ``Prediction`` per readable image and an
        ``UnreadableImage`` per file that could not be read, in order, a batch at a time."""
        pending: list[tuple[str, np.ndarray | UnreadableImage]] = []

        def flush():
            readable = [(p, x) for p, x in pending if not isinstance(x, UnreadableImage)]
            probabilities = iter(self.probabilities(np.stack([x for _, x in readable]))
                                 if readable else [])
            for path, x in pending:
                yield x if isinstance(x, UnreadableImage) else self._top(
                    next(probabilities), top_k, path)
            pending.clear()

        for path in image_files(inputs):
            try:
                pending.append((path, self.preprocess(read_image(path))))
            except UnreadableImage as e:
                pending.append((path, e))
            if sum(not isinstance(x, UnreadableImage) for _, x in pending) >= self.batch_size:
                yield from flush()
        yield from flush()


def _as_rgb_uint8(image) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        return read_image(os.fspath(image))
    if hasattr(image, "getexif") and hasattr(image, "mode"):  # a PIL image
        from PIL import ImageOps

        from jaxzoo.data.folder import to_rgb

        return to_rgb(ImageOps.exif_transpose(image))
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels (0-255), got a {array.dtype} array; the "
                         f"predictor normalizes them itself")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), "
                         f"got {array.shape}")
    return np.repeat(array, 3, -1) if array.shape[-1] == 1 else array[..., :3]


@functools.lru_cache(maxsize=None)
def _compiled_probabilities(model):
    """One jitted softmax(apply) per model configuration, shared by the predictors using it."""
    import jax

    return jax.jit(lambda variables, x: jax.nn.softmax(
        model.apply(variables, x, train=False).astype("float32"), axis=-1))


@functools.lru_cache(maxsize=None)
def _tf_preprocess_fn(size: int, resize_size: int | None = None,
                      interpolation: str = "bilinear", channels: int = 3):
    """Evaluation's transform (``jaxzoo.data.pipeline``): torchvision's Resize(resize_size)
    (shorter side, antialiased; default size / 0.875) + CenterCrop(size), gray for one-channel
    models, normalized."""
    from jaxzoo.data._tf import tf
    from jaxzoo.data.pipeline import normalize, resize_center_crop, with_channels

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    def preprocess(image):
        image = with_channels(image, channels)
        return normalize(resize_center_crop(image, size, resize_size, interpolation))

    return preprocess
