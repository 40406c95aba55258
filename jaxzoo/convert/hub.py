"""Weight files in torch's own cache, downloaded there when missing, as ``torch.hub`` does.

``$TORCH_HOME/hub/checkpoints/`` (``$TORCH_HOME`` defaults to ``$XDG_CACHE_HOME/torch``, that to
``~/.cache/torch``) is where torchvision keeps the files it downloads, so a machine that has used
torchvision's weights downloads nothing. A download shows a tqdm progress bar, checks the sha256
prefix in the file name (torch.hub's ``check_hash``), and is written to a temporary file that is
renamed only when it is complete and checked: a failed or killed download never leaves a file that
looks finished. Found without importing torch.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid

from jaxzoo import environment

HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")  # torch.hub.HASH_REGEX
CHUNK = 128 * 1024


class WeightsUnavailable(FileNotFoundError):
    """The weights file is not in torch's cache and could not be downloaded."""


class WeightsHashMismatch(ValueError):
    """A downloaded file's sha256 does not start with the prefix in its name."""


def checkpoints_dir() -> str:
    """``torch.hub.get_dir()/checkpoints``: where torchvision keeps downloaded weights."""
    return os.path.join(environment.torch_home(), "hub", "checkpoints")


def hash_prefix(file_name: str) -> str | None:
    """The sha256 prefix torch.hub reads from a file name (``resnet50-11ad3fa6.pth``)."""
    match = HASH_REGEX.search(file_name)
    return match.group(1) if match else None


def _advice(url: str, path: str) -> str:
    del url  # named by every message before the advice
    return (f"Download the file on a machine with network and put it at {path} (torch's cache, "
            f"where torchvision looks for it too), or use a local file instead: "
            f"--config.init_from=FILE for training (a torchvision .pth, or a directory from "
            f"`python -m jaxzoo convert`), --weights FILE for predict.")


def cached_file(url: str, file_name: str | None = None) -> str:
    """The path the file of ``url`` has (or would have) in torch's cache."""
    return os.path.join(checkpoints_dir(),
                        file_name or os.path.basename(urllib.parse.urlparse(url).path))


def fetch(url: str, file_name: str | None = None, *, progress: bool = True,
          check_hash: bool = True, what: str = "the weights") -> str:
    """The local path of ``url``'s file: torch's cache if it is there (no request is made),
    else downloaded into it. Raises ``WeightsUnavailable`` (offline, HTTP error, interrupted) or
    ``WeightsHashMismatch`` with what to do; nothing is left at the cached path then."""
    path = cached_file(url, file_name)
    if os.path.isfile(path):
        return path
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError as e:
        raise WeightsUnavailable(f"cannot create torch's cache folder {os.path.dirname(path)} "
                                 f"({e}). Set TORCH_HOME to a writable folder. "
                                 + _advice(url, path)) from None
    print(f'Downloading: "{url}" to {path}', file=sys.stderr, flush=True)
    download(url, path, hash_prefix(os.path.basename(path)) if check_hash else None,
             progress=progress, what=what)
    return path


def _open(url: str, timeout: float):
    """``urlopen`` with a deadline for reaching the host and getting the headers. The socket
    timeout bounds connect and each read, but not a DNS lookup, so the call runs in a thread
    that is abandoned when the deadline passes."""
    request = urllib.request.Request(url, headers={"User-Agent": "jaxzoo"})
    result: dict = {}

    def target():
        try:
            # The socket's own timeout a little later than the deadline below, so that the
            # deadline is what a silent host runs into.
            result["response"] = urllib.request.urlopen(request, timeout=timeout + 1)
        except BaseException as e:  # handed to the caller
            result["error"] = e

    thread = threading.Thread(target=target, daemon=True, name="jaxzoo-download")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in result:
        raise result["error"]
    return result["response"]


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def download(url: str, path: str, expected_prefix: str | None = None, *, progress: bool = True,
             what: str = "the weights") -> None:
    """Download ``url`` to ``path`` through ``path.<random>.partial``, renamed when complete and
    its sha256 starts with ``expected_prefix``; on any failure the partial file is removed."""
    from tqdm.auto import tqdm

    partial = f"{path}.{uuid.uuid4().hex}.partial"
    # Seconds to reach the host and get the response headers (DNS, connect, TLS), and the
    # longest wait for the next chunk of the body: offline, the first fails in seconds.
    connect_timeout, read_timeout = environment.connect_timeout(), environment.read_timeout()
    try:
        try:
            response = _open(url, connect_timeout)
        except Exception as e:  # URLError, OSError, timeout, http.client.HTTPException
            raise WeightsUnavailable(
                f"could not download {what} from {url}: {_reason(e)} (is this machine offline?). "
                + _advice(url, path)) from None
        with response:
            try:  # a stalled transfer fails after read_timeout, not the connect deadline
                response.fp.raw._sock.settimeout(read_timeout)
            except AttributeError:
                pass
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            sha256, received = hashlib.sha256(), 0
            with open(partial, "wb") as f, tqdm(
                    total=total, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=os.path.basename(path), disable=not progress, file=sys.stderr) as bar:
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except Exception as e:  # OSError, timeout, http.client.IncompleteRead
                        raise WeightsUnavailable(
                            f"the download of {what} from {url} broke off after {received} "
                            f"bytes ({_reason(e)}); nothing was saved. Try again. "
                            + _advice(url, path)) from None
                    if not chunk:
                        break
                    f.write(chunk)
                    sha256.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:
            raise WeightsUnavailable(
                f"the download of {what} from {url} stopped after {received} of {total} bytes; "
                f"nothing was saved. Try again. " + _advice(url, path))
        digest = sha256.hexdigest()
        if expected_prefix is not None and not digest.startswith(expected_prefix):
            raise WeightsHashMismatch(
                f"the file downloaded from {url} is not the published one: its sha256 is "
                f"{digest}, but its name says it starts with {expected_prefix} (a corrupted "
                f"download, or a proxy that answered with something else); nothing was saved. "
                f"Try again, or download it yourself, check its sha256, and put it at {path}; "
                f"or train from a local file instead: --config.init_from=FILE.")
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
