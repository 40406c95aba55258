"""Input pipelines: the built-in shapes dataset, batching across epochs/resumes/processes, folder
datasets with broken and unusual files, and the errors users see."""
import hashlib
import io
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxzoo import imagenet
from jaxzoo.data import get_datasets, pipeline, shapes, tfds_source

SHAPES = "shapes/tiny"  # 240 train / 90 validation images of 32 px
MEAN = np.array(imagenet.MEAN)
STD = np.array(imagenet.STD)


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def load(dataset=SHAPES, **kwargs):
    kwargs = {"image_size": 32, "global_batch_size": 32, "process_index": 0, "process_count": 1,
              **kwargs}
    return get_datasets(dataset, **kwargs)


def raw_split(data_dir, split):
    """The stored uint8 images and labels of a shapes split, in file order."""
    builder = shapes.ShapesBuilder(config="tiny", data_dir=data_dir)
    examples = list(builder.as_dataset(split=split).as_numpy_iterator())
    return np.stack([e["image"] for e in examples]), np.array([e["label"] for e in examples])


def digest(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def digests(batches, key="image"):
    """Digests of every real example in ``batches`` (padding removed), in order."""
    out = []
    for batch in batches:
        mask = batch.get("mask", np.ones(len(batch["label"]), bool))
        out += [digest(image) for image, real in zip(batch[key], mask) if real]
    return out


# --------------------------------------------------------------------------- shapes


def test_shapes_is_deterministic_and_generated_once(tfds_dir, tmp_path, monkeypatch):
    first = load(data_dir=tfds_dir)
    assert first.class_names == shapes.CLASS_NAMES
    assert (first.num_train, first.num_val) == (240, 90)

    # A second build elsewhere draws exactly the same images.
    load(data_dir=str(tmp_path))
    for split in ("train", "validation"):
        images_a, labels_a = raw_split(tfds_dir, split)
        images_b, labels_b = raw_split(str(tmp_path), split)
        np.testing.assert_array_equal(images_a, images_b)
        np.testing.assert_array_equal(labels_a, labels_b)

    # The data dir holds it now: loading again must not generate a single example.
    def no_generation(*args, **kwargs):
        raise AssertionError("shapes was generated again")

    monkeypatch.setattr(shapes.ShapesBuilder, "_generate_examples", no_generation)
    files = sorted((tmp_path / "jaxzoo_shapes" / "tiny" / "1.0.0").iterdir())
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = load(data_dir=str(tmp_path))
    assert again.num_train == 240
    assert [f.stat().st_mtime_ns for f in files] == mtimes


def test_shapes_balanced_and_not_solvable_by_colour(tfds_dir):
    load(data_dir=tfds_dir)
    train_images, train_labels = raw_split(tfds_dir, "train")
    val_images, val_labels = raw_split(tfds_dir, "validation")
    num_classes = len(shapes.CLASS_NAMES)
    assert np.bincount(train_labels, minlength=num_classes).tolist() == [40] * num_classes
    assert np.bincount(val_labels, minlength=num_classes).tolist() == [15] * num_classes

    # Multinomial logistic regression on the mean colour of each image.
    def features(images):
        colour = images.reshape(len(images), -1, 3).mean(axis=1) / 255.0
        return np.concatenate([colour - 0.5, np.ones((len(images), 1))], axis=1)

    x, onehot = features(train_images), np.eye(num_classes)[train_labels]
    weights = np.zeros((x.shape[1], num_classes))
    for _ in range(2000):
        logits = x @ weights
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        weights -= 1.0 * x.T @ (probs - onehot) / len(x)
    accuracy = ((features(val_images) @ weights).argmax(axis=1) == val_labels).mean()
    chance = 1 / num_classes
    assert accuracy < chance + 0.15, f"mean colour predicts the shape: {accuracy:.2f} accuracy"


def test_batches_are_normalized_with_the_right_shapes(tfds_dir):
    data = load(data_dir=tfds_dir, image_size=24, global_batch_size=16, eval_batch_size=40)
    batch = next(data.train_batches(0))
    assert batch["image"].shape == (16, 24, 24, 3) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (16,) and batch["label"].dtype == np.int32
    assert set(batch) == {"image", "label"}
    assert data.steps_per_epoch == 240 // 16

    val = list(data.val_batches())
    assert [b["image"].shape for b in val] == [(40, 24, 24, 3)] * 3
    images = np.concatenate([b["image"] for b in val])[np.concatenate([b["mask"] for b in val])]
    # Per-channel statistics are those of the stored pixels after (x / 255 - mean) / std.
    raw, _ = raw_split(tfds_dir, "validation")
    raw = raw.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(images.reshape(-1, 3).mean(0), (raw.mean(0) - MEAN) / STD,
                               atol=0.03)
    np.testing.assert_allclose(images.reshape(-1, 3).std(0), raw.std(0) / STD, rtol=0.1)


def test_eval_preprocessing_matches_torchvision():
    from skimage import data as photos
    from torchvision import transforms

    from jaxzoo.data._tf import tf

    bicubic = transforms.InterpolationMode.BICUBIC
    for photo in [photos.chelsea(), photos.coffee()]:  # landscape, 300x451 and 400x600
        # Evaluation's own Resize(size / 0.875), and a pretrained weights' Resize(232) bicubic.
        for size, resize, interpolation in [(64, None, "bilinear"), (224, None, "bilinear"),
                                            (224, 232, "bicubic")]:
            ours = pipeline.normalize(pipeline.resize_center_crop(
                tf.constant(photo), size, resize, interpolation))
            theirs = transforms.Compose([
                transforms.Resize(resize or int(size / 0.875),
                                  bicubic if interpolation == "bicubic" else
                                  transforms.InterpolationMode.BILINEAR),
                transforms.CenterCrop(size),
                transforms.ToTensor(), transforms.Normalize(MEAN, STD)])(Image.fromarray(photo))
            theirs = theirs.permute(1, 2, 0).numpy()
            assert ours.shape == theirs.shape == (size, size, 3)
            # Different resampling code: bilinear within two grey levels (1/255/std is about
            # 0.017); bicubic within five at a few sharp edges (its kernels differ more).
            difference = np.abs(ours.numpy() - theirs)
            assert difference.max() < (0.035 if interpolation == "bilinear" else 0.09)
            assert difference.mean() < 0.006  # a third of a grey level on average


def test_grayscale_is_pils_and_normalized_with_one_channel():
    from skimage import data as photos

    from jaxzoo.data._tf import tf

    photo = photos.coffee()
    gray = pipeline.to_grayscale(tf.constant(photo)).numpy()
    # torchvision's Grayscale() on a PIL image is PIL's convert("L"), to the last pixel.
    np.testing.assert_array_equal(gray[..., 0], np.asarray(Image.fromarray(photo).convert("L")))
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    np.testing.assert_array_equal(
        pipeline.to_grayscale(tf.constant(np.repeat(levels, 3, -1))).numpy(), levels)
    # One channel is normalized with the average of ImageNet's channels, on host and device.
    mean, std = np.mean(MEAN), np.mean(STD)
    expected = (levels / 255.0 - mean) / std
    np.testing.assert_allclose(pipeline.normalize(tf.constant(levels)).numpy(), expected,
                               atol=1e-5)
    np.testing.assert_array_equal(pipeline.normalize(tf.constant(levels)).numpy(),
                                  imagenet.normalize(levels))
    with pytest.raises(ValueError, match="1 \\(grayscale\\) or 3 \\(RGB\\) channels, not 4"):
        imagenet.normalize(np.zeros((2, 2, 4), np.uint8))


# --------------------------------------------------------------------------- train batches


def test_train_batches_deterministic_per_epoch_and_resumable(tfds_dir):
    data = load(data_dir=tfds_dir, seed=3)
    epoch0 = list(data.train_batches(0))
    assert len(epoch0) == data.steps_per_epoch == 240 // 32

    same = list(load(data_dir=tfds_dir, seed=3).train_batches(0))  # a new run, same seed
    for a, b in zip(epoch0, same, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])

    epoch1 = list(data.train_batches(1))
    assert not np.array_equal(epoch0[0]["image"], epoch1[0]["image"])
    other_seed = list(load(data_dir=tfds_dir, seed=4).train_batches(0))
    assert not np.array_equal(epoch0[0]["image"], other_seed[0]["image"])

    resumed = list(data.train_batches(0, start_step=3))
    assert len(resumed) == len(epoch0) - 3
    for a, b in zip(epoch0[3:], resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])  # same examples, same augmentation
        np.testing.assert_array_equal(a["label"], b["label"])


def test_train_batches_split_across_processes(tfds_dir):
    # 240 examples, global batch 48: nothing is dropped, so the processes must cover everything.
    one = load(data_dir=tfds_dir, augment=False, global_batch_size=48)
    everything = digests(one.train_batches(0))
    assert len(everything) == len(set(everything)) == 240

    shares = [digests(load(data_dir=tfds_dir, augment=False, global_batch_size=48,
                           process_index=i, process_count=2).train_batches(0)) for i in range(2)]
    assert [len(s) for s in shares] == [120, 120]
    assert not set(shares[0]) & set(shares[1])
    assert set(shares[0]) | set(shares[1]) == set(everything)

    # When the batch does not divide the data, every process still runs the same number of steps.
    counts = [sum(1 for _ in load(data_dir=tfds_dir, global_batch_size=36, process_index=i,
                                  process_count=2).train_batches(0)) for i in range(2)]
    assert counts == [240 // 36] * 2


# --------------------------------------------------------------------------- validation batches


@pytest.mark.parametrize("process_count", [1, 2])
def test_val_batches_every_example_exactly_once(tfds_dir, process_count):
    expected = {digest(image) for image in
                load(data_dir=tfds_dir, eval_batch_size=90).val_batches().__next__()["image"]}
    assert len(expected) == 90

    seen, steps = [], []
    for index in range(process_count):
        data = load(data_dir=tfds_dir, eval_batch_size=32, process_index=index,
                    process_count=process_count)
        batches = list(data.val_batches())
        steps.append(len(batches))
        for batch in batches:
            assert batch["image"].shape[0] == batch["mask"].shape[0] == 32 // process_count
            assert batch["mask"].dtype == bool
            assert not batch["image"][~batch["mask"]].any()  # padding is zeros
        seen += digests(batches)
    assert len(seen) == 90 and set(seen) == expected
    assert len(set(steps)) == 1  # every process evaluates the same number of batches


# --------------------------------------------------------------------------- folder datasets


def _save(path, image: Image.Image, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)


def _noise_jpeg_bytes():
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _garbled_png_bytes():
    """A PNG whose compressed image data was overwritten with zeros in the middle."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
        buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    start = data.index(b"IDAT") + 40
    data[start:start + 20] = bytes(20)
    return bytes(data)


def make_odd_folder(root):
    """train/{cats,dogs} of plain JPEGs; val/ holds one image of every kind and five bad files.
    Returns the RGB colour each readable validation image must decode to."""
    for label, name in enumerate(["cats", "dogs"]):
        for i in range(6):
            _save(root / "train" / name / f"{i}.jpg", Image.new("RGB", (36, 28), (40 * i, 90 * label, 60)))
    val = root / "val" / "cats"
    expected = {}
    _save(val / "rgb.jpg", Image.new("RGB", (30, 40), (200, 30, 40)), quality=95)
    expected["rgb.jpg"] = (200, 30, 40)
    _save(val / "gray.png", Image.new("L", (32, 32), 77))
    expected["gray.png"] = (77, 77, 77)
    _save(val / "rgba.png", Image.new("RGBA", (32, 32), (10, 220, 130, 100)))
    expected["rgba.png"] = (10, 220, 130)
    _save(val / "cmyk.jpg", Image.new("CMYK", (32, 32), (0, 200, 255, 0)), quality=95)
    expected["cmyk.jpg"] = tuple(np.asarray(Image.open(val / "cmyk.jpg").convert("RGB"))[0, 0])
    _save(val / "gray16.png", Image.fromarray(np.full((32, 32), 50000, np.uint16)))
    expected["gray16.png"] = (round(50000 / 257),) * 3
    _save(val / "palette.png", Image.new("RGB", (32, 32), (250, 160, 20)).convert(
        "P", palette=Image.Palette.ADAPTIVE))
    expected["palette.png"] = (250, 160, 20)
    _save(val / "bitmap.bmp", Image.new("RGB", (32, 32), (120, 0, 250)))
    expected["bitmap.bmp"] = (120, 0, 250)
    _save(val / "still.gif", Image.new("RGB", (32, 32), (255, 255, 0)))
    expected["still.gif"] = (255, 255, 0)
    _save(root / "val" / "dogs" / "dog.jpg", Image.new("RGB", (50, 50), (0, 100, 200)), quality=95)
    expected["dog.jpg"] = (0, 100, 200)

    jpeg = _noise_jpeg_bytes()
    (val / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # a full header, half the data
    (val / "header.jpg").write_bytes(jpeg[:200])
    (val / "corrupt.png").write_bytes(_garbled_png_bytes())
    (val / "empty.jpg").write_bytes(b"")
    (val / "notes.jpg").write_text("this is not a picture\n")
    (val / "README.txt").write_text("ignored: not an image extension\n")
    return expected


def test_folder_decodes_every_kind_and_skips_bad_files(tmp_path):
    expected = make_odd_folder(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load(f"folder:{tmp_path}", image_size=16, global_batch_size=4, eval_batch_size=4,
                    augment=False)
    messages = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert len(messages) == 1, messages
    assert "5 of 26 image files" in messages[0]
    for count, kind in [(1, "corrupt"), (2, "truncated"), (1, "empty"), (1, "not_an_image")]:
        assert f"{count} {kind}" in messages[0]
    assert data.skipped == {"corrupt": 1, "truncated": 2, "empty": 1, "not_an_image": 1}
    assert data.class_names == ["cats", "dogs"]
    assert (data.num_train, data.num_val) == (12, len(expected))

    colours = []
    for batch in data.val_batches():
        for image, real in zip(batch["image"], batch["mask"]):
            if real:
                pixels = (image.reshape(-1, 3) * STD + MEAN) * 255
                assert pixels.std(axis=0).max() < 2.0  # a uniform image stays uniform
                colours.append(pixels.mean(axis=0))
    assert len(colours) == len(expected)
    for name, colour in expected.items():
        distance = np.abs(np.array(colours) - np.array(colour)).max(axis=1)
        assert distance.min() <= 3, f"{name}: no image decoded to {colour}"

    assert sum(1 for batch in data.train_batches(0) for _ in batch["label"]) == 12


def test_folder_of_class_folders_is_split_deterministically(tmp_path):
    for label, name in enumerate(["a", "b", "c"]):
        for i in range(10):
            _save(tmp_path / name / f"{i:02d}.png", Image.new("RGB", (20, 20), (20 * i, 80 * label, 7)))
    first = load(f"folder:{tmp_path}", image_size=8, global_batch_size=4, eval_batch_size=8,
                 augment=False, val_fraction=0.2)
    assert first.class_names == ["a", "b", "c"]
    assert (first.num_train, first.num_val) == (24, 6)
    assert first.skipped == {}
    val = digests(first.val_batches())
    labels = [int(label) for b in first.val_batches() for label, m in zip(b["label"], b["mask"]) if m]
    assert sorted(labels) == [0, 0, 1, 1, 2, 2]  # 20% of every class

    second = load(f"folder:{tmp_path}", image_size=8, global_batch_size=4, eval_batch_size=8,
                  augment=False, val_fraction=0.2, seed=5)
    assert digests(second.val_batches()) == val  # the split does not depend on the seed
    train = digests(first.train_batches(0))
    assert len(train) == 24 and not set(train) & set(val)


def test_folder_errors_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*PATH/train/CLASS"):
        load(f"folder:{tmp_path / 'nowhere'}")
    _save(tmp_path / "only" / "x.png", Image.new("RGB", (8, 8)))
    with pytest.raises(ValueError, match=r"1 class folder.*\['only'\].*at least two"):
        load(f"folder:{tmp_path}")


# --------------------------------------------------------------------------- TFDS datasets


class TrainOnly(tfds.core.GeneratorBasedBuilder):
    """50 uniform 8 px images of distinct colours, and no validation split."""

    name = "jaxzoo_test_train_only"
    VERSION = tfds.core.Version("1.0.0")
    code_path = shapes.ShapesBuilder.code_path

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 3)),
            "label": tfds.features.ClassLabel(names=["even", "odd"])}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(50):
            yield i, {"image": np.full((8, 8, 3), (5 * i, 250 - 5 * i, 100), np.uint8),
                      "label": i % 2}


def test_tfds_dataset_without_validation_split_holds_out_a_slice(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "tfds_builder",
                        lambda name, data_dir: TrainOnly(data_dir=data_dir))
    kwargs = dict(data_dir=str(tmp_path), image_size=8, global_batch_size=5, eval_batch_size=4,
                  augment=False, val_fraction=0.1)
    data = load("train_only", **kwargs)
    assert data.class_names == ["even", "odd"]
    assert (data.num_train, data.num_val) == (45, 5)
    train, val = digests(data.train_batches(0)), digests(data.val_batches())
    assert len(set(train)) == 45 and len(set(val)) == 5 and not set(train) & set(val)
    kwargs["global_batch_size"] = 10
    shares = [digests(load("train_only", process_index=i, process_count=2, **kwargs).val_batches())
              for i in range(2)]
    assert sorted(shares[0] + shares[1]) == sorted(val)
    assert digests(load("train_only", **kwargs).val_batches()) == val  # the same slice every time


# --------------------------------------------------------------------------- TFDS errors


def test_tfds_download_failure_suggests_offline_datasets(tmp_path, monkeypatch):
    def offline(self, *args, **kwargs):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    # The host answers (the quick reachability check passes); the download itself fails.
    monkeypatch.setattr(tfds_source, "unreachable_download_hosts", lambda urls: None)
    with pytest.raises(RuntimeError) as info:
        load("tf_flowers", data_dir=str(tmp_path))
    message = str(info.value)
    for part in ("'tf_flowers'", "network is unreachable", "folder:PATH", "'shapes'", "data_dir"):
        assert part in message


def test_unknown_dataset_lists_the_choices(tmp_path):
    with pytest.raises(ValueError) as info:
        load("tf_flowerz", data_dir=str(tmp_path))
    message = str(info.value)
    for part in ("'tf_flowerz'", "tf_flowers", "list_builders", "shapes", "folder:PATH"):
        assert part in message
    with pytest.raises(ValueError, match="unknown shapes config 'huge'"):
        load("shapes/huge", data_dir=str(tmp_path))


def test_importing_jaxzoo_does_not_import_tensorflow_and_torchvision_still_loads_after_it():
    code = ("import sys, jaxzoo\n"
            "assert 'tensorflow' not in sys.modules, 'import jaxzoo imported tensorflow'\n"
            "import jaxzoo.data, torchvision\n"  # torchvision after TensorFlow used to crash
            "print('imported')")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0 and "imported" in result.stdout, result.stderr[-2000:]


# --------------------------------------------------------------------------- uint8 batches


def test_uint8_batches_normalized_on_the_device_are_the_float_batches(tfds_dir):
    import jax

    from jaxzoo.data._tf import tf

    # jaxzoo.imagenet.normalize (what the train and eval steps apply to uint8 batches) and the
    # host's normalize give the same numbers for every pixel value; XLA's within a rounding.
    levels = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    np.testing.assert_array_equal(pipeline.normalize(tf.constant(levels)).numpy(),
                                  imagenet.normalize(levels))
    np.testing.assert_allclose(jax.jit(imagenet.normalize)(levels), imagenet.normalize(levels),
                               rtol=1e-6, atol=1e-6)
    # Resampled values become pixels as PIL's resampling ends: rounded half up, clamped.
    np.testing.assert_array_equal(
        pipeline.to_uint8(tf.constant([-3.0, 0.49, 0.5, 1.5, 127.2, 254.5, 255.4, 300.0])),
        [0, 0, 1, 2, 127, 255, 255, 255])

    kwargs = dict(data_dir=tfds_dir, image_size=24, global_batch_size=16, eval_batch_size=40,
                  seed=5)
    floats, pixels = load(**kwargs), load(image_dtype="uint8", **kwargs)
    assert (floats.image_dtype, pixels.image_dtype) == ("float32", "uint8")
    pairs = list(zip(list(floats.train_batches(1))[:4], pixels.train_batches(1))) + list(
        zip(floats.val_batches(), pixels.val_batches(), strict=True))
    assert len(pairs) == 4 + 3
    for ours, theirs in pairs:
        assert theirs["image"].dtype == np.uint8 and theirs["image"].shape == ours["image"].shape
        assert set(theirs) == set(ours)
        np.testing.assert_array_equal(theirs["label"], ours["label"])
        if "mask" in ours:
            np.testing.assert_array_equal(theirs["mask"], ours["mask"])
            assert not theirs["image"][~theirs["mask"]].any()  # padding is zeros
            real = ours["mask"]
        else:
            real = np.ones(len(ours["label"]), bool)
        np.testing.assert_array_equal(imagenet.normalize(theirs["image"][real]),
                                      ours["image"][real])
    with pytest.raises(ValueError, match="image_dtype"):
        load(image_dtype="float16", **kwargs)


# --------------------------------------------------------------------------- JPEG crop windows


def _jpeg(image: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", **kwargs)
    return buffer.getvalue()


def _photo_jpegs() -> dict[str, bytes]:
    """Real photos encoded as cameras and PIL do: chroma 4:2:0, 4:2:2 and 4:4:4, progressive,
    grayscale, and a size that is not a multiple of the 16-pixel blocks."""
    from skimage import data as photos

    jpegs = {}
    for name, photo in [("chelsea", photos.chelsea()), ("coffee", photos.coffee())]:
        jpegs[f"{name} 4:2:0"] = _jpeg(photo, quality=90)
        jpegs[f"{name} 4:2:2"] = _jpeg(photo, quality=75, subsampling=1)
        jpegs[f"{name} 4:4:4"] = _jpeg(photo, quality=95, subsampling=0)
        jpegs[f"{name} progressive"] = _jpeg(photo, quality=85, progressive=True)
        jpegs[f"{name} gray"] = _jpeg(np.asarray(Image.fromarray(photo).convert("L")))
        jpegs[f"{name} 333x217"] = _jpeg(np.asarray(Image.fromarray(photo).resize((333, 217))))
    return jpegs


def test_jpeg_window_decoding_gives_the_full_decodes_pixels(monkeypatch):
    from jaxzoo.data import source
    from jaxzoo.data._tf import tf

    rng = np.random.default_rng(0)
    cases = []
    for name, contents in _photo_jpegs().items():
        whole = tf.io.decode_image(contents, channels=3, expand_animations=False).numpy()
        height, width = whole.shape[:2]
        for i in range(30):
            h, w = rng.integers(1, height + 1), rng.integers(1, width + 1)
            y, x = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
            if i % 2:  # on the 16-pixel block grid, where the decoded region starts
                y, x = y // 16 * 16, x // 16 * 16
            cases.append((name, contents, whole, (y, x, h, w)))

    def decoded(contents, window):
        y, x, h, w = window
        return source.decode_window(contents, lambda shape: (tf.constant([y, x, 0]),
                                                             tf.constant([h, w, -1]))).numpy()

    for name, contents, whole, (y, x, h, w) in cases:
        np.testing.assert_array_equal(decoded(contents, (y, x, h, w)), whole[y:y + h, x:x + w],
                                      err_msg=f"{name}, window {(y, x, h, w)}")

    # Decoded alone, a window's outermost rows and columns can differ from the full decode where
    # chroma is subsampled: what the margin around the window is for.
    monkeypatch.setattr(source, "JPEG_WINDOW_MARGIN", 0)
    differing = set()
    for name, contents, whole, (y, x, h, w) in cases:
        delta = np.abs(decoded(contents, (y, x, h, w)).astype(int)
                       - whole[y:y + h, x:x + w]).max(axis=-1)
        rows, cols = np.nonzero(delta)
        assert np.all((rows == 0) | (rows == h - 1) | (cols == 0) | (cols == w - 1)), name
        if len(rows):
            differing.add(name.split()[1])
    assert differing and differing <= {"4:2:0", "4:2:2", "progressive", "333x217"}, differing


def _photo_folder(root):
    """train/{cat,coffee}: JPEG crops of two photos in several encodings, a PNG and a CMYK JPEG
    (decoded by PIL); val/ one JPEG each."""
    from skimage import data as photos

    rng = np.random.default_rng(1)
    for label, photo in enumerate([photos.chelsea(), photos.coffee()]):
        train = root / "train" / ["cat", "coffee"][label]
        for i, kwargs in enumerate([dict(quality=90), dict(quality=80, subsampling=1),
                                    dict(quality=95, subsampling=0), dict(progressive=True)]):
            y, x = rng.integers(0, 60), rng.integers(0, 80)
            _save(train / f"{i}.jpg", Image.fromarray(photo[y:y + 240, x:x + 320]), **kwargs)
        _save(train / "png.png", Image.fromarray(photo[::2, ::2]))
        _save(train / "cmyk.jpg", Image.fromarray(photo[:200, :300]).convert("CMYK"), quality=90)
        _save(root / "val" / ["cat", "coffee"][label] / "0.jpg", Image.fromarray(photo))


def test_train_batches_decode_only_the_crop_window_of_jpegs_same_pixels_same_resume(
        tmp_path, monkeypatch):
    from jaxzoo.data._tf import tf

    _photo_folder(tmp_path)
    windows = []
    decode_and_crop = tf.image.decode_and_crop_jpeg
    monkeypatch.setattr(tf.image, "decode_and_crop_jpeg", lambda *args, **kwargs: (
        windows.append(1) or decode_and_crop(*args, **kwargs)))
    for image_dtype in ("uint8", "float32"):
        kwargs = dict(image_size=64, global_batch_size=4, seed=2, image_dtype=image_dtype)
        cropped, whole = load(f"folder:{tmp_path}", **kwargs), load(f"folder:{tmp_path}", **kwargs)
        whole.crop_decoding = False
        assert cropped.steps_per_epoch == 3
        windows.clear()
        epoch = list(cropped.train_batches(1))
        assert windows  # the pipeline decodes JPEG windows...
        windows.clear()
        reference = list(whole.train_batches(1))
        assert not windows  # ...and this one whole JPEGs
        for a, b in zip(epoch, reference, strict=True):
            np.testing.assert_array_equal(a["image"], b["image"])  # pixel-identical crops
            np.testing.assert_array_equal(a["label"], b["label"])
        for a, b in zip(epoch[1:], cropped.train_batches(1, start_step=1), strict=True):
            np.testing.assert_array_equal(a["image"], b["image"])  # exact resume
        assert not np.array_equal(epoch[0]["image"], next(cropped.train_batches(2))["image"])


def test_tfds_examples_decode_the_crop_window_of_jpegs_too(tfds_dir):
    from jaxzoo.data._tf import tf

    contents = _photo_jpegs()["coffee 4:2:0"]
    whole = tf.io.decode_jpeg(contents, channels=3).numpy()
    image, label = pipeline._tfds_decode_crop(
        {"image": tf.constant(contents), "label": tf.constant(3, tf.int64)},
        lambda shape: (tf.constant([37, 101, 0]), tf.constant([150, 222, -1])))
    np.testing.assert_array_equal(image.numpy(), whole[37:187, 101:323])
    assert label.dtype == tf.int32 and int(label) == 3

    # shapes is a TFDS dataset of PNGs: decoded whole either way, the same batches.
    kwargs = dict(data_dir=tfds_dir, image_dtype="uint8", seed=7)
    cropped, whole_decoded = load(**kwargs), load(**kwargs)
    whole_decoded.crop_decoding = False
    for a, b in zip(cropped.train_batches(1), whole_decoded.train_batches(1), strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])


def test_epoch_pipelines_run_without_tf_data_autotuning():
    """tf.data's autotuner made deleting a finished epoch's iterator wait for its thread's next
    wake-up: the slow epochs of benchmarks/README.md's input section."""
    from jaxzoo.data._tf import tf

    assert pipeline._batched(tf.data.Dataset.range(8), 4).options().autotune.enabled is False
