"""Files on disk: the harness's cache folder, file hashes (computed once per file version), atomic writes and
verified downloads. The one place that touches bytes on disk for the rest of the harness."""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import pickle
import shutil
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from tqdm import tqdm

from harness.core.errors import HarnessError

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
FULL_WORDS = ("No space left on device", "database or disk is full", "Disk quota exceeded")  # the OS's, SQLite's


def full_disk(err: BaseException) -> bool:
    """Whether ``err`` says a disk is full: errno ENOSPC or EDQUOT, or the OS's or SQLite's (SQLITE_FULL) words for it."""
    return getattr(err, "errno", None) in FULL_ERRNOS or any(w in str(err) for w in FULL_WORDS)


def cache_dir() -> Path:
    """``$DDIM_HARNESS_CACHE``, else ``$XDG_CACHE_HOME/ddim-harness``, else ``~/.cache/ddim-harness``."""
    if os.environ.get("DDIM_HARNESS_CACHE"):
        return Path(os.environ["DDIM_HARNESS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ddim-harness"


# A file changed less than this long ago is hashed without the cache: two writes within one tick of the file
# system's clock (a few ms) can leave the same size and times ("racy" versions, as git calls them).
RACY_NS = 2_000_000_000


def _hash_file(path: str, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=64)
def _digest(path: str, algorithm: str, version: tuple[int, ...]) -> str:
    record = cache_dir() / "digests" / hashlib.sha256(repr((path, algorithm, version)).encode()).hexdigest()
    try:
        known = record.read_text().strip()
        if len(known) == hashlib.new(algorithm).digest_size * 2 and all(c in "0123456789abcdef" for c in known):
            return known
    except OSError:
        pass
    digest = _hash_file(path, algorithm)
    tmp = None
    try:  # best effort: an unwritable cache only means hashing the file again in the next process
        record.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=record.parent, prefix=".digest.", suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            out.write(digest)
        os.replace(tmp, record)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return digest


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read once per file version: cached in this process and in the cache folder
    (``digests/``), keyed by the path, size, modification and change times and inode, so a file rewritten or
    replaced under the same path is hashed again (the change time cannot be set back by a user)."""
    p = Path(path).resolve()
    st = p.stat()
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_NS:
        return _hash_file(str(p), algorithm)
    return _digest(str(p), algorithm, (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))


def file_sha256(path: str | os.PathLike) -> str:
    return file_digest(path, "sha256")


def checksum_problem(path: Path, md5: str | None = None, sha256: str | None = None) -> str | None:
    """None when the file matches the given checksums, else 'expected ..., got ...'."""
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected is not None:
            got = file_digest(path, algorithm)
            if got != expected.lower():
                return f"expected {algorithm} {expected}, got {got}"
    return None


class NotTensors(ValueError):
    """A file ``load_tensors`` refused: it holds objects other than tensors and plain containers, or pickle
    instructions torch's safe loader does not read (protocol 4 frames)."""


def load_tensors(path: str | os.PathLike):
    """``torch.load(weights_only=True)``: tensors and plain containers only, never code. torch's own words are kept
    off the console: its warning about pickle protocols other than 2 (a valid older checkpoint), and, on a refused
    file, its advice to load it with ``weights_only=False`` (which would run the file's code): NotTensors says what
    the file holds instead."""
    import torch  # heavy: only for the callers that read tensors

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            body = str(err).split("Check the documentation", 1)[0]  # torch's advice before, its pointer after
            body = body.split("trusted source.", 1)[-1].split("WeightsUnpickler error:", 1)[-1]
            detail = " ".join(body.split())[:200]
            if detail.startswith("Unsupported operand"):
                raise NotTensors(f"it was pickled with instructions torch's safe loader does not read ({detail}: "
                                 "pickle protocol 4 or later); save it again with torch.save's default protocol") from None
            raise NotTensors(f"it holds objects other than tensors{f' ({detail})' if detail else ''}; refused, "
                             "as loading them could run code") from None


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary name beside ``path`` (same suffix, so writers that pick a format by it still do) to write to;
    renamed to ``path`` when the block ends without error, deleted otherwise: a reader never sees a half-written
    file, and a writer stopped mid-write leaves the previous version in place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def save_atomic(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: an interruption never leaves a partial file,
    and a failed write (a full disk) leaves no temporary file behind."""
    import torch  # lazy: torch takes seconds to import: only when the work needs it

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        try:
            torch.save(obj, tmp)
        except RuntimeError as err:  # torch's writer on a full disk: "unexpected pos ...", "file write failed"
            if "unexpected pos" in str(err) or "write failed" in str(err) or shutil.disk_usage(path.parent).free < 1 << 16:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from err
            raise
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def download(
    url: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    sha256: str | None = None,
    chunk_size: int = 1 << 20,
    timeout: float = 60.0,
    fix: str = "retry; if it keeps failing, download the file yourself and set model.checkpoint.path=/path/to/it",
) -> Path:
    """Download ``url`` (http, https or file) to ``dest`` atomically, once its length and checksums are right;
    HarnessError otherwise (torch.hub's download has no timeout, md5 or length check)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        hashes = {a: hashlib.new(a) for a, v in (("md5", md5), ("sha256", sha256)) if v is not None}
        received = 0
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length is not None else None
                with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name) as bar:
                    while chunk := response.read(chunk_size):
                        out.write(chunk)
                        for h in hashes.values():
                            h.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise HarnessError(f"download of {url} to {dest} failed ({type(exc).__name__}: {exc}); {fix}.") from None
        if total is not None and received != total:
            raise HarnessError(
                f"download of {url} is truncated: got {received} bytes, the server announced {total}; {fix}."
            )
        for algorithm, expected in (("md5", md5), ("sha256", sha256)):
            if expected is not None and hashes[algorithm].hexdigest() != expected.lower():
                raise HarnessError(
                    f"download of {url} has the wrong checksum: expected {algorithm} {expected}, "
                    f"got {hashes[algorithm].hexdigest()} ({received} bytes): the transfer was corrupted or the "
                    f"server now serves a different file; {fix}."
                )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
