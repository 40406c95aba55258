"""The folder check's memory: a verdict per image file, so that a later start checks only the files
that are new or changed, and processes of one job split the checking between them.

A ``folder:PATH`` dataset checks every image before training (``folder.inspect``: PIL reads the
header, TensorFlow or PIL decodes the file). The verdicts are kept in a manifest keyed by each
file's path under PATH, its size and its mtime in nanoseconds; a file whose size or mtime changed
is checked again. The manifest lives in

    $JAXZOO_FOLDER_CACHE/<hash of PATH>/manifest.npz     (default: ~/.cache/jaxzoo/folders/...)

with ``root.txt`` beside it naming PATH. Deleting the folder only costs one full check. It is
written atomically (a temporary file, then ``os.replace``), so a killed process leaves the
previous manifest or the new one, never half of one.

With several processes (``process_count > 1``) every process lists the folder and finds the same
unchecked files; process ``i`` checks every ``process_count``-th of them from the ``i``-th on and
the verdicts are exchanged: through ``jax.experimental.multihost_utils.process_allgather`` when
``jax.distributed`` is initialized for that many processes, otherwise through partial files in
the cache folder, which the processes must then share (``JAXZOO_FOLDER_CACHE`` on a shared file
system). Every process ends with every verdict, so all agree on the files, labels and order.
"""
import dataclasses
import hashlib
import json
import os
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from jaxzoo import environment

CACHE_ENV = "JAXZOO_FOLDER_CACHE"  # read by environment.folder_cache
MANIFEST = "manifest.npz"
_FORMAT = 1
# Why a file is skipped, as stored (0: it is good). "unreadable" (no permission, a broken link)
# is never stored: permissions change without touching size or mtime, so it is checked again.
REASONS = (None, "empty", "not_an_image", "corrupt", "truncated", "too_large", "unreadable")
_CODE = {reason: code for code, reason in enumerate(REASONS)}
_PARTIALS_KEPT_S = 3600  # other rounds' partial files older than this are removed

# (reason or None, whether TensorFlow decodes it, width x height or -1 when unknown)
Verdict = tuple[str | None, bool, int]


@dataclasses.dataclass
class CheckStats:
    """What one process did for one folder: files listed, verdicts taken from the manifest,
    files this process checked (read and decoded), verdicts received from the other processes,
    and how they were exchanged ("", "files" or "allgather")."""

    listed: int = 0
    cached: int = 0
    checked: int = 0
    received: int = 0
    exchange: str = ""
    cache_dir: str = ""


def cache_root() -> Path:
    """Where the manifests of all folders live: ``$JAXZOO_FOLDER_CACHE``, else
    ``$XDG_CACHE_HOME/jaxzoo/folders`` (``~/.cache/jaxzoo/folders``). Read at every call."""
    return Path(environment.folder_cache())


def cache_dir(root) -> Path:
    """The cache folder of the dataset folder ``root``: a hash of its absolute, resolved path."""
    resolved = os.path.realpath(os.path.abspath(os.fspath(root)))
    return cache_root() / hashlib.sha256(os.fsencode(resolved)).hexdigest()[:16]


def _pack(texts: list[str]) -> np.ndarray:
    return np.frombuffer("\0".join(texts).encode("utf-8", "surrogateescape"), np.uint8)


def _unpack(array: np.ndarray) -> list[str]:
    text = array.tobytes().decode("utf-8", "surrogateescape")
    return text.split("\0") if text else []


def _atomic_savez(path: Path, **arrays) -> None:
    """``np.savez`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


_COLUMNS = {"size": np.int64, "mtime_ns": np.int64, "reason": np.int8, "tf_decodes": bool,
            "pixels": np.int64}


def _load_manifest(path: Path, checker: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """The stored relative paths and their columns (``_COLUMNS``); none when there is no
    manifest, when it was written by another checker version, or when it cannot be read."""
    empty = [], {name: np.zeros(0, dtype) for name, dtype in _COLUMNS.items()}
    try:
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(stored["meta"].tobytes())
            if meta.get("format") != _FORMAT or meta.get("checker") != checker:
                return empty
            rels = _unpack(stored["paths"])
            columns = {name: stored[name].astype(dtype) for name, dtype in _COLUMNS.items()}
    except FileNotFoundError:
        return empty
    except (OSError, ValueError, KeyError, AttributeError, EOFError, zipfile.BadZipFile) as err:
        # a damaged manifest costs a full check, not the run
        warnings.warn(f"ignoring the folder check's manifest {path} ({type(err).__name__}: "
                      f"{err}); every file is checked again", stacklevel=4)
        return empty
    if any(len(column) != len(rels) for column in columns.values()):
        return empty
    return rels, columns


def _save_manifest(path: Path, rels: list[str], columns: dict[str, np.ndarray], root: str,
                   checker: str) -> None:
    meta = json.dumps({"format": _FORMAT, "checker": checker, "root": root}).encode()
    _atomic_savez(path, meta=np.frombuffer(meta, np.uint8), paths=_pack(rels),
                  **{name: np.asarray(columns[name], dtype) for name, dtype in _COLUMNS.items()})
    root_txt = path.parent / "root.txt"
    if not root_txt.exists():
        root_txt.write_text(root + "\n", encoding="utf-8", errors="surrogateescape")


def _encode(verdicts: list[Verdict]) -> np.ndarray:
    return np.asarray([(_CODE[r], int(d), p) for r, d, p in verdicts], np.int64).reshape(-1, 3)


def _exchange_files(cache: Path, token: str, mine: np.ndarray, process_index: int,
                    process_count: int, timeout: float) -> list[np.ndarray]:
    """Every process's share of verdicts, through partial files in the shared ``cache``."""
    def name(index):
        return cache / f"partial-{token}-{index}of{process_count}.npz"

    now = time.time()
    for old in cache.glob("partial-*.npz"):  # earlier rounds' files, long since merged
        try:
            if token not in old.name and now - old.stat().st_mtime > _PARTIALS_KEPT_S:
                old.unlink()
        except OSError:
            pass
    _atomic_savez(name(process_index), verdicts=mine)
    shares, deadline = {process_index: mine}, time.monotonic() + timeout
    while len(shares) < process_count:
        for index in set(range(process_count)) - set(shares):
            try:
                with np.load(name(index), allow_pickle=False) as stored:
                    shares[index] = stored["verdicts"]
            except FileNotFoundError:
                pass
        if len(shares) < process_count:
            if time.monotonic() > deadline:
                missing = sorted(set(range(process_count)) - set(shares))
                raise TimeoutError(
                    f"process {process_index} of {process_count} waited {timeout:.0f} s for "
                    f"the folder check of process(es) {missing} in {cache}; the processes must "
                    f"share that folder (set {CACHE_ENV} to a folder on a file system all of "
                    f"them see) and list the same files")
            time.sleep(0.1)
    return [shares[i] for i in range(process_count)]


def _exchange_allgather(mine: np.ndarray, share_size: int) -> list[np.ndarray]:
    """Every process's share of verdicts, gathered over ``jax.distributed``. JAX arrays are
    32-bit unless x64 is on, so the pixel count travels as two 31-bit halves."""
    from jax.experimental import multihost_utils

    padded = np.full((share_size, 4), -1, np.int32)  # reason -1: padding
    padded[:len(mine), :2] = mine[:, :2]
    padded[:len(mine), 2] = mine[:, 2] >> 31
    padded[:len(mine), 3] = mine[:, 2] & (2**31 - 1)
    gathered = np.asarray(multihost_utils.process_allgather(padded)).astype(np.int64)
    shares = []
    for share in gathered:
        share = share[share[:, 0] >= 0]
        shares.append(np.stack([share[:, 0], share[:, 1], (share[:, 2] << 31) | share[:, 3]], 1))
    return shares


def _agreed_by_all(token: str) -> bool:
    """Whether every process of ``jax.distributed`` found the same unchecked files."""
    from jax.experimental import multihost_utils

    mine = np.frombuffer(bytes.fromhex(token[:16]), np.int32)
    return bool(np.all(np.asarray(multihost_utils.process_allgather(mine)) == mine))


def _token(max_pixels, checker, rels, sizes, mtimes, unchecked: np.ndarray) -> str:
    digest = hashlib.sha256(json.dumps([max_pixels, checker]).encode())
    for i in unchecked.tolist():  # fields end with NUL, which no path holds
        digest.update(f"{rels[i]}\0{sizes[i]}\0{mtimes[i]}\0".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:24]


def _distributed(process_count: int) -> bool:
    import jax

    return jax.distributed.is_initialized() and jax.process_count() == process_count


def check_folder(root: str, paths: Sequence[str], sizes: Sequence[int], mtimes: Sequence[int],
                 inspect: Callable[[list[str]], list[Verdict]], *, checker: str,
                 max_pixels: int, process_index: int = 0, process_count: int = 1,
                 timeout: float = 1800.0
                 ) -> tuple[list[str | None], list[bool], CheckStats]:
    """Why each file of ``paths`` (all under ``root``) is skipped (None: it is good) and whether
    TensorFlow decodes it, from the manifest where its key (path, size, mtime_ns) is unchanged,
    else from ``inspect(paths)``, split between the processes; the manifest is then updated.
    A size of -1 marks a file that could not be stat'ed ("unreadable"). ``checker`` names the
    versions of the libraries that decide (a manifest of other versions is not used)."""
    cache = cache_dir(root)
    stats = CheckStats(listed=len(paths), cache_dir=str(cache))
    prefix = os.path.join(os.fspath(root), "")
    if not all(path.startswith(prefix) for path in paths[:1] + paths[-1:]):
        raise ValueError(f"check_folder: the paths must lie under {root}")
    rels = [path[len(prefix):] for path in paths]
    size = np.array(sizes, np.int64).reshape(-1)
    mtime = np.array(mtimes, np.int64).reshape(-1)

    # The stored entry of each file (a start on an unchanged folder lists the same paths in the
    # same order: no lookups then).
    stored_rels, stored = _load_manifest(cache / MANIFEST, checker)
    if stored_rels == rels:
        where = np.arange(len(rels))
    else:
        index = {rel: i for i, rel in enumerate(stored_rels)}
        where = np.fromiter((index.get(rel, -1) for rel in rels), np.int64, len(rels))
    found = where >= 0
    entry = {name: column[np.maximum(where, 0)] if len(column) else np.zeros(len(rels), dtype)
             for (name, column), dtype in zip(stored.items(), _COLUMNS.values())}
    same = found & (entry["size"] == size) & (entry["mtime_ns"] == mtime) & (size >= 0)
    # What each file keeps in the manifest, and its verdict today (under max_pixels).
    keep = {"size": size, "mtime_ns": mtime, "reason": np.where(same, entry["reason"], -1),
            "tf_decodes": same & entry["tf_decodes"], "pixels": np.where(same, entry["pixels"], -1)}
    too_large, pixels = _CODE["too_large"], keep["pixels"]
    # A file skipped as too large under a smaller limit than today's has not been decoded yet.
    unchecked = np.flatnonzero((size >= 0) & ((keep["reason"] < 0) | (
        (keep["reason"] == too_large) & (pixels >= 0) & (pixels <= max_pixels))))
    stats.cached = int(np.count_nonzero(size >= 0)) - len(unchecked)

    shared = process_count > 1
    # The processes' shared name for this round of checks: the files left to check.
    token = _token(max_pixels, checker, rels, sizes, mtimes, unchecked) if shared else ""
    if shared and _distributed(process_count) and not _agreed_by_all(token):
        # The hosts' caches differ (each host has its own): every process checks all it lacks,
        # which gives the same verdicts, only later.
        shared = False
    if len(unchecked):
        share = unchecked[process_index::process_count] if shared else unchecked
        mine = _encode(inspect([paths[i] for i in share.tolist()]))
        stats.checked = len(share)
        shares = [mine]
        if shared:
            if _distributed(process_count):
                stats.exchange = "allgather"
                shares = _exchange_allgather(mine, -(-len(unchecked) // process_count))
            else:
                stats.exchange = "files"
                shares = _exchange_files(cache, token, mine, process_index, process_count,
                                         timeout)
            stats.received = len(unchecked) - len(share)
        for index, verdicts_of_share in enumerate(shares):
            positions = unchecked[index::process_count] if shared else unchecked
            keep["reason"][positions] = verdicts_of_share[:, 0]
            keep["tf_decodes"][positions] = verdicts_of_share[:, 1].astype(bool)
            keep["pixels"][positions] = verdicts_of_share[:, 2]

    reason = np.where(size < 0, _CODE["unreadable"], keep["reason"])
    # Good files over today's limit are skipped, and stay good in the manifest.
    over = (reason == _CODE[None]) & (keep["pixels"] > max_pixels)
    reason = np.where(over, too_large, reason)
    reasons = [REASONS[code] for code in reason.tolist()]
    tf_decodes = (keep["tf_decodes"] & ~over).tolist()

    # Stored: every file with a verdict but "unreadable" (permissions change, mtimes do not).
    stored_now = np.flatnonzero((keep["reason"] >= 0) & (keep["reason"] != _CODE["unreadable"]))
    new_rels = [rels[i] for i in stored_now]
    if len(unchecked) or new_rels != stored_rels:
        try:
            _save_manifest(cache / MANIFEST, new_rels,
                           {name: column[stored_now] for name, column in keep.items()},
                           os.fspath(root), checker)
        except OSError as err:
            warnings.warn(f"could not write the folder check's manifest in {cache} ({err}); "
                          f"the next start checks the files again (set {CACHE_ENV} to a "
                          f"writable folder)", stacklevel=4)
    return reasons, tf_decodes, stats
