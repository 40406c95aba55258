"""tf.data preprocessing and the ``get_datasets`` entry point.

    data = get_datasets("tf_flowers", image_size=224, global_batch_size=64)
    for batch in data.train_batches(epoch):   # {"image": (B, H, W, C) float32, "label": (B,) int32}
        ...                                   # (uint8 images with image_dtype="uint8")
    for batch in data.val_batches():          # the same plus "mask": (B,) bool, False on padding
        ...

Training images get torchvision's RandomResizedCrop and a horizontal flip, evaluation images its
Resize(size / 0.875) + CenterCrop(size). Images are RGB, or gray for one-channel models. All of
it runs on the host CPU, in parallel, ahead of the training step, in TensorFlow ops (the
augmentation policies in numpy and PIL, inside the map). Of a JPEG, training decodes only the
crop's window. The options of torchvision's reference scripts (``references/classification``)
add an augmentation policy after the flip (AutoAugment, RandAugment, TrivialAugmentWide, AugMix:
``jaxzoo.data.augment``), random erasing after the normalization, evaluation's own resize and
crop, and repeated augmentation (``ra_reps``).

The resampled images are rounded to uint8, as torchvision's PIL transforms produce them.
``image_dtype="uint8"`` yields them so: a quarter of the bytes to copy to the accelerator and no
normalizing on the host; the train and eval steps normalize uint8 batches on the device
(``jaxzoo.train.step.model_input``, with ``jaxzoo.imagenet.normalize``). ``image_dtype="float32"``
(the default) normalizes them on the host with ``normalize``, which computes the same numbers in
TensorFlow.
"""
import dataclasses
import math

import numpy as np

from jaxzoo import imagenet
from jaxzoo.data._tf import tf
from jaxzoo.data import folder, replace, tfds_source
from jaxzoo.data.augment import RandomErasing, make_policy
from jaxzoo.data.source import Source, Window, crop, decode_window

CROP_SCALE = (0.08, 1.0)        # torchvision's RandomResizedCrop defaults
CROP_RATIO = (3 / 4, 4 / 3)
SHAPES_CROP_SCALE = (0.35, 1.0)  # small synthetic images: a 8% crop would often miss the shape
IMAGE_DTYPES = ("float32", "uint8")


def normalize(image: tf.Tensor) -> tf.Tensor:
    """uint8-range RGB or grayscale to normalized float32, as torchvision's ToTensor +
    Normalize: ``jaxzoo.imagenet.normalize`` in TensorFlow ops (the same float32 operations, the
    same numbers)."""
    mean, std = imagenet.mean_std(image.shape[-1])
    mean = np.asarray(mean, np.float32) * np.float32(255.0)
    std = np.asarray(std, np.float32) * np.float32(255.0)
    return (tf.cast(image, tf.float32) - tf.constant(mean)) / tf.constant(std)


def to_grayscale(image: tf.Tensor) -> tf.Tensor:
    """uint8 RGB (H, W, 3) -> uint8 grayscale (H, W, 1) with PIL's ``convert("L")`` integer
    formula (what torchvision's ``Grayscale()`` runs on a PIL image): ITU-R 601-2 luma,
    (19595 R + 38470 G + 7471 B + 2^15) >> 16. A gray image's pixels come back unchanged."""
    rgb = tf.cast(image, tf.int32)
    luma = (rgb[..., 0:1] * 19595 + rgb[..., 1:2] * 38470 + rgb[..., 2:3] * 7471 + 32768) // 65536
    return tf.cast(luma, tf.uint8)


def with_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """A decoded uint8 RGB image with the ``channels`` a model takes: 3 as it is, 1 in gray."""
    return to_grayscale(image) if channels == 1 else image


def to_uint8(image: tf.Tensor) -> tf.Tensor:
    """Resampled float pixels (0-255) as uint8: rounded half up and clamped, as PIL's resampling
    (what torchvision's transforms run) ends."""
    return tf.cast(tf.clip_by_value(tf.floor(image + 0.5), 0.0, 255.0), tf.uint8)


def crop_window(shape, seed, scale=CROP_SCALE, ratio=CROP_RATIO):
    """RandomResizedCrop's window of an image of ``shape`` (height, width, channels): a random area
    ``scale`` and aspect ``ratio`` (width/height), as ``(begin, size)`` for ``tf.slice``. It
    depends only on the height, the width and ``seed`` (shape (2,)), so a JPEG's header gives it
    without decoding."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.stack([shape[0], shape[1], 3]),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        seed=seed, min_object_covered=0.0, aspect_ratio_range=ratio, area_range=scale,
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    return begin, size


def _resize(image, size: int, interpolation: str = "bilinear"):
    return tf.image.resize(image, [size, size], method=interpolation,
                           antialias=interpolation != "nearest")


def random_resized_crop(image, size: int, seed, scale=CROP_SCALE, ratio=CROP_RATIO):
    """torchvision's RandomResizedCrop of a decoded image: ``crop_window`` resized to ``size`` x
    ``size`` (uint8); stateless, so ``seed`` (shape (2,)) fixes the crop."""
    return to_uint8(_resize(crop(image, lambda shape: crop_window(shape, seed, scale, ratio)),
                            size))


def resize_center_crop(image, size: int, resize_size: int | None = None,
                       interpolation: str = "bilinear"):
    """torchvision's Resize(resize_size) (shorter side, antialiased; default int(size / 0.875))
    + CenterCrop(size), uint8, as its evaluation transforms (and those of its pretrained weights:
    resnet50 IMAGENET1K_V2 resizes to 232 bilinear, inception_v3 to 342) prepare images."""
    resize = imagenet.eval_resize_size(size, resize_size)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    short, long = tf.minimum(height, width), tf.maximum(height, width)
    new_long = tf.cast(resize * long / short, tf.int32)  # floor, as torchvision
    new_height = tf.where(height <= width, resize, new_long)
    new_width = tf.where(height <= width, new_long, resize)
    # to_uint8 clamps too: bicubic overshoots 0..255, which PIL clamps.
    image = tf.image.resize(image, tf.stack([new_height, new_width]), method=interpolation,
                            antialias=interpolation != "nearest")
    top = tf.cast(tf.round(tf.cast(new_height - size, tf.float32) / 2), tf.int32)
    left = tf.cast(tf.round(tf.cast(new_width - size, tf.float32) / 2), tf.int32)
    return to_uint8(tf.slice(image, tf.stack([top, left, 0]), tf.stack([size, size, -1])))


def erase(image: tf.Tensor, box: tf.Tensor, value) -> tf.Tensor:
    """``image`` (H, W, C) with the rectangle ``box`` = (top, left, height, width) set to
    ``value`` (per channel), as torchvision's ``F.erase``; a box of height 0 leaves it as it is."""
    top, left, height, width = tf.unstack(tf.cast(box, tf.int32))
    rows, cols = tf.range(tf.shape(image)[0]), tf.range(tf.shape(image)[1])
    inside = (((rows >= top) & (rows < top + height))[:, None]
              & ((cols >= left) & (cols < left + width))[None, :])
    return tf.where(inside[..., None], tf.cast(tf.constant(value), image.dtype), image)


def erase_value(image_dtype: str, channels: int):
    """What random erasing writes. The reference erases with 0 after ``Normalize`` (presets.py
    puts ``RandomErasing(p)`` last, value 0), i.e. with the mean image. Float32 batches are
    erased after their normalization, with exactly 0. uint8 batches are normalized later, on
    the device, so they are erased with the mean pixel rounded to uint8 (124, 116, 104), which
    normalizes to within 0.009 of 0 (the rounding of the mean by half a grey level at most)."""
    if image_dtype == "float32":
        return np.zeros([channels], np.float32)
    mean, _ = imagenet.mean_std(channels)
    return np.round(np.asarray(mean) * 255.0).astype(np.uint8)


def ra_positions(num_examples: int, repetitions: int, process_index: int,
                 process_count: int) -> np.ndarray:
    """The examples one process takes in an epoch of repeated augmentation, as positions in
    that epoch's shuffled order of all training examples: the index list of the reference's
    ``RASampler`` (references/classification/sampler.py, from DeiT) before it maps positions
    through its ``randperm``. Each example is repeated ``repetitions`` times in a row, the
    processes take every ``process_count``-th entry (so the copies of an example go to
    different processes, when there are at least as many), and each process keeps the first
    ``floor(num_examples // 256 * 256 / process_count)`` of its entries, as the sampler does."""
    num_samples = math.ceil(num_examples * repetitions / process_count)
    total_size = num_samples * process_count
    num_selected = math.floor(num_examples // 256 * 256 / process_count)
    repeated = np.repeat(np.arange(num_examples), repetitions)
    repeated = np.concatenate([repeated, repeated[:total_size - len(repeated)]])
    return repeated[process_index:total_size:process_count][:num_selected]


def _plain_tf(fn):
    """``fn`` for ``Dataset.map`` without AutoGraph. Our preprocessing is plain TF ops (no Python
    control flow on tensors), and AutoGraph re-parsed its source every time an epoch's pipeline
    was built, most of the build's time (benchmarks/README.md)."""
    return tf.autograph.experimental.do_not_convert(fn)


def _batched(ds, batch: int):
    """``ds`` in full batches, prefetched, with tf.data's autotuning off. The autotuner's thread
    wakes 10, 30, 70, ... ms after an iterator starts (its period doubles from 10 ms), and
    deleting a finished iterator often waited for its next wake-up: the epoch then lasted until
    10 ms x (2^k - 1) after its start, whatever its work (the slow mode of ``bench --input``,
    benchmarks/README.md). Without the autotuner ``AUTOTUNE`` means a fixed parallelism (the map
    runs on every core)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    ds = ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(options)


def _numpy_batches(ds, batch: int):
    return _batched(ds, batch).as_numpy_iterator()


def _seed(*numbers: int) -> int:
    """A 31-bit integer seed from several integers (well mixed, the same on every machine)."""
    return int(np.random.SeedSequence(list(numbers)).generate_state(1)[0] >> 1)


class Datasets:
    """Training and validation batches of one dataset for this process (see ``get_datasets``)."""

    def __init__(self, source: Source, *, image_size: int, global_batch_size: int,
                 eval_batch_size: int, seed: int, process_index: int, process_count: int,
                 augment: bool, crop_scale: tuple[float, float], image_dtype: str = "float32",
                 channels: int = 3, eval_resize_size: int | None = None,
                 interpolation: str = "bilinear", eval_crop_size: int | None = None,
                 auto_augment: str = "", ra_magnitude: int = 9, augmix_severity: int = 3,
                 random_erase: float = 0.0, ra_reps: int = 0):
        if image_dtype not in IMAGE_DTYPES:
            raise ValueError(f"image_dtype must be one of {IMAGE_DTYPES}, got {image_dtype!r}")
        imagenet.mean_std(channels)  # 1 or 3, else a clear error
        imagenet.check_interpolation(interpolation)
        eval_crop_size = eval_crop_size or image_size
        if eval_resize_size is not None and eval_resize_size < eval_crop_size:
            raise ValueError(f"eval_resize_size={eval_resize_size} is smaller than the crop, "
                             f"{eval_crop_size}")
        # The reference's --auto-augment, --ra-magnitude, --augmix-severity (a clear error here
        # for a wrong name or value, before any data is read).
        self.policy = make_policy(auto_augment, ra_magnitude=ra_magnitude,
                                  augmix_severity=augmix_severity,
                                  interpolation=interpolation)
        self.erasing = RandomErasing(random_erase) if random_erase > 0 else None
        self.auto_augment, self.random_erase = auto_augment, random_erase
        self.ra_reps = ra_reps if ra_reps > 1 else 0
        if self.ra_reps and source.train_all is None:
            raise ValueError("ra_reps needs a dataset every process can read whole "
                             "(a TFDS dataset, folder:PATH or shapes)")
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
        if self.ra_reps:  # as many steps as RASampler's list of this process has full batches
            selected = len(ra_positions(self.num_train, self.ra_reps, 0, process_count))
            self.steps_per_epoch = selected // self.batch_size
            if self.steps_per_epoch < 1:
                raise ValueError(
                    f"ra_reps={ra_reps}: repeated augmentation takes "
                    f"floor({self.num_train} // 256 * 256 / {process_count}) = {selected} "
                    f"examples per process and epoch (the reference's RASampler), fewer than a "
                    f"batch of {self.batch_size}; use ra_reps=0 or a smaller batch")
        per_process_val = math.ceil(self.num_val / process_count)
        self.val_steps = math.ceil(per_process_val / self.eval_batch_size_per_process)
        self.seed = seed
        self.process_index = process_index
        self.process_count = process_count
        self.augment = augment
        self.crop_scale = tuple(crop_scale)
        self.image_dtype = image_dtype
        self.channels = channels  # 3 (RGB), or 1: decoded images turned gray as PIL does
        # Evaluation's Resize(eval_resize_size or eval_crop_size / 0.875) with
        # ``interpolation``, then CenterCrop(eval_crop_size, by default image_size): pretrained
        # weights are evaluated with their own. ``interpolation`` also resizes the training
        # crops and resamples the policies' geometric ops, as the reference's --interpolation.
        self.eval_resize_size = eval_resize_size
        self.eval_crop_size = eval_crop_size
        self.interpolation = interpolation
        # Decode only the crop window of JPEGs for RandomResizedCrop (the same pixels as the full
        # decode); False decodes whole images, as a reference for tests and benchmarks.
        self.crop_decoding = True

    def __repr__(self):
        return (f"Datasets({len(self.class_names)} classes, {self.num_train} train / "
                f"{self.num_val} val, {self.steps_per_epoch} steps per epoch of "
                f"{self.global_batch_size}, {self.image_size} px)")

    def _finish(self, image):
        """A uint8 image as this pipeline yields it: uint8, or normalized float32."""
        return image if self.image_dtype == "uint8" else normalize(image)

    def _decode(self, example):
        image, label = self._source.decode(example)
        return with_channels(image, self.channels), label

    def _decode_crop(self, example, window: Window):
        if self.crop_decoding and self._source.decode_crop is not None:
            image, label = self._source.decode_crop(example, window)
            return with_channels(image, self.channels), label
        image, label = self._decode(example)
        return crop(image, window), label

    @property
    def eval_transform(self) -> str:
        """Evaluation's transform, in torchvision's words."""
        resize = imagenet.eval_resize_size(self.eval_crop_size, self.eval_resize_size)
        return f"Resize({resize}, {self.interpolation}) + CenterCrop({self.eval_crop_size})"

    def _eval_transform(self, image, size: int | None = None):
        """Evaluation's resize and center crop; of ``size`` (training without augmentation)
        with the default resize when it is not evaluation's crop."""
        size = size or self.eval_crop_size
        resize_size = self.eval_resize_size if size == self.eval_crop_size else None
        return resize_center_crop(image, size, resize_size, self.interpolation)

    def _augment(self, image, seed: int, position):
        """The policy (after the flip) and random erasing's box (``erase`` applies it after
        the normalization), drawn from a numpy generator seeded by (``seed``, ``position``):
        the same for a resumed epoch. They run in numpy and PIL (``jaxzoo.data.augment``)."""
        policy, erasing = self.policy, self.erasing

        def run(image, seed, position):
            policy_rng, erase_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(
                [int(seed), int(position)]).spawn(2))
            if policy is not None:
                image = policy(image, policy_rng)
            box = erasing.box(*image.shape[:2], erase_rng) if erasing is not None else None
            return image, np.asarray(box or (0, 0, 0, 0), np.int32)

        shape = image.shape
        image, box = tf.numpy_function(run, [image, tf.constant(seed, tf.int64), position],
                                       [tf.uint8, tf.int32], stateful=False)
        image.set_shape(shape)
        box.set_shape([4])
        return image, box

    def _train_examples(self, epoch: int) -> tf.data.Dataset:
        """This process's training examples of ``epoch``, in order. With ``ra_reps`` the
        RASampler's: every process reads the same shuffled order of all examples and repeats
        each one as many times as ``ra_positions`` lists it for this process."""
        if not self.ra_reps:
            return self._source.train(_seed(self.seed, epoch, self.process_index, 0))
        positions = ra_positions(self.num_train, self.ra_reps, self.process_index,
                                 self.process_count)
        # Within the selected entries the positions never decrease (the sampler's padding,
        # which wraps to the start, lies beyond them), so a count per position says it all.
        counts = tf.constant(np.bincount(positions), tf.int64)
        examples = self._source.train_all(_seed(self.seed, epoch, 4)).take(len(counts))
        return examples.enumerate().flat_map(_plain_tf(
            lambda i, example: tf.data.Dataset.from_tensors(example).repeat(counts[i])))

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
        augment_seed = _seed(self.seed, epoch, self.process_index, 3)
        erasing = self.augment and self.erasing is not None

        def preprocess(position, example):
            if self.augment:
                crop_key, flip = tf.unstack(tf.random.experimental.stateless_split(
                    tf.stack([tf.constant(crop_seed, tf.int64), position]), num=2))
                image, label = self._decode_crop(example, lambda shape: crop_window(
                    shape, crop_key, scale=self.crop_scale))
                image = tf.image.stateless_random_flip_left_right(
                    to_uint8(_resize(image, size, self.interpolation)), flip)
                if self.policy is not None or erasing:
                    image, box = self._augment(image, augment_seed, position)
            else:
                image, label = self._decode(example)
                image = self._eval_transform(image, size)
            image = self._finish(image)
            if erasing:
                image = erase(image, box, erase_value(self.image_dtype, self.channels))
            return {"image": image, "label": label}

        ds = self._train_examples(epoch)
        ds = ds.take(self.steps_per_epoch * batch).enumerate().skip(start_step * batch)
        # An image that fails to read is replaced: every process keeps the epoch's steps.
        ds = replace.map_keeping_count(ds, _plain_tf(preprocess),
                                       (self.steps_per_epoch - start_step) * batch)
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
        size, batch = self.eval_crop_size, self.eval_batch_size_per_process
        if split == "val":
            examples, steps = self._source.val(), self.val_steps
        else:
            examples = self._source.train(_seed(self.seed, 0, self.process_index, 2))
            steps = math.ceil(math.ceil(self.num_train / self.process_count) / batch)

        def preprocess(example):
            image, label = self._decode(example)
            return {"image": self._finish(self._eval_transform(image)), "label": label,
                    "mask": tf.constant(True)}

        padding = tf.data.Dataset.from_tensors({
            "image": tf.zeros([size, size, self.channels], self.image_dtype), "label": tf.constant(0, tf.int32),
            "mask": tf.constant(False)}).repeat()
        # An image that fails to read becomes padding (not counted), with a warning.
        ds = replace.map_keeping_count(examples, _plain_tf(preprocess),
                                       int(examples.cardinality()), padding,
                                       what="padding, not counted in the evaluation,")
        ds = ds.concatenate(padding).take(steps * batch)
        return _numpy_batches(ds, batch)


def _tfds_decode_crop(example, window: Window):
    """``Source.decode_crop`` of a TFDS dataset: its examples hold the still-encoded image
    (``tfds_source`` skips TFDS's own decoding) and an integer label."""
    return decode_window(example["image"], window), tf.cast(example["label"], tf.int32)


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
                 max_image_pixels: int = folder.MAX_IMAGE_PIXELS,
                 image_dtype: str = "float32", channels: int = 3,
                 eval_resize_size: int | None = None,
                 interpolation: str = "bilinear", eval_crop_size: int | None = None,
                 auto_augment: str = "", ra_magnitude: int = 9, augmix_severity: int = 3,
                 random_erase: float = 0.0, ra_reps: int = 0) -> Datasets:
    """The training and validation data of ``dataset``, for this process.

    ``dataset``: a TFDS name (``tf_flowers``, ``cifar10``, ``imagenette``, ...), ``folder:PATH``
    (PATH/train/CLASS/* and PATH/val/CLASS/*, or PATH/CLASS/* split by ``val_fraction``), or the
    built-in ``shapes`` (``shapes/CONFIG`` for another size, see ``jaxzoo.data.shapes``).
    Batch sizes are global (all processes together) and must divide by the number of processes.
    ``crop_scale``: RandomResizedCrop's area range; torchvision's (0.08, 1) by default, a milder
    (0.35, 1) for ``shapes``. ``max_image_pixels``: larger images of a folder are skipped.
    ``image_dtype``: ``"float32"`` batches are normalized on the host, ``"uint8"`` ones are the
    pixels, for the train and eval steps to normalize on the device. ``channels``: 3 (RGB) or 1
    (images turned gray as torchvision's ``Grayscale()`` does, for a model with
    ``in_channels=1``). ``eval_resize_size`` and ``interpolation``: evaluation's resize before
    its center crop of ``eval_crop_size`` (default int(eval_crop_size / 0.875), bilinear;
    the crop defaults to ``image_size``, the training crop); ``interpolation`` also resizes the
    training crops. The reference scripts' training options: ``auto_augment`` (``imagenet``,
    ``cifar10``, ``svhn``, ``ra`` with ``ra_magnitude``, ``ta_wide``, ``augmix`` with
    ``augmix_severity``), ``random_erase`` (its probability) and ``ra_reps`` (repeated
    augmentation across processes, the reference's RASampler; 0 or 1: off).
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
    if image_dtype not in IMAGE_DTYPES:
        raise ValueError(f"image_dtype must be one of {IMAGE_DTYPES}, got {image_dtype!r}")

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
        if source.decode_crop is None:
            source = dataclasses.replace(source, decode_crop=_tfds_decode_crop)

    if source.num_train < global_batch_size:
        raise ValueError(f"{dataset} has {source.num_train} training examples, fewer than one "
                         f"batch of global_batch_size={global_batch_size}; use a smaller batch")
    return Datasets(source, image_size=image_size, global_batch_size=global_batch_size,
                    eval_batch_size=eval_batch_size, seed=seed, process_index=process_index,
                    process_count=process_count, augment=augment,
                    crop_scale=crop_scale or CROP_SCALE, image_dtype=image_dtype,
                    channels=channels, eval_resize_size=eval_resize_size,
                    interpolation=interpolation, eval_crop_size=eval_crop_size,
                    auto_augment=auto_augment, ra_magnitude=ra_magnitude,
                    augmix_severity=augmix_severity, random_erase=random_erase,
                    ra_reps=ra_reps)
