"""What a dataset hands to the pipeline: its examples for this process, before preprocessing."""
import dataclasses
from typing import Callable

from jaxzoo.data._tf import tf

# Pixels decoded beyond each side of a JPEG crop window. libjpeg's chroma upsampling treats the
# edge of the decoded region as the image's edge, so the outermost row and column of a window
# decoded alone can differ from the full decode (4:2:0 and 4:2:2 JPEGs); with one more pixel
# around it, the window's own pixels are the full decode's. Two leave room for the upsampler
# reading a neighbouring chroma sample, which lies up to two pixels away.
JPEG_WINDOW_MARGIN = 2

# ``window(shape) -> (begin, size)``: the crop of an image of ``shape`` (height, width,
# channels) as ``tf.slice`` takes it, begin (y, x, 0) and size (height, width, -1).
Window = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


@dataclasses.dataclass
class Source:
    """One dataset as seen by one process.

    ``train(shuffle_seed)`` returns this process's training examples in an order that depends only
    on the seed; ``val()`` returns its validation examples in a fixed order. Examples are dicts of
    still-encoded images; ``decode`` turns one into ``(uint8 image (H, W, 3), int32 label)``.
    ``decode_crop(example, window)``, where a source has it, returns the same image cropped to
    ``window``, decoding only that window of a JPEG (``decode_window``); without it the pipeline
    decodes whole images and crops them. ``num_train`` and ``num_val`` count the examples of all
    processes together. ``train_all(shuffle_seed)``, where a source has it, returns the training
    examples of every process, in an order that depends only on the seed (the same in every
    process): repeated augmentation (``ra_reps``) spreads an example's copies over processes.
    """

    class_names: list[str]
    num_train: int
    num_val: int
    train: Callable[[int], tf.data.Dataset]
    val: Callable[[], tf.data.Dataset]
    decode: Callable[[dict], tuple[tf.Tensor, tf.Tensor]]
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)
    decode_crop: Callable[[dict, Window], tuple[tf.Tensor, tf.Tensor]] | None = None
    train_all: Callable[[int], tf.data.Dataset] | None = None


def crop(image: tf.Tensor, window: Window) -> tf.Tensor:
    """``image`` (H, W, C) cropped to ``window(its shape)``, C kept in the static shape."""
    begin, size = window(tf.shape(image))
    cropped = tf.slice(image, begin, size)
    cropped.set_shape([None, None, image.shape[-1]])
    return cropped


def decode_window(contents: tf.Tensor, window: Window) -> tf.Tensor:
    """The uint8 RGB crop ``window`` of an encoded image (a scalar string tensor).

    A JPEG's window is sampled from its header's shape (``extract_jpeg_shape``, no decoding) and
    only that window is decoded (``decode_and_crop_jpeg``): the same pixels as decoding the whole
    image and cropping it, for a fraction of the work. Other formats are decoded whole, then
    cropped."""
    def jpeg():
        shape = tf.image.extract_jpeg_shape(contents)
        begin, size = window(shape)
        height, width = shape[0], shape[1]
        top = tf.maximum(begin[0] - JPEG_WINDOW_MARGIN, 0)
        left = tf.maximum(begin[1] - JPEG_WINDOW_MARGIN, 0)
        bottom = tf.minimum(begin[0] + size[0] + JPEG_WINDOW_MARGIN, height)
        right = tf.minimum(begin[1] + size[1] + JPEG_WINDOW_MARGIN, width)
        decoded = tf.image.decode_and_crop_jpeg(
            contents, tf.stack([top, left, bottom - top, right - left]), channels=3)
        return tf.slice(decoded, tf.stack([begin[0] - top, begin[1] - left, 0]),
                        tf.stack([size[0], size[1], 3]))

    def other():
        image = tf.io.decode_image(contents, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return crop(image, window)

    image = tf.cond(tf.io.is_jpeg(contents), jpeg, other)
    image.set_shape([None, None, 3])
    return image
