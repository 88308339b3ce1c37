"""The cache folder every run on the machine shares, and writes that stay whole under kills, races and full disks.

The cache (``$MULTIDRAFT_CACHE`` or ``~/.cache/multidraft``) holds the assembled
and converted model files (``models/``), the planner's measurements
(``plans/``) and the demo's results (``demo/``).  Every writer follows the same
rules:

* **Atomic**: a file or folder is written under a temporary name beside its
  final one (``.NAME.*.tmp``), flushed to disk, then renamed onto it with
  ``os.replace``.  Readers see the old entry or the new one, never half of one.
  An exception (Ctrl-C included) removes the temporary; a kill can leave one,
  which the next builder of that entry removes.
* **Locked**: an entry is built under an exclusive ``fcntl.flock`` on
  ``NAME.lock`` and looked up again once the lock is held, so two processes that
  both miss it build it once, and both use the one result.  The lock goes with
  its process, however that ends.
* **Checksummed**: a JSON entry is an object whose ``sha256`` field is the
  hash of the canonical JSON (sorted keys, no spaces) of its other fields.  One
  that does not parse, carries no checksum or does not match it is discarded
  with a one-line warning and built again, never trusted.
* **Out of space**: a write that fails for lack of space raises
  :class:`CacheWriteError` naming the path and the free space, after removing
  its temporary, so no partial entry is left.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "CacheWriteError",
    "cache_dir",
    "cached_entry",
    "entry_bytes",
    "fsync_directory",
    "locked",
    "parse_entry",
    "replace_atomically",
    "replace_folder_atomically",
    "require_free_space",
    "write_entry",
]

log = logging.getLogger(__name__)

_OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT)
_CHECKSUM_KEY = "sha256"


class CacheWriteError(OSError):
    """A cache or results file could not be written (the disk is full); nothing partial was left."""


def cache_dir() -> Path:
    """Where assembled GGUF files, converted folders and plans go: ``$MULTIDRAFT_CACHE`` or ~/.cache/multidraft."""
    root = os.environ.get("MULTIDRAFT_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "multidraft"


def _gigabytes(count: int) -> str:
    return f"{count / 1e9:.2f} GB"


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def _out_of_space(error: BaseException) -> bool:
    """Whether ``error`` reports a full disk or quota: an ``OSError`` or a library error quoting the OS error."""
    if isinstance(error, OSError) and error.errno in _OUT_OF_SPACE:
        return True
    return any(f"(os error {code})" in str(error) for code in _OUT_OF_SPACE)


def _space_error(path: Path) -> CacheWriteError:
    free = _free_bytes(path.parent)
    return CacheWriteError(
        errno.ENOSPC,
        f"cannot write {path}: no space left on the device ({_gigabytes(free)} free in {path.parent}); "
        "nothing partial was kept -- free some space and run again",
    )


def require_free_space(folder: Path, needed: int, what: str) -> None:
    """:class:`CacheWriteError` before a long write when ``folder``'s disk has less than ``needed`` bytes free."""
    folder.mkdir(parents=True, exist_ok=True)
    free = _free_bytes(folder)
    if free < needed:
        raise CacheWriteError(
            errno.ENOSPC,
            f"{what} needs about {_gigabytes(needed)} free in {folder}, but {_gigabytes(free)} are free; "
            "free some space (or set MULTIDRAFT_CACHE to another disk) and run again",
        )


def fsync_directory(path: Path) -> None:
    """Make a new or renamed directory entry durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


@contextlib.contextmanager
def replace_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` is untouched; a
    full disk becomes :class:`CacheWriteError`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=".tmp")
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except Exception as error:
        if _out_of_space(error):
            raise _space_error(path) from error
        raise
    finally:
        temporary.unlink(missing_ok=True)
    fsync_directory(path.parent)


@contextlib.contextmanager
def replace_folder_atomically(path: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success its files are fsynced and it replaces ``path``.

    An existing ``path`` is first renamed aside and removed after the swap, so
    ``path`` is missing for an instant but never half-written.  On an exception
    the temporary folder is removed; a full disk becomes :class:`CacheWriteError`.
    Call it holding the entry's lock (:func:`locked`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=".tmp"))
    try:
        yield temporary
        for file in sorted(temporary.rglob("*")):
            if file.is_file():
                with open(file, "rb+") as handle:
                    os.fsync(handle.fileno())
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=".tmp"))
            os.replace(path, old)
            os.replace(temporary, path)
            shutil.rmtree(old)
        else:
            os.replace(temporary, path)
    except Exception as error:
        if _out_of_space(error):
            raise _space_error(path) from error
        raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    fsync_directory(path.parent)


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporaries a killed writer of ``path`` left (only safe while holding the entry's lock).

    ``NAME.tmpPID`` is the name earlier versions gave a converted folder while writing it.
    """
    stale_names = (f"{_temporary_prefix(path)}*.tmp", f"{path.name}.tmp[0-9]*")
    for stale in (found for pattern in stale_names for found in path.parent.glob(pattern)):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the cache entry ``path`` (the file ``NAME.lock`` beside it).

    When another process holds it, a one-line note says that this one waits
    for it to finish ``what``.  Stale temporaries of ``path`` are removed once
    the lock is held.  Lock files stay in place (removing one would race with a
    process about to lock it); they are empty.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("waiting for another multidraft process to finish %s (lock %s)", what, lock_path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        _remove_stale_temporaries(path)
        yield
    finally:
        os.close(fd)  # releases the lock


# -- checksummed JSON entries --------------------------------------------------------------------


def _canonical(data) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def _checksum(data: dict) -> str:
    return hashlib.sha256(_canonical(data)).hexdigest()


def parse_entry(path: Path) -> tuple[dict | None, str | None]:
    """``(data, None)`` for a sound entry, ``(None, None)`` when missing, ``(None, problem)`` when damaged."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    try:
        entry = json.loads(raw)
    except ValueError:
        return None, "it does not parse as JSON"
    if not isinstance(entry, dict) or not isinstance(entry.get(_CHECKSUM_KEY), str):
        return None, "it carries no checksum"
    checksum = entry.pop(_CHECKSUM_KEY)
    if _checksum(entry) != checksum:
        return None, "its content does not match its checksum"
    return entry, None


def entry_bytes(data: dict) -> bytes:
    """The file content of a checksummed cache entry holding ``data`` (a JSON object without a ``sha256`` field)."""
    if _CHECKSUM_KEY in data:
        raise ValueError(f"cache entry data cannot have a {_CHECKSUM_KEY!r} field")
    return (json.dumps({**data, _CHECKSUM_KEY: _checksum(data)}, indent=1) + "\n").encode()


def _write_entry_locked(path: Path, data: dict) -> None:
    with replace_atomically(path) as temporary:
        temporary.write_bytes(entry_bytes(data))


def write_entry(path: Path, data: dict) -> None:
    """Store ``data`` (a JSON-serialisable dict) as the checksummed cache entry ``path``, atomically and under
    its lock."""
    with locked(path, f"writing {path.name}"):
        _write_entry_locked(path, data)


def cached_entry(path: Path, what: str, build: Callable[[], dict]) -> dict:
    """The data of the cache entry ``path``, built by ``build()`` under the entry's lock when missing or damaged.

    A damaged entry is discarded with a one-line warning.  The data is returned
    as it reads back from JSON, whether built here or found, so every process
    works from the same value.
    """
    data, _ = parse_entry(path)
    if data is not None:
        return data
    with locked(path, what):
        data, problem = parse_entry(path)  # another process may have built it while this one waited
        if data is not None:
            return data
        if problem is not None:
            log.warning("discarding the damaged cache file %s (%s); %s again", path, problem, what)
        built = json.loads(json.dumps(build()))
        _write_entry_locked(path, built)
        return built
