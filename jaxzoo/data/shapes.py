"""``shapes``: a small image-classification dataset that jaxzoo generates locally, without network.

Each image shows one filled shape (circle, square, triangle, star, cross or ring) with a random
colour, size, position and rotation on a textured background of random colours. The shape's colour
and the background are drawn independently of the class, and every class covers the same area on
average, so the mean colour of an image says nothing about its label: a model has to look at the
outline. Generation is deterministic (each image is drawn from its own seeded generator) and takes
a few seconds; TFDS writes the result once into its data dir and later runs read it from there.

    builder = ShapesBuilder(config="default", data_dir=...)
    builder.download_and_prepare()

Configs differ only in the number of images and their side, see ``BUILDER_CONFIGS``; add one there
for other counts.
"""
import dataclasses
import functools
import io

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image, ImageDraw

CLASS_NAMES = ["circle", "square", "triangle", "star", "cross", "ring"]
_SUPERSAMPLE = 4  # shapes are drawn at 4x and box-filtered down, for smooth (anti-aliased) edges


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
    image_size: int = 64
    num_train: int = 3000
    num_val: int = 600
    seed: int = 0


class ShapesBuilder(tfds.core.GeneratorBasedBuilder):
    """Filled shapes on textured backgrounds; labels are the shape's kind."""

    name = "jaxzoo_shapes"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        ShapesConfig(name="default", description="64 px, 3000 train / 600 validation images"),
        ShapesConfig(name="large", num_train=12000, num_val=1200,
                     description="64 px, 12000 train / 1200 validation images"),
        ShapesConfig(name="small", num_train=1200, num_val=300,
                     description="64 px, 1200 train / 300 validation images"),
        ShapesConfig(name="tiny", image_size=32, num_train=240, num_val=90,
                     description="32 px, 240 train / 90 validation images (for tests)"),
    ]
    DEFAULT_CONFIG_NAME = "default"

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS's own lookup goes through importlib_resources, which some installs lack.
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
                "label": tfds.features.ClassLabel(names=CLASS_NAMES),
            }),
            supervised_keys=("image", "label"),
            description=__doc__,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        config = self.builder_config
        return {
            "train": self._generate_examples(split_id=0, count=config.num_train),
            "validation": self._generate_examples(split_id=1, count=config.num_val),
        }

    def _generate_examples(self, split_id: int, count: int):
        config = self.builder_config
        for index in range(count):
            label = index % len(CLASS_NAMES)  # balanced classes; TFDS shuffles the order on write
            rng = np.random.default_rng([config.seed, split_id, index])
            image = render(CLASS_NAMES[label], config.image_size, rng)
            yield index, {"image": _png(image), "label": label}


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)  # fast; noise barely packs
    return buffer.getvalue()


def _unit_outline(kind: str) -> list[np.ndarray]:
    """Polygons (radius 1, centred at 0) whose union, minus the second one for a ring, is the shape."""
    def regular(n, start=np.pi / 2):
        angles = start + 2 * np.pi * np.arange(n) / n
        return np.stack([np.cos(angles), -np.sin(angles)], axis=1)

    if kind == "circle":
        return [regular(64)]
    if kind == "ring":
        return [regular(64), 0.6 * regular(64)]
    if kind == "square":
        return [regular(4, np.pi / 4)]
    if kind == "triangle":
        return [regular(3)]
    if kind == "star":
        outer, inner = regular(5), 0.45 * regular(5, np.pi / 2 + np.pi / 5)
        return [np.stack([outer, inner], axis=1).reshape(10, 2)]
    if kind == "cross":
        w = 1 / 3
        return [np.array([[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w], [w, 1],
                          [-w, 1], [-w, w], [-1, w], [-1, -w], [-w, -w]])]
    raise ValueError(f"unknown shape {kind!r}; known: {CLASS_NAMES}")


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def _unit_area(kind: str) -> float:
    polygons = _unit_outline(kind)
    return _polygon_area(polygons[0]) - sum(_polygon_area(p) for p in polygons[1:])


@functools.lru_cache(maxsize=None)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy, xx


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth blobs of two random colours crossed by faint stripes of a third, plus pixel noise."""
    blobs = rng.random((4, 4), dtype=np.float32)
    blobs = np.asarray(Image.fromarray(blobs).resize((size, size), Image.BICUBIC))
    blobs = np.clip(blobs, 0, 1)[..., None]
    colour_a, colour_b, colour_c = rng.uniform(0, 255, size=(3, 3)).astype(np.float32)
    image = colour_b + (colour_a - colour_b) * blobs

    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 12)
    yy, xx = _grid(size)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)) > 0
    strength = np.float32(rng.uniform(0.1, 0.35))
    image += stripes[..., None] * strength * (colour_c - image)
    image += rng.standard_normal(image.shape, dtype=np.float32) * 6
    return image


def render(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One ``size`` x ``size`` RGB uint8 image of a ``kind`` shape."""
    background = _background(size, rng)
    # The shape covers 6-20% of the image whatever its kind, so its area does not give it away.
    area = rng.uniform(0.06, 0.20) * size * size
    radius = np.sqrt(area / _unit_area(kind))
    margin = radius + 0.1 * size  # keep it inside the centre crop used for evaluation
    centre = rng.uniform(margin, size - margin, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])

    big = size * _SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    for i, polygon in enumerate(_unit_outline(kind)):
        points = (polygon @ rotation.T * radius + centre) * _SUPERSAMPLE
        draw.polygon([tuple(p) for p in points], fill=0 if i else 255)
    alpha = np.asarray(mask.resize((size, size), Image.BOX), np.float32)[..., None] / 255

    # A random colour that stands out from the background behind the shape.
    behind = background[alpha[..., 0] > 0.5].mean(axis=0)
    for _ in range(20):
        colour = rng.uniform(0, 255, size=3).astype(np.float32)
        if np.abs(colour - behind).sum() > 150:
            break
    image = background + alpha * (colour - background)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)
