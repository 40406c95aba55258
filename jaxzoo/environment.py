"""The environment variables jaxzoo reads, one function each, with its default.

Each is read when it is used, never when a module is imported: setting a variable in a running
process (a notebook, a test) takes effect at the next call. README.md, "Environment variables",
lists them in one table. This module imports nothing of jaxzoo, so every layer may use it.
"""
from __future__ import annotations

import os


def _cache_home() -> str:
    """``$XDG_CACHE_HOME`` (unset or empty: ``~/.cache``, as the XDG spec says): jaxzoo's
    caches live there unless their own variable says otherwise."""
    return os.getenv("XDG_CACHE_HOME") or "~/.cache"


def _seconds(name: str, default: float) -> float:
    text = os.getenv(name)
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {text!r}; unset it for the "
                         f"default ({default:g} s)") from None
    if seconds <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {text!r}")
    return seconds


def _count(name: str) -> int | None:
    text = os.getenv(name)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None


def weights_cache() -> str:
    """``JAXZOO_WEIGHTS_CACHE``: where converted torchvision weights are kept; default
    ``$XDG_CACHE_HOME/jaxzoo/weights``, else ``~/.cache/jaxzoo/weights``."""
    return os.path.expanduser(os.getenv("JAXZOO_WEIGHTS_CACHE")
                              or os.path.join(_cache_home(), "jaxzoo", "weights"))


def torch_home() -> str:
    """``TORCH_HOME``, torch's own: torch's cache, whose ``hub/checkpoints`` holds torchvision's
    weight files; default ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch`` (torch's
    ``_get_torch_home()``)."""
    return os.path.expanduser(os.getenv(
        "TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")))


def folder_cache() -> str:
    """``JAXZOO_FOLDER_CACHE``: where the manifests of folder datasets are kept
    (``jaxzoo.data.manifest``); default ``$XDG_CACHE_HOME/jaxzoo/folders``, else
    ``~/.cache/jaxzoo/folders``. Processes that share a folder dataset must share this too."""
    return os.path.expanduser(os.getenv("JAXZOO_FOLDER_CACHE")
                              or os.path.join(_cache_home(), "jaxzoo", "folders"))


def compilation_cache(setting: str = "") -> str | None:
    """``JAXZOO_COMPILATION_CACHE``: the folder of ``train.py``'s persistent XLA compilation
    cache; default ``~/.cache/jaxzoo/xla``. ``setting`` (``config.compilation_cache_dir``), when
    not empty, wins over the variable. ``off`` or ``none`` (either) turns the cache off: None."""
    path = (setting or os.getenv("JAXZOO_COMPILATION_CACHE")
            or os.path.join(os.path.expanduser("~"), ".cache", "jaxzoo", "xla"))
    return None if path.lower() in ("off", "none") else path


def connect_timeout() -> float:
    """``JAXZOO_CONNECT_TIMEOUT``: seconds to reach a download host and get its response
    headers (weights, TFDS datasets); default 10. Offline, a download fails in seconds."""
    return _seconds("JAXZOO_CONNECT_TIMEOUT", 10.0)


def read_timeout() -> float:
    """``JAXZOO_READ_TIMEOUT``: the longest wait, in seconds, for the next chunk of a weights
    download; default 60."""
    return _seconds("JAXZOO_READ_TIMEOUT", 60.0)


def lowering() -> str | None:
    """``JAXZOO_LOWERING``: ``xla`` or ``cpu`` overrides the lowering chosen for the devices
    (``jaxzoo.runtime.lowering_for``), for debugging and measurement; default unset (None)."""
    return os.getenv("JAXZOO_LOWERING") or None


def malloc() -> str | None:
    """``JAXZOO_MALLOC``: ``system`` or ``reuse``, how glibc's malloc keeps freed memory
    (``jaxzoo.host_memory``); default unset (None), which is ``system``: glibc's own settings."""
    return os.getenv("JAXZOO_MALLOC") or None


def coordinator() -> tuple[str | None, int | None, int | None]:
    """``JAX_COORDINATOR_ADDRESS`` (host:port of process 0), ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID``: the multi-process run ``train.py`` starts with
    ``jax.distributed.initialize``; each None when unset (JAX then asks the cluster)."""
    return (os.getenv("JAX_COORDINATOR_ADDRESS") or None, _count("JAX_NUM_PROCESSES"),
            _count("JAX_PROCESS_ID"))


def quiet_tensorflow() -> None:
    """Set ``TF_CPP_MIN_LOG_LEVEL=2`` (TensorFlow's C++ warnings off) unless it is set: the
    programs call it before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
