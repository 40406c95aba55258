"""How glibc's malloc hands XLA:CPU's per-step buffers back and forth (glibc only).

XLA:CPU allocates a train step's buffers with malloc and frees them when the step ends. By
default glibc serves blocks over its mmap threshold (dynamic, at most 32 MiB) with a fresh
``mmap`` and ``munmap``s them on free: every page of such a block faults when it is first written
and the kernel zeroes it, each step again. Keeping freed memory for reuse avoids that, at a cost
in resident memory that depends on how. The settings (``JAXZOO_MALLOC``; measurements and the
choice of the default: benchmarks/README.md, "Host memory"):

- ``system``: glibc's defaults.
- ``bounded`` (default): blocks up to ``MMAP_THRESHOLD`` come from the heap and stay there for
  reuse (trimmed only past ``TRIM_THRESHOLD`` of free memory at the top), larger ones are
  mapped; at most ``ARENAS`` arenas, so that XLA's and tf.data's threads share them rather than
  each growing its own.
- ``reuse``: one arena, never ``mmap``, never trim: the fewest page faults and the most memory.

This must run before JAX starts its backend (its threads pick their arenas when they first
allocate); ``train.py`` and ``python -m jaxzoo`` call it first.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt() parameters, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
M_ARENA_MAX = -8

MMAP_THRESHOLD = 256 * 2**20
TRIM_THRESHOLD = 512 * 2**20
ARENAS = 2

SETTINGS = {
    "system": (),
    "bounded": ((M_ARENA_MAX, ARENAS), (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                (M_TRIM_THRESHOLD, TRIM_THRESHOLD)),
    # A trim threshold of -1 turns trimming off (man 3 mallopt).
    "reuse": ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1)),
}
DEFAULT = "bounded"


def _mallopt():
    if not sys.platform.startswith("linux"):
        return None
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl)
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


def keep_freed_memory(setting: str | None = None) -> bool:
    """Apply ``setting`` (default ``$JAXZOO_MALLOC``, else ``DEFAULT``). Returns True when
    settings were applied; False for ``system`` or on a platform without glibc (macOS, musl,
    Windows)."""
    setting = setting or os.environ.get("JAXZOO_MALLOC") or DEFAULT
    if setting not in SETTINGS:
        raise ValueError(f"JAXZOO_MALLOC must be one of {', '.join(SETTINGS)}, got {setting!r}")
    mallopt = _mallopt()
    if mallopt is None or not SETTINGS[setting]:
        return False
    # mallopt returns 1 on success.
    return all(mallopt(param, value) == 1 for param, value in SETTINGS[setting])
