"""tf.data preprocessing and the ``get_datasets`` entry point.

    data = get_datasets("tf_flowers", image_size=224, global_batch_size=64)
    for batch in data.train_batches(epoch):   # {"image": (B, H, W, 3) float32, "label": (B,) int32}
        ...
    for batch in data.val_batches():          # the same plus "mask": (B,) bool, False on padding
        ...

Training images get torchvision's RandomResizedCrop and a horizontal flip, evaluation images its
Resize(size / 0.875) + CenterCrop(size); both are normalized with the ImageNet mean and std. All of
it runs in TensorFlow ops on the host CPU, in parallel, ahead of the training step.
"""
import math

import numpy as np

from jaxzoo import imagenet
from jaxzoo.data._tf import tf
from jaxzoo.data import folder, tfds_source
from jaxzoo.data.source import Source

EVAL_CROP_FRACTION = 0.875
CROP_SCALE = (0.08, 1.0)        # torchvision's RandomResizedCrop defaults
CROP_RATIO = (3 / 4, 4 / 3)
SHAPES_CROP_SCALE = (0.35, 1.0)  # small synthetic images: a 8% crop would often miss the shape


def normalize(image: tf.Tensor) -> tf.Tensor:
    """uint8-range RGB to ImageNet-normalized float32, as torchvision's ToTensor + Normalize."""
    image = tf.cast(image, tf.float32) / 255.0
    return (image - tf.constant(imagenet.MEAN)) / tf.constant(imagenet.STD)


def random_resized_crop(image, size: int, seed, scale=CROP_SCALE, ratio=CROP_RATIO):
    """torchvision's RandomResizedCrop: a random area ``scale`` and aspect ``ratio`` (width/height)
    crop resized to ``size`` x ``size``; stateless, so ``seed`` (shape (2,)) fixes the crop."""
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        seed=seed, min_object_covered=0.0, aspect_ratio_range=ratio, area_range=scale,
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, crop_size)
    return tf.image.resize(image, [size, size], method="bilinear", antialias=True)


def resize_center_crop(image, size: int):
    """torchvision's Resize(int(size / 0.875)) (shorter side) + CenterCrop(size)."""
    resize = int(size / EVAL_CROP_FRACTION)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    short, long = tf.minimum(height, width), tf.maximum(height, width)
    new_long = tf.cast(resize * long / short, tf.int32)  # floor, as torchvision
    new_height = tf.where(height <= width, resize, new_long)
    new_width = tf.where(height <= width, new_long, resize)
    image = tf.image.resize(image, tf.stack([new_height, new_width]), method="bilinear",
                            antialias=True)
    top = tf.cast(tf.round(tf.cast(new_height - size, tf.float32) / 2), tf.int32)
    left = tf.cast(tf.round(tf.cast(new_width - size, tf.float32) / 2), tf.int32)
    return tf.slice(image, tf.stack([top, left, 0]), [size, size, 3])


def _plain_tf(fn):
    """``fn`` for ``Dataset.map`` without AutoGraph. Our preprocessing is plain TF ops (no Python
    control flow on tensors), and AutoGraph re-parsed its source every time an epoch's pipeline
    was built, most of the build's time (benchmarks/README.md)."""
    return tf.autograph.experimental.do_not_convert(fn)


def _numpy_batches(ds, batch: int):
    """``ds`` in full batches, prefetched, as numpy, with tf.data's autotuning off. Its
    optimization thread made deleting a finished epoch's iterator wait up to a second (0-1.04 s,
    in 5 of 10 epochs of 1,024 JPEGs: the slow epochs of ``bench --input``). Without it
    ``AUTOTUNE`` parallelism is fixed (the map runs on every core) and the epochs took the same
    time."""
    options = tf.data.Options()
    options.autotune.enabled = False
    ds = ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(options).as_numpy_iterator()


def _seed(*numbers: int) -> int:
    """A 31-bit integer seed from several integers (well mixed, the same on every machine)."""
    return int(np.random.SeedSequence(list(numbers)).generate_state(1)[0] >> 1)


class Datasets:
    """Training and validation batches of one dataset for this process (see ``get_datasets``)."""

    def __init__(self, source: Source, *, image_size: int, global_batch_size: int,
                 eval_batch_size: int, seed: int, process_index: int, process_count: int,
                 augment: bool, crop_scale: tuple[float, float]):
        self._source = source
        self.class_names = source.class_names
        self.num_train = source.num_train
        self.num_val = source.num_val
        self.skipped = dict(source.skipped)
        self.image_size = image_size
        self.global_batch_size = global_batch_size
        self.eval_batch_size = eval_batch_size
        self.batch_size = global_batch_size // process_count         # per process
        self.eval_batch_size_per_process = eval_batch_size // process_count
        self.steps_per_epoch = self.num_train // global_batch_size
        per_process_val = math.ceil(self.num_val / process_count)
        self.val_steps = math.ceil(per_process_val / self.eval_batch_size_per_process)
        self.seed = seed
        self.process_index = process_index
        self.process_count = process_count
        self.augment = augment
        self.crop_scale = tuple(crop_scale)

    def __repr__(self):
        return (f"Datasets({len(self.class_names)} classes, {self.num_train} train / "
                f"{self.num_val} val, {self.steps_per_epoch} steps per epoch of "
                f"{self.global_batch_size}, {self.image_size} px)")

    def train_batches(self, epoch: int, start_step: int = 0):
        """One epoch of this process's training batches, from step ``start_step`` on.

        The order and the augmentations depend only on (seed, epoch, process, position), so
        a run resumed at ``start_step`` gets exactly the batches the uninterrupted run would have.
        """
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ValueError(f"start_step={start_step} is outside the epoch's "
                             f"{self.steps_per_epoch} steps")
        size, batch = self.image_size, self.batch_size
        crop_seed = _seed(self.seed, epoch, self.process_index, 1)

        def preprocess(position, example):
            image, label = self._source.decode(example)
            if self.augment:
                crop, flip = tf.unstack(tf.random.experimental.stateless_split(
                    tf.stack([tf.constant(crop_seed, tf.int64), position]), num=2))
                image = random_resized_crop(image, size, crop, scale=self.crop_scale)
                image = tf.image.stateless_random_flip_left_right(image, flip)
            else:
                image = resize_center_crop(image, size)
            return {"image": normalize(image), "label": label}

        ds = self._source.train(_seed(self.seed, epoch, self.process_index, 0))
        ds = ds.take(self.steps_per_epoch * batch).enumerate().skip(start_step * batch)
        ds = ds.map(_plain_tf(preprocess), num_parallel_calls=tf.data.AUTOTUNE)
        return _numpy_batches(ds, batch)

    def val_batches(self):
        """This process's validation examples, each once, in ``val_steps`` batches; the last ones
        are padded with zeros where ``mask`` is False (every process yields the same count)."""
        return self.eval_batches("val")

    def eval_batches(self, split: str = "val"):
        """``val_batches`` of the ``"val"`` or the ``"train"`` split: every example once,
        prepared as for evaluation (no augmentation), the training examples in shuffled order."""
        if split not in ("val", "train"):
            raise ValueError(f'split must be "val" or "train", got {split!r}')
        size, batch = self.image_size, self.eval_batch_size_per_process
        if split == "val":
            examples, steps = self._source.val(), self.val_steps
        else:
            examples = self._source.train(_seed(self.seed, 0, self.process_index, 2))
            steps = math.ceil(math.ceil(self.num_train / self.process_count) / batch)

        def preprocess(example):
            image, label = self._source.decode(example)
            return {"image": normalize(resize_center_crop(image, size)), "label": label,
                    "mask": tf.constant(True)}

        padding = tf.data.Dataset.from_tensors({
            "image": tf.zeros([size, size, 3], tf.float32), "label": tf.constant(0, tf.int32),
            "mask": tf.constant(False)}).repeat()
        ds = examples.map(_plain_tf(preprocess), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.concatenate(padding).take(steps * batch)
        return _numpy_batches(ds, batch)


def _prepared_builder(make_builder, dataset: str):
    """``make_builder()``, its dataset prepared (downloaded or generated): by process 0 first,
    then by the others, which find it prepared where the data dir is shared and prepare their
    own copy where it is not. Processes writing one data dir at once collide."""
    import jax

    if jax.process_count() == 1 or jax.process_index() == 0:
        builder = make_builder()
        tfds_source.prepare(builder, dataset)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"jaxzoo: {dataset} prepared")
        if jax.process_index() != 0:  # a builder made now sees what process 0 wrote
            builder = make_builder()
            tfds_source.prepare(builder, dataset)
    return builder


def get_datasets(dataset: str = "shapes", *, image_size: int = 64, global_batch_size: int = 32,
                 eval_batch_size: int | None = None, seed: int = 0, data_dir: str | None = None,
                 val_fraction: float = 0.1, process_index: int | None = None,
                 process_count: int | None = None, augment: bool = True,
                 crop_scale: tuple[float, float] | None = None,
                 max_image_pixels: int = folder.MAX_IMAGE_PIXELS) -> Datasets:
    """The training and validation data of ``dataset``, for this process.

    ``dataset``: a TFDS name (``tf_flowers``, ``cifar10``, ``imagenette``, ...), ``folder:PATH``
    (PATH/train/CLASS/* and PATH/val/CLASS/*, or PATH/CLASS/* split by ``val_fraction``), or the
    built-in ``shapes`` (``shapes/CONFIG`` for another size, see ``jaxzoo.data.shapes``).
    Batch sizes are global (all processes together) and must divide by the number of processes.
    ``crop_scale``: RandomResizedCrop's area range; torchvision's (0.08, 1) by default, a milder
    (0.35, 1) for ``shapes``. ``max_image_pixels``: larger images of a folder are skipped.
    """
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    eval_batch_size = eval_batch_size or global_batch_size
    for name, value in [("global_batch_size", global_batch_size),
                        ("eval_batch_size", eval_batch_size)]:
        if value <= 0 or value % process_count:
            raise ValueError(f"{name}={value} must be a positive multiple of the number of "
                             f"processes ({process_count})")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction} must be between 0 and 1")

    if dataset.startswith("folder:"):
        source = folder.folder_source(dataset.partition(":")[2], val_fraction=val_fraction,
                                      process_index=process_index, process_count=process_count,
                                      max_pixels=max_image_pixels)
    else:
        if dataset == "shapes" or dataset.startswith("shapes/"):
            make_builder = lambda: tfds_source.shapes_builder(dataset, data_dir)  # noqa: E731
            crop_scale = crop_scale or SHAPES_CROP_SCALE
        else:
            make_builder = lambda: tfds_source.tfds_builder(dataset, data_dir)  # noqa: E731
        builder = _prepared_builder(make_builder, dataset)
        source = tfds_source.tfds_source(builder, val_fraction, process_index, process_count)

    if source.num_train < global_batch_size:
        raise ValueError(f"{dataset} has {source.num_train} training examples, fewer than one "
                         f"batch of global_batch_size={global_batch_size}; use a smaller batch")
    return Datasets(source, image_size=image_size, global_batch_size=global_batch_size,
                    eval_batch_size=eval_batch_size, seed=seed, process_index=process_index,
                    process_count=process_count, augment=augment,
                    crop_scale=crop_scale or CROP_SCALE)
