"""Files on disk: the one atomic write path, file hashes and ``PathLike``.

Every file the package writes goes through :func:`write_atomic` (or one of its helpers): the
bytes go to a temporary file in the destination folder, are flushed and ``os.fsync``-ed, their
size is checked, and only then is the temporary file renamed over the destination with
``os.replace``. On any exception the temporary file is removed and the destination is left as it
was, so a reader sees the old file or the complete new one, never half a file. A failed write
raises :class:`WriteError` (an ``OSError``) whose message is one line naming the destination and
the reason ("no space left on device", "read-only file system", ...).

Both or neither: inside :func:`deferred_outputs` the renames of the named destinations (a
command's output and its report) wait until :meth:`DeferredOutputs.commit`; if anything fails
first, their temporary files are removed and no destination changes.

Core layer: imports nothing from the package but :mod:`.progress`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Union

import numpy as np

from .progress import CancelToken, Progress, no_progress

PathLike = Union[str, "os.PathLike[str]"]

_CHUNK = 1 << 20


def write_json_atomic(path: str, payload: dict) -> None:
    """Write ``payload`` as indented JSON through a temporary file and a rename."""
    write_text_atomic(path, json.dumps(json_safe(payload), indent=2) + "\n")


def json_safe(value):
    """Numpy scalars/arrays to Python, non-finite floats to None, recursively."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# Errors -----------------------------------------------------------------------------------------
class WriteError(OSError):
    """Writing ``path`` failed; nothing was left there. ``str()`` is one line: the path and the
    reason (the ``errno`` of the underlying error is kept, e.g. ``errno.ENOSPC``)."""

    def __init__(self, path: PathLike, reason: str, code: int | None = None) -> None:
        super().__init__(code if code is not None else errno.EIO, reason, str(path))
        self.path = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: cannot write the file ({self.reason}); nothing was written there"


def _write_error(target: Path, error: BaseException) -> WriteError:
    """The :class:`WriteError` for ``error`` raised while writing ``target``."""
    if isinstance(error, WriteError):
        return error
    code = getattr(error, "errno", None)
    if code:
        reason = os.strerror(code).lower()
    else:
        text = str(error).strip().splitlines()
        reason = text[0] if text else type(error).__name__
    if code is None and _disk_full(target):
        code, reason = errno.ENOSPC, f"no space left on device: {reason}"
    return WriteError(target, reason, code)


def _disk_full(target: Path) -> bool:
    try:
        stats = os.statvfs(target.parent if str(target.parent) else ".")
    except (OSError, AttributeError):
        return False
    return stats.f_bavail == 0


# Both or neither --------------------------------------------------------------------------------
class DeferredOutputs:
    """Destinations whose final rename waits for :meth:`commit` (see :func:`deferred_outputs`)."""

    def __init__(self, targets: Iterable[PathLike]) -> None:
        self.targets = {_key(t) for t in targets}
        self.pending: list[tuple[Path, Path]] = []

    def takes(self, target: Path) -> bool:
        return _key(target) in self.targets

    def commit(self) -> None:
        """Rename every pending temporary file over its destination (in the order written)."""
        pending, self.pending = self.pending, []
        for i, (temp, target) in enumerate(pending):
            try:
                _replace(temp, target)
            except OSError as error:
                for rest, _ in pending[i:]:
                    _remove_quietly(rest)
                raise _write_error(target, error) from None

    def discard(self) -> None:
        """Remove every pending temporary file; no destination changes."""
        pending, self.pending = self.pending, []
        for temp, _ in pending:
            _remove_quietly(temp)


_DEFERRED: list[DeferredOutputs] = []


def _key(path: PathLike) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


@contextmanager
def deferred_outputs(targets: Iterable[PathLike | None]) -> Iterator[DeferredOutputs]:
    """Within the block, atomic writes to ``targets`` (None entries ignored) are complete on
    disk under their temporary names but renamed into place only by ``commit()``; leaving the
    block without committing (an exception, a cancel) removes them. For "write the output and
    its report, both or neither"."""
    group = DeferredOutputs(t for t in targets if t)
    _DEFERRED.append(group)
    try:
        yield group
    finally:
        _DEFERRED.remove(group)
        group.discard()


def _finish(temp: Path, target: Path) -> None:
    """Rename ``temp`` to ``target`` now, or later when ``target`` is deferred."""
    for group in _DEFERRED:
        if group.takes(target):
            group.pending.append((temp, target))
            return
    _replace(temp, target)


# Atomic writes ----------------------------------------------------------------------------------
def temporary_path(target: PathLike, suffix: str = "") -> Path:
    """A fresh hidden name in ``target``'s folder for writing ``target`` (``suffix`` kept at the
    end, so writers that pick the format from the extension, e.g. ``.nii.gz``, still see it)."""
    target = Path(target)
    stem = target.name[: -len(suffix)] if suffix and target.name.endswith(suffix) else target.name
    return target.with_name(f".{stem}-{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp{suffix}")


def write_atomic(path: PathLike, write: Callable[[Path], None], *, suffix: str = "", min_size: int = 1) -> Path:
    """Call ``write(temp_path)``, then fsync the file, check it holds at least ``min_size`` bytes
    and rename it to ``path``; for writers that need a path (SimpleITK, ``torch.save``, zip).

    Args:
        path: the destination file; its folder must exist.
        write: writes the complete file at the path it is given.
        suffix: extension the temporary name ends with (the writer may pick its format from it).
        min_size: the smallest size, in bytes, a complete file can have.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        WriteError: (an OSError, one line naming ``path`` and the reason) the write failed with an
            OSError or left a file smaller than ``min_size`` (a full disk can make a writer
            "succeed" with an empty file); no temporary file is left, ``path`` untouched.
        Exception: whatever else ``write`` raised, after the same clean-up.
    """
    target = Path(path)
    with _temporary_beside(target, suffix) as temp:
        write(temp)
        size = fsync_file(temp)
        if size < min_size:
            raise OSError(f"writing left {size} bytes, expected at least {min_size}")
        _finish(temp, target)
    return target


@contextmanager
def _temporary_beside(target: Path, suffix: str) -> Iterator[Path]:
    """A temporary path beside ``target`` for the block to write and rename; on an OSError the
    temporary file is removed and a :class:`WriteError` naming ``target`` is raised, on any other
    exception it is removed and the exception goes on."""
    temp = temporary_path(target, suffix)
    try:
        yield temp
    except OSError as error:
        _remove_quietly(temp)
        raise _write_error(target, error) from None
    except BaseException:
        _remove_quietly(temp)
        raise


def write_stream_atomic(path: PathLike, write: Callable[[BinaryIO], object], *, suffix: str = "") -> Path:
    """Call ``write(stream)`` with a binary stream open on a temporary file beside ``path``, then
    flush, fsync, check that the file holds every byte written and rename it to ``path``.

    Raises:
        WriteError: (an OSError, one line naming ``path`` and the reason) the write failed or
            the file on disk is shorter than what was written; no temporary file is left and
            ``path`` is untouched.
    """
    target = Path(path)
    with _temporary_beside(target, suffix) as temp:
        with open(temp, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
            written = stream.tell()
        size = temp.stat().st_size
        if size != written:
            raise OSError(f"wrote {written} bytes but the file holds {size}")
        _finish(temp, target)
    return target


def write_bytes_atomic(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`write_stream_atomic`)."""
    return write_stream_atomic(path, lambda stream: stream.write(data))


def write_text_atomic(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`write_stream_atomic`)."""
    return write_bytes_atomic(path, text.encode(encoding))


def fsync_file(path: PathLike) -> int:
    """``os.fsync`` the file at ``path`` (its bytes reach the disk); its size in bytes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def _replace(temp: Path, target: Path) -> None:
    os.replace(temp, target)
    if os.name == "posix":  # make the rename itself durable (best effort)
        try:
            fd = os.open(target.parent if str(target.parent) else ".", os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        pass


# Hashes -----------------------------------------------------------------------------------------
def read_chunks(stream: BinaryIO, cancel: CancelToken | None = None, size: int = _CHUNK) -> Iterator[bytes]:
    """The bytes of ``stream`` in chunks of ``size`` bytes (1 MiB) up to its end; ``cancel`` is
    checked before each chunk is handed out."""
    while chunk := stream.read(size):
        if cancel is not None:
            cancel.raise_if_cancelled()
        yield chunk


def file_digests(
    path: PathLike,
    *,
    md5: bool = False,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
    stage: str = "hash",
) -> tuple[str, str | None]:
    """SHA-256 (and MD5 if asked) of a file as lower-case hex; progress in bytes, cancel between chunks."""
    path = Path(path)
    total = path.stat().st_size
    sha = hashlib.sha256()
    md = hashlib.md5(usedforsecurity=False) if md5 else None
    done = 0
    with path.open("rb") as handle:
        for chunk in read_chunks(handle, cancel):
            sha.update(chunk)
            if md is not None:
                md.update(chunk)
            done += len(chunk)
            progress(stage, done, total)
    if total == 0:
        progress(stage, 0, 0)
    return sha.hexdigest(), md.hexdigest() if md is not None else None


def sha256_file(path: PathLike, *, progress: Progress = no_progress, cancel: CancelToken | None = None) -> str:
    """SHA-256 of a file as lower-case hex."""
    return file_digests(path, progress=progress, cancel=cancel)[0]
