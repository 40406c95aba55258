"""Input pipelines: TFDS datasets, ``folder:PATH`` datasets and the built-in ``shapes``.

    from jaxzoo.data import get_datasets
    data = get_datasets("shapes", image_size=64, global_batch_size=32)

Importing this package imports TensorFlow (hidden from GPUs, see ``_tf``); ``import jaxzoo`` does not.
"""
from jaxzoo.data.pipeline import Datasets, get_datasets
from jaxzoo.data.tfds_source import DatasetUnavailable

__all__ = ["DatasetUnavailable", "Datasets", "get_datasets"]
