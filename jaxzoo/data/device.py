"""Batches on their way to the accelerator while the step before them runs.

    put = functools.partial(jaxzoo.train.step.shard_batch, mesh)
    for step, epoch, batch in prefetch_to_device(batches, put):   # batch: on the devices
        state, metrics = train_step(state, batch)

JAX copies host arrays to the devices asynchronously: ``jax.device_put`` and
``jax.make_array_from_process_local_data`` (``shard_batch``) return once the copy is under way.
Putting the next batch before the current step is dispatched lets its copy overlap that step,
instead of the step waiting for its own input's copy.
"""
from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def prefetch_to_device(items: Iterable, put: Callable[[Any], Any], size: int = 2) -> Iterator:
    """``items`` in order, each batch replaced by ``put(batch)``, which is called ``size - 1``
    items ahead of the one yielded (``size=1``: when it is yielded, no overlap).

    An item is a batch, or a tuple whose last element is the batch (the training loop's
    ``(step, epoch, batch)``); the other elements pass through. ``items`` is read lazily, at most
    ``size - 1`` items ahead, so at most ``size`` batches are on the devices at once. An
    exception raised by ``items`` or ``put`` reaches the caller after the items before it, where
    it would without prefetching.
    """
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")

    def put_item(item):
        if isinstance(item, tuple):
            return (*item[:-1], put(item[-1]))
        return put(item)

    iterator, queue, error = iter(items), collections.deque(), None
    while True:
        while error is None and len(queue) < size:
            try:
                queue.append(put_item(next(iterator)))
            except StopIteration:
                break
            except Exception as e:  # raised below, after the items before it
                error = e
        if not queue:
            if error is not None:
                raise error
            return
        yield queue.popleft()
