"""Reading on when an image goes bad after it was checked: a replacement, not a dead run.

A folder's files are checked before training (``folder.inspect``), yet a file can be deleted,
truncated or overwritten while a run goes on, or between the check and the read. In tf.data a
failed decode ends the iterator, and the run with it; ``Dataset.ignore_errors`` alone drops the
element, which shortens that process's epoch by a batch: the processes of a job then disagree on
the number of steps and wait for each other for ever. ``map_keeping_count`` drops what fails and
ends the epoch with as many replacements, so every process yields the same number of batches.
Each replacement is reported with a warning (TensorFlow's own log names the error).

Elements after a dropped one move up by one place within that epoch of that process; the
examples themselves, their augmentation (drawn from their position in the epoch before the map)
and every other epoch are unchanged.
"""
import warnings

from jaxzoo.data._tf import tf


def _warn_replaced(what) -> bool:  # a py_function: its output is used, so that it runs
    warnings.warn(f"an image of this epoch could not be read (changed or removed since the "
                  f"folder was checked); {what.numpy().decode()} takes its place, so that the "
                  f"epoch keeps its number of steps", UserWarning, stacklevel=2)
    return True


def map_keeping_count(ds: tf.data.Dataset, fn, count, replacement: tf.data.Dataset | None = None,
                      what: str = "a repeat of the epoch's first example"
                      ) -> tf.data.Dataset:
    """``ds.map(fn)`` (in parallel, in order) cut or filled to ``count`` elements: elements whose
    ``fn`` fails are dropped and the end is filled with ``replacement``'s one element (by default
    the first element that maps), each with a warning naming ``what`` replaces the image. A
    negative ``count`` (unknown) only drops."""
    mapped = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors(log_warning=True)
    if count < 0:  # tf.data.UNKNOWN_CARDINALITY: only dropped, the caller pads
        return mapped
    replacement = (mapped if replacement is None else replacement).take(1).cache()

    def warned(element):
        done = tf.py_function(_warn_replaced, [tf.constant(what)], tf.bool)
        with tf.control_dependencies([done]):
            return tf.nest.map_structure(tf.identity, element)

    return mapped.concatenate(replacement.map(warned).repeat()).take(count)
