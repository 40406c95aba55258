"""What a dataset hands to the pipeline: its examples for this process, before preprocessing."""
import dataclasses
from typing import Callable

from jaxzoo.data._tf import tf


@dataclasses.dataclass
class Source:
    """One dataset as seen by one process.

    ``train(shuffle_seed)`` returns this process's training examples in an order that depends only
    on the seed; ``val()`` returns its validation examples in a fixed order. Examples are dicts of
    still-encoded images; ``decode`` turns one into ``(uint8 image (H, W, 3), int32 label)``.
    ``num_train`` and ``num_val`` count the examples of all processes together.
    """

    class_names: list[str]
    num_train: int
    num_val: int
    train: Callable[[int], tf.data.Dataset]
    val: Callable[[], tf.data.Dataset]
    decode: Callable[[dict], tuple[tf.Tensor, tf.Tensor]]
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)
