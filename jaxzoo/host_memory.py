"""How glibc's malloc hands XLA:CPU's per-step buffers back and forth (glibc only).

XLA:CPU allocates a train step's buffers with malloc and frees them when the step ends. By
default glibc serves blocks over its mmap threshold (dynamic, at most 32 MiB) with a fresh
``mmap`` and ``munmap``s them on free: every page of such a block faults when it is first written
and the kernel zeroes it, each step again. Keeping freed memory for reuse avoids that, at a cost
in resident memory. ``JAXZOO_MALLOC`` chooses (measurements: benchmarks/README.md, "Host memory"):

- ``system`` (default): glibc's defaults, the least memory;
- ``reuse``: one arena, never ``mmap``, never trim: the fewest page faults, a faster step on
  XLA:CPU, and about twice the resident memory of a training run.

This must run before JAX starts its backend (its threads pick their arenas when they first
allocate); ``train.py`` and ``python -m jaxzoo`` call it first.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

from jaxzoo import environment

# mallopt() parameters, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8

SETTINGS = {
    "system": (),
    # A trim threshold of -1 turns trimming off (man 3 mallopt).
    "reuse": ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1)),
}
DEFAULT = "system"


def keep_freed_memory(setting: str | None = None) -> bool:
    """Apply ``setting`` (default ``$JAXZOO_MALLOC``, else ``DEFAULT``). Returns True when
    malloc's settings were changed; False for ``system`` or on a platform without glibc (macOS,
    musl, Windows)."""
    setting = setting or environment.malloc() or DEFAULT
    if setting not in SETTINGS:
        raise ValueError(f"JAXZOO_MALLOC must be one of {', '.join(SETTINGS)}, got {setting!r}")
    if not SETTINGS[setting] or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success.
    return all(mallopt(param, value) == 1 for param, value in SETTINGS[setting])
