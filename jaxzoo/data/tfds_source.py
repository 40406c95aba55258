"""TFDS datasets (``tf_flowers``, ``cifar10``, ``imagenette``, ... and the built-in ``shapes``)."""
import difflib

import tensorflow_datasets as tfds

from jaxzoo.data._tf import tf
from jaxzoo.data import shapes
from jaxzoo.data.source import Source

SHUFFLE_BUFFER = 16_384  # examples; TFDS also shuffles the order of files each epoch
JAXZOO_DATASETS = ("shapes", "shapes/CONFIG", "folder:PATH")


class DatasetUnavailable(RuntimeError):
    """A registered TFDS dataset that could not be downloaded or prepared here."""


def shapes_builder(spec: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
    """The builder of ``shapes`` or ``shapes/CONFIG`` (e.g. ``shapes/large``)."""
    config = spec.partition("/")[2] or shapes.ShapesBuilder.DEFAULT_CONFIG_NAME
    known = [c.name for c in shapes.ShapesBuilder.BUILDER_CONFIGS]
    if config not in known:
        raise ValueError(f"unknown shapes config {config!r}; known: {known} "
                         f"(use dataset='shapes' for the default, or e.g. 'shapes/{known[1]}')")
    return shapes.ShapesBuilder(config=config, data_dir=data_dir)


def tfds_builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        known = sorted(set(tfds.list_builders(with_community_datasets=False)))  # may repeat names
        close = difflib.get_close_matches(name.partition("/")[0], known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown dataset {name!r}.{hint} A dataset is a TFDS name (see "
            f"tensorflow_datasets.list_builders() for the {len(known)} names), or one of jaxzoo's: "
            f"{', '.join(JAXZOO_DATASETS)}.") from None
    except AssertionError as err:  # e.g. a version TFDS does not have: "cifar10:9.9.9"
        raise ValueError(f"cannot load the TFDS dataset {name!r}: {err}") from None


def prepare(builder: tfds.core.DatasetBuilder, name: str) -> None:
    """Download and prepare ``builder`` unless its data dir already holds it."""
    if builder.is_prepared():
        return
    try:
        builder.download_and_prepare()
    except ImportError as err:
        raise DatasetUnavailable(f"TFDS could not prepare {name!r}: {err}; install the missing "
                                 f"package (pip install {err.name or 'it'})") from err
    except Exception as err:
        raise DatasetUnavailable(
            f"could not download and prepare the TFDS dataset {name!r} into {builder.data_dir} "
            f"({type(err).__name__}: {err}). Without network, train on your own images with "
            f"dataset='folder:PATH' or on the built-in dataset='shapes'; if the data was prepared "
            f"on another machine, copy it and point --config.data_dir at that TFDS data dir."
        ) from err


def tfds_source(builder: tfds.core.DatasetBuilder, val_fraction: float,
                process_index: int, process_count: int) -> Source:
    """This process's share of a prepared TFDS dataset with ``image`` and ``label`` features."""
    info = builder.info
    features = info.features
    if "image" not in features or "label" not in features:
        raise ValueError(f"{info.name} has features {list(features)}; jaxzoo reads datasets with "
                         f"an 'image' and a 'label' feature")

    if "validation" in info.splits:
        train_split, val_split = "train", "validation"
    else:  # hold out the end of the training split, the same examples every time
        total = info.splits["train"].num_examples
        num_val = int(round(total * val_fraction))
        if not 0 < num_val < total:
            raise ValueError(f"val_fraction={val_fraction} of {total} training examples leaves no "
                             f"validation or no training examples; choose a value in (0, 1)")
        train_split, val_split = f"train[:{total - num_val}]", f"train[{total - num_val}:]"

    def process_split(split):
        return tfds.even_splits(split, n=process_count)[process_index]

    skip_decoding = {"image": tfds.decode.SkipDecoding()}

    def train(shuffle_seed: int) -> tf.data.Dataset:
        read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed, try_autocache=False)
        ds = builder.as_dataset(split=process_split(train_split), shuffle_files=True,
                                read_config=read_config, decoders=skip_decoding)
        return ds.shuffle(SHUFFLE_BUFFER, seed=shuffle_seed)

    def val() -> tf.data.Dataset:
        return builder.as_dataset(split=process_split(val_split), shuffle_files=False,
                                  read_config=tfds.ReadConfig(try_autocache=False),
                                  decoders=skip_decoding)

    def decode(example):
        image = tf.io.decode_image(example["image"], channels=3, expand_animations=False)
        return image, tf.cast(example["label"], tf.int32)

    label = features["label"]
    class_names = list(label.names) if hasattr(label, "names") else None
    if not class_names:
        raise ValueError(f"{info.name}'s 'label' feature is not a tfds.features.ClassLabel; "
                         f"jaxzoo needs the class names")
    return Source(
        class_names=class_names,
        num_train=info.splits[train_split].num_examples,
        num_val=info.splits[val_split].num_examples,
        train=train, val=val, decode=decode)
