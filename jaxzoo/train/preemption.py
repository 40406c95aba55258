"""Stopping cleanly: SIGTERM (what schedulers send before pre-empting a job) or SIGINT (Ctrl-C)
during training asks the loop to save a checkpoint at the current step and return. A second
signal of the same kind acts as it would without jaxzoo (SIGTERM kills, SIGINT raises
KeyboardInterrupt): the checkpoints already written stay intact either way."""
from __future__ import annotations

import signal
import threading

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxzoo.train.step import AXIS

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """A context that turns SIGTERM and SIGINT into a request to stop.

    ``poll()`` says whether any process received one. With several processes every process
    must call it at the same step and read the answers in the same order: they all then stop at
    the same step, which the collective checkpoint save needs."""

    def __init__(self, mesh: jax.sharding.Mesh):
        self.signal: str | None = None  # the name of the first signal received
        self._mesh = mesh
        self._previous = {}
        self._any = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signals reach it only
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name
        previous = self._previous.get(signum)
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)

    def poll(self):
        """Whether some process was signalled, as a value to read with ``bool()``. With one
        process it is known at once; with several it is a device computation (the max of every
        process's flag), so dispatching it does not wait, and reading it later costs little."""
        if jax.process_count() == 1:
            return self.signal is not None
        if self._any is None:
            self._any = jax.jit(jnp.max, out_shardings=NamedSharding(self._mesh, P()))
        local = np.full(len(self._mesh.local_devices), self.signal is not None, np.int32)
        flags = jax.make_array_from_process_local_data(
            NamedSharding(self._mesh, P(AXIS)), local)
        return self._any(flags)
