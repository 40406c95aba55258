"""TFDS datasets (``tf_flowers``, ``cifar10``, ``imagenette``, ... and the built-in ``shapes``)."""
import difflib
import socket
import threading
import urllib.parse
import urllib.request

import tensorflow_datasets as tfds

from jaxzoo import environment
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


def _connect(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection to ``host:port`` opens within ``timeout`` seconds (the DNS
    lookup included, which a socket timeout does not bound), else why not."""
    outcome = {}

    def target():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome["error"] = None
        except OSError as e:
            outcome["error"] = str(e) or type(e).__name__

    thread = threading.Thread(target=target, daemon=True, name="jaxzoo-reach")
    thread.start()
    thread.join(timeout)
    return outcome.get("error", f"no answer within {timeout:g} s")


def unreachable_download_hosts(urls, timeout: float | None = None) -> str | None:
    """Why none of the hosts ``urls`` download from can be reached (through the proxy when one
    is set), or None when one can (or there is nothing to check). ``timeout``: seconds to look
    up and connect to each host before TFDS is asked to download (TFDS itself retries an
    unreachable host for minutes); default ``$JAXZOO_CONNECT_TIMEOUT``, else 10."""
    timeout = environment.connect_timeout() if timeout is None else timeout
    proxies = urllib.request.getproxies()
    targets = {}
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None  # gs://, ftp:// or local files: leave them to TFDS
        proxy = proxies.get(parts.scheme)
        if proxy and not urllib.request.proxy_bypass(parts.hostname):
            proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
            target = (proxy_parts.hostname, proxy_parts.port or 8080, f"the proxy {proxy}")
        else:
            target = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                      parts.hostname)
        targets[target[:2]] = target[2]
    reasons = []
    for (host, port), label in sorted(targets.items()):
        error = _connect(host, port, timeout)
        if error is None:
            return None
        reasons.append(f"{label}: {error}")
    return "; ".join(reasons) or None


def _unavailable(name: str, builder, reason: str) -> DatasetUnavailable:
    return DatasetUnavailable(
        f"could not download and prepare the TFDS dataset {name!r} into {builder.data_dir} "
        f"({reason}). Without network, train on your own images with "
        f"dataset='folder:PATH' or on the built-in dataset='shapes'; if the data was prepared "
        f"on another machine, copy it and point --config.data_dir at that TFDS data dir.")


def prepare(builder: tfds.core.DatasetBuilder, name: str) -> None:
    """Download and prepare ``builder`` unless its data dir already holds it. When none of its
    download hosts can be reached, fail within seconds instead of after TFDS's retries."""
    if builder.is_prepared():
        return
    if not getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
        try:
            urls = sorted(builder.url_infos or ())
        except Exception:  # builders without a checksums file
            urls = []
        reason = unreachable_download_hosts(urls) if urls else None
        if reason:
            raise _unavailable(name, builder, f"cannot reach the download host: {reason}")
    try:
        builder.download_and_prepare()
    except ImportError as err:
        raise DatasetUnavailable(f"TFDS could not prepare {name!r}: {err}; install the missing "
                                 f"package (pip install {err.name or 'it'})") from err
    except Exception as err:
        raise _unavailable(name, builder, f"{type(err).__name__}: {err}") from err


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

    def shuffled(split, shuffle_seed: int) -> tf.data.Dataset:
        read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed, try_autocache=False)
        ds = builder.as_dataset(split=split, shuffle_files=True, read_config=read_config,
                                decoders=skip_decoding)
        return ds.shuffle(SHUFFLE_BUFFER, seed=shuffle_seed)

    def train(shuffle_seed: int) -> tf.data.Dataset:
        return shuffled(process_split(train_split), shuffle_seed)

    def train_all(shuffle_seed: int) -> tf.data.Dataset:
        return shuffled(train_split, shuffle_seed)

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
        train=train, val=val, decode=decode, train_all=train_all)
