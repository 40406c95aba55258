"""``folder:PATH`` datasets: your own images in one sub-folder per class.

    PATH/train/CLASS/*.jpg and PATH/val/CLASS/*.jpg     (``validation`` works for ``val`` too)
    PATH/CLASS/*.jpg                                     (split per class by ``val_fraction``)

Class names are the sorted sub-folder names, as in torchvision's ImageFolder. Sub-folders are
walked by ``jaxzoo.walk``: hidden files and folders are left out, and a symlinked folder is
followed only to a folder not walked yet (a link back up, ``red/loop -> ..``, is not followed).
Every file is checked before training: empty, corrupt or truncated files, files that are not
images and images of more than ``max_pixels`` pixels are skipped, and so are class folders left
without training images; one warning counts each kind (``Source.skipped``). The verdicts are
kept in a manifest (``jaxzoo.data.manifest``), so a later start checks only new or changed
files, and several processes split the checking. JPEGs and 8-bit PNGs in RGB or grayscale are
then decoded by TensorFlow; other images (CMYK, 16-bit, BMP, GIF, ...) are converted to RGB with
PIL.
"""
import collections
import concurrent.futures
import contextlib
import gc
import os
import warnings
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, UnidentifiedImageError

from jaxzoo.data import manifest
from jaxzoo.data._tf import tf
from jaxzoo.data.source import Source, Window, crop, decode_window
from jaxzoo.walk import IMAGE_EXTENSIONS, Listing, walk  # noqa: F401  (re-exported)

MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS  # 89.5 million, PIL's decompression-bomb warning
_SPLIT_SEED = 0  # the class-folders-only split does not change with the training seed
_LAYOUT_HELP = ("expected PATH/train/CLASS/*.jpg and PATH/val/CLASS/*.jpg, or PATH/CLASS/*.jpg "
                "(one sub-folder of images per class)")


def _class_folders(root: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(root)
                  if entry.is_dir() and not entry.name.startswith("."))


def _image_files(root: Path, class_names: list[str], ancestors) -> tuple[list[tuple], Listing]:
    """(path, label, size, mtime_ns) of every image file under root/CLASS/, recursively, in
    the order of the sorted folder paths (as ``sorted(os.walk(...))`` gave them), and the walk
    (``jaxzoo.walk``: each real folder once, symlinked ones that lead back not followed)."""
    listing = walk([root / name for name in class_names], ancestors=ancestors, stat=True)
    files = []
    for label, groups in enumerate(listing.files):
        for _, group in sorted(groups):
            files += [(path, label, size, mtime) for path, size, mtime in group]
    return files, listing


def _png_header_and_end(path: str) -> tuple[int, bool]:
    """A PNG's bit depth, and whether the file ends with its IEND chunk (TensorFlow rejects
    a PNG without it; PIL reads one whose image data is complete)."""
    with open(path, "rb") as f:
        header = f.read(25)
        f.seek(max(0, os.path.getsize(path) - 12))
        end = f.read(12)
    return (header[24] if len(header) == 25 else 0), end[4:8] == b"IEND"


def _truncated_or_corrupt(err: OSError) -> str:
    return "truncated" if "truncated" in str(err).lower() else "corrupt"


def inspect(path: str, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[str | None, bool]:
    """Check one file: (why it is skipped or None, whether TensorFlow can decode it as it is).

    Reasons: "empty" (zero bytes), "not_an_image", "corrupt" (undecodable), "truncated" (the
    data stops short), "too_large" (more than ``max_pixels`` pixels, read from the header
    without decoding) and "unreadable" (no permission, or gone)."""
    reason, tf_decodes, _ = inspect_file(path, max_pixels)
    return reason, tf_decodes


def inspect_file(path: str, max_pixels: int = MAX_IMAGE_PIXELS) -> manifest.Verdict:
    """``inspect``, plus the image's width x height (-1 when unknown), which the manifest keeps
    so that another ``max_pixels`` needs no new check."""
    try:
        if os.path.getsize(path) == 0:
            return "empty", False, -1
        image = Image.open(path)
    except UnidentifiedImageError:
        return "not_an_image", False, -1
    except Image.DecompressionBombError:  # PIL's own limit, twice Image.MAX_IMAGE_PIXELS
        return "too_large", False, -1
    except (PermissionError, FileNotFoundError):
        return "unreadable", False, -1
    except OSError as err:  # a header that stops short, or nonsense in it
        return _truncated_or_corrupt(err), False, -1
    with image:
        fmt, mode = image.format, image.mode
        pixels = image.width * image.height
        if pixels > max_pixels:
            return "too_large", False, pixels
        if fmt == "JPEG" and mode in ("RGB", "L") and _tf_decodes_jpeg(path):
            return None, True, pixels
        try:
            if fmt == "JPEG":  # decode at 1/8 scale: reads every byte, a fraction of the work
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
        except OSError as err:
            return _truncated_or_corrupt(err), False, pixels
        except (SyntaxError, ValueError, EOFError):
            return "corrupt", False, pixels
    if fmt == "PNG":
        depth, complete = _png_header_and_end(path)
        return None, mode in ("RGB", "RGBA", "L", "LA", "P") and depth == 8 and complete, pixels
    # PIL decodes it: other formats and modes, and JPEGs TensorFlow rejects
    return None, False, pixels


def _tf_decodes_jpeg(path: str) -> bool:
    """Whether TensorFlow decodes the JPEG (at 1/8 scale: every byte is read, little is
    computed). It rejects some damaged files that PIL reads; those go through PIL."""
    try:
        tf.io.decode_jpeg(tf.io.read_file(path), channels=3, ratio=8)
        return True
    except tf.errors.OpError:
        return False


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL image as uint8 RGB (H, W, 3); 16-bit and 32-bit grayscale are scaled to 8 bits."""
    if image.mode.startswith("I;16") or image.mode == "I":
        gray = np.asarray(image).astype(np.float32) / 257.0
    elif image.mode == "F":
        gray = np.asarray(image)
    else:
        return np.asarray(image.convert("RGB"))
    gray = np.clip(np.round(gray), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def _pil_decode(path) -> np.ndarray:
    with Image.open(path.numpy().decode()) as image:
        return to_rgb(image)


def decode(example):
    def with_tf():
        return tf.io.decode_image(tf.io.read_file(example["path"]), channels=3,
                                  expand_animations=False)

    def with_pil():
        return tf.py_function(_pil_decode, [example["path"]], tf.uint8)

    image = tf.cond(example["tf_decodes"], with_tf, with_pil)
    image.set_shape([None, None, 3])
    return image, example["label"]


def decode_crop(example, window: Window):
    """``decode`` cropped to ``window``: of a JPEG TensorFlow reads, only that window is decoded."""
    def with_tf():
        return decode_window(tf.io.read_file(example["path"]), window)

    def with_pil():
        image = tf.py_function(_pil_decode, [example["path"]], tf.uint8)
        image.set_shape([None, None, 3])
        return crop(image, window)

    image = tf.cond(example["tf_decodes"], with_tf, with_pil)
    image.set_shape([None, None, 3])
    return image, example["label"]


def _split_per_class(files, val_fraction):
    """Hold out ``val_fraction`` of each class, the same files every time."""
    rng = np.random.default_rng(_SPLIT_SEED)
    by_class = collections.defaultdict(list)
    for file in files:  # (path, label, ...)
        by_class[file[1]].append(file)
    train, val = [], []
    for label in sorted(by_class):
        members = by_class[label]
        order = rng.permutation(len(members))
        num_val = int(round(len(members) * val_fraction))
        val += [members[i] for i in sorted(order[:num_val].tolist())]
        train += [members[i] for i in sorted(order[num_val:].tolist())]
    return train, val


# The libraries whose verdicts the manifest keeps: another version checks every file again.
CHECKER = f"pillow {PIL.__version__}, tensorflow {tf.__version__}"

# What the last ``folder_source`` call of this process did (``manifest.CheckStats``: files
# listed, verdicts reused, files checked here, verdicts received from other processes).
last_check: manifest.CheckStats | None = None


def _inspect_all(paths: list[str], max_pixels: int) -> list[manifest.Verdict]:
    with warnings.catch_warnings():  # too_large is reported by the caller, once
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with concurrent.futures.ThreadPoolExecutor(
                max_workers=min(16, (os.cpu_count() or 1) * 2)) as pool:
            return list(pool.map(lambda path: inspect_file(path, max_pixels), paths))


def _check(root: Path, files, max_pixels: int, process_index: int, process_count: int):
    """Drop the files that cannot be read, with the verdicts the manifest remembers and the
    others checked (a share per process); returns ((path, label, tf_decodes) of each file, None
    for those skipped; skip counts by reason; an example path per reason)."""
    global last_check
    paths, labels, sizes, mtimes = zip(*files) if files else ((), (), (), ())
    reasons, tf_decodes, last_check = manifest.check_folder(
        os.fspath(root), paths, sizes, mtimes, lambda paths: _inspect_all(paths, max_pixels),
        checker=CHECKER, max_pixels=max_pixels, process_index=process_index,
        process_count=process_count)
    good = list(zip(paths, labels, tf_decodes))
    skipped, examples = collections.Counter(), {}
    for i, reason in enumerate(reasons):
        if reason is not None:
            good[i] = None
            skipped[reason] += 1
            examples.setdefault(reason, paths[i])
    return good, skipped, examples


def _drop_classes(class_names, train, val, keep):
    """Only the classes in ``keep``, relabelled 0, 1, ... in their order."""
    new_label = {old: new for new, old in enumerate(sorted(keep))}
    return ([class_names[i] for i in sorted(keep)],
            [(p, new_label[label], d) for p, label, d in train if label in new_label],
            [(p, new_label[label], d) for p, label, d in val if label in new_label])


def _dataset(files) -> tf.data.Dataset:
    paths, labels, tf_decodes = zip(*files) if files else ((), (), ())
    return tf.data.Dataset.from_tensor_slices({
        "path": tf.constant(paths, tf.string), "label": tf.constant(labels, tf.int32),
        "tf_decodes": tf.constant(tf_decodes, tf.bool)})


@contextlib.contextmanager
def _cycle_collector_paused():
    """Python's cycle collector off while the file lists are built: with a million files it
    scans the growing heap of (path, label, ...) tuples again and again, a third of a start
    (measured on 1M files), and those tuples hold no cycles to collect."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def folder_source(path: str, *, val_fraction: float, process_index: int, process_count: int,
                  max_pixels: int = MAX_IMAGE_PIXELS) -> Source:
    with _cycle_collector_paused():
        return _folder_source(path, val_fraction=val_fraction, process_index=process_index,
                              process_count=process_count, max_pixels=max_pixels)


def _folder_source(path: str, *, val_fraction: float, process_index: int, process_count: int,
                   max_pixels: int) -> Source:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"folder dataset {str(root)!r} does not exist or is not a "
                                f"folder; {_LAYOUT_HELP}")
    val_dir = next((root / n for n in ("val", "validation") if (root / n).is_dir()), None)
    listings = []
    if (root / "train").is_dir():
        class_names = _class_folders(root / "train")
        files, listing = _image_files(root / "train", class_names, [root, root / "train"])
        listings.append(listing)
        if val_dir is None:
            train, val = _split_per_class(files, val_fraction)
        else:
            extra = sorted(set(_class_folders(val_dir)) - set(class_names))
            if extra:
                raise ValueError(f"{val_dir} has class folders {extra} that {root / 'train'} "
                                 f"lacks; give both the same class folders")
            val, listing = _image_files(val_dir, class_names, [root, val_dir])
            train = files
            listings.append(listing)
    else:
        class_names = _class_folders(root)
        files, listing = _image_files(root, class_names, [root])
        listings.append(listing)
        train, val = _split_per_class(files, val_fraction)
    where = root / "train" if (root / "train").is_dir() else root
    if len(class_names) < 2:
        raise ValueError(f"found {len(class_names)} class folder(s) {class_names} in {where}; "
                         f"a classifier needs at least two: put each class's images in its own "
                         f"sub-folder, e.g. {where}/cats/*.jpg and {where}/dogs/*.jpg "
                         f"({_LAYOUT_HELP})")

    good, skipped, examples = _check(root, train + val, max_pixels, process_index, process_count)
    good_train, good_val = good[:len(train)], good[len(train):]
    train = [g for g in good_train if g is not None]
    val = [g for g in good_val if g is not None]
    num_good = len(train) + len(val)
    loops = Listing([], [link for listing in listings for link in listing.loops],
                    [link for listing in listings for link in listing.repeats])
    for kind, links in [("symlink_loop", loops.loops), ("symlink_repeat", loops.repeats)]:
        if links:
            skipped[kind] = len(links)
    # A class without training images cannot be learned: leave it out of the classifier.
    empty = sorted(set(range(len(class_names))) - {label for _, label, _ in train})
    if empty:
        skipped["empty_class"] = len(empty)
        examples["empty_class"] = ", ".join(str(where / class_names[i]) for i in empty)
        class_names, train, val = _drop_classes(
            class_names, train, val, set(range(len(class_names))) - set(empty))
    if skipped:
        bad = {reason: n for reason, n in skipped.items()
               if reason != "empty_class" and not reason.startswith("symlink_")}
        parts = []
        if bad:
            parts.append(f"{sum(bad.values())} of {num_good + sum(bad.values())} image files: "
                         + ", ".join(f"{n} {reason} (e.g. {examples[reason]})"
                                     for reason, n in sorted(bad.items())))
        if empty:
            parts.append(f"{len(empty)} class folder(s) without readable training images, left "
                         f"out of the classes: {examples['empty_class']}")
        if loops.not_followed_message():
            parts.append(loops.not_followed_message())
        warnings.warn(f"skipped in {root}: {'; '.join(parts)}", stacklevel=4)
    if len(class_names) < 2 or not train or not val:
        raise ValueError(f"{root} has {len(train)} readable training and {len(val)} validation "
                         f"images in {len(class_names)} class(es) with training images; it needs "
                         f"both, in at least two classes ({_LAYOUT_HELP})")

    # Each process reads every process_count-th file: of a fixed shuffle for training (so every
    # process sees every class), of the sorted list for validation.
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(train))
    my_train = [train[i] for i in order[process_index::process_count].tolist()]
    my_val = val[process_index::process_count]

    def train_ds(shuffle_seed: int) -> tf.data.Dataset:
        return _dataset(my_train).shuffle(len(my_train), seed=shuffle_seed)

    def train_all(shuffle_seed: int) -> tf.data.Dataset:  # every process's, one order
        return _dataset(train).shuffle(len(train), seed=shuffle_seed)

    return Source(class_names=class_names, num_train=len(train), num_val=len(val),
                  train=train_ds, val=lambda: _dataset(my_val), decode=decode,
                  skipped=dict(skipped), decode_crop=decode_crop, train_all=train_all)
