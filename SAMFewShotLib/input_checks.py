"""Checks made on an input file before (and instead of trusting) a third-party reader.

SimpleITK reads the first half of a truncated ``.nii.gz`` without complaint (the rest comes back
as zeros), allocates whatever voxel count a header claims, and blocks for ever on a FIFO. These
checks refuse such inputs up front with one line naming the file and the problem:

- :func:`check_regular` -- a regular file (or, where allowed, a folder), never a FIFO, device or
  socket (opening one would hang or read an endless stream).
- :func:`check_voxel_count` -- the header's voxel count within :func:`max_voxels` (derived from
  the available memory; ``SAMFEWSHOT_MAX_VOXELS`` or ``samfewshot --max-voxels`` overrides it).
- :func:`check_complete` -- every data byte the header declares is in the file: gzip / zlib /
  bzip2 streams are decompressed to their end (truncation, bit flips and short data are found)
  and raw data are compared with the header's voxel count x voxel size. NIfTI (``.nii``,
  ``.nii.gz``), MetaImage (``.mha``, ``.mhd`` with one data file) and NRRD (``.nrrd``, ``.nhdr``,
  ``.seg.nrrd``) are checked; other formats are left to their reader.
- :func:`check_slice_positions` -- a DICOM series' slices are evenly spaced along the slice
  normal (a missing slice in the middle is refused, naming where it is missing).

IO layer: imports only the core (:mod:`.errors`); nibabel and pynrrd are imported where used.
"""

from __future__ import annotations

import bz2
import gzip
import os
import re
import stat
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import InputError

#: Environment variable overriding :func:`max_voxels` (an integer; ``samfewshot --max-voxels`` sets it).
MAX_VOXELS_ENV = "SAMFEWSHOT_MAX_VOXELS"
#: Bytes of memory budgeted per voxel when the limit is derived from the available memory: a
#: float32 working copy, a label map, a few engine buffers and the reader's own copy.
BYTES_PER_VOXEL_BUDGET = 32
_CHUNK = 1 << 20
_HEADER_PROBE = 1 << 16


# Kinds of files --------------------------------------------------------------------------------
def check_regular(path: Path, *, folder_ok: bool = False) -> None:
    """InputError unless ``path`` is a regular file (or a folder when ``folder_ok``).

    FIFOs, character/block devices and sockets are refused before anything opens them: a reader
    would block for ever on a FIFO and read a device without end.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: no such file or folder") from None
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror or error})") from None
    if stat.S_ISREG(mode) or (folder_ok and stat.S_ISDIR(mode)):
        return
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: is a folder, not a file")
    kind = (
        "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
        else "a character device" if stat.S_ISCHR(mode)
        else "a block device" if stat.S_ISBLK(mode)
        else "a socket" if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    raise InputError(
        f"{path}: is {kind}, not a regular file; give an image file" + (" or a DICOM folder" if folder_ok else "")
    )


# Memory bound -----------------------------------------------------------------------------------
def available_memory_bytes() -> int | None:
    """Memory this process can still use, in bytes (Linux ``MemAvailable``; else the free
    physical pages), or None when unknown."""
    try:
        with open("/proc/meminfo", "rb") as handle:
            for line in handle:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def max_voxels() -> int | None:
    """The largest voxel count an input may declare: ``$SAMFEWSHOT_MAX_VOXELS`` when set, else
    the available memory / :data:`BYTES_PER_VOXEL_BUDGET`; None when neither is known."""
    text = os.environ.get(MAX_VOXELS_ENV, "").strip()
    if text:
        try:
            value = int(float(text))
        except ValueError:
            raise InputError(f"{MAX_VOXELS_ENV} must be a number of voxels, not {text!r}") from None
        if value < 1:
            raise InputError(f"{MAX_VOXELS_ENV} must be at least 1, not {text!r}")
        return value
    memory = available_memory_bytes()
    return None if memory is None else max(1, memory // BYTES_PER_VOXEL_BUDGET)


def check_voxel_count(path: Path, size: Sequence[int], components: int = 1) -> None:
    """InputError when an image of ``size`` (x, y, z) voxels and ``components`` per voxel is larger
    than :func:`max_voxels` allows (checked on the header, before any voxel is read)."""
    limit = max_voxels()
    count = int(np.prod([int(s) for s in size], dtype=np.float64)) * max(1, int(components))
    if limit is not None and count > limit:
        text = "x".join(str(int(s)) for s in size)
        raise InputError(
            f"{path}: its header declares {text} = {count:,} voxels, more than the {limit:,} this machine's "
            f"memory allows (set --max-voxels or {MAX_VOXELS_ENV} to change the limit)"
        )


# Complete data ----------------------------------------------------------------------------------
def check_complete(path: Path) -> None:
    """InputError unless ``path`` holds every data byte its header declares (see the module doc).

    Formats other than NIfTI, MetaImage and NRRD pass unchecked.
    """
    name = path.name.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            _check_nifti(path)
        elif name.endswith((".mha", ".mhd")):
            _check_metaimage(path)
        elif name.endswith((".nrrd", ".nhdr")):
            _check_nrrd(path)
        elif _starts_with_gzip(path):
            _stream_size(path, 0, "gzip")
    except _Incomplete as problem:
        raise InputError(f"{path}: {problem}") from None


class _Incomplete(Exception):
    """The data part of a file is shorter than, or differs from, what its header declares."""


def _starts_with_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _stream_size(path: Path, offset: int, kind: str) -> int:
    """Decompressed size of the ``kind`` ("gzip", "zlib", "bzip2") stream starting at ``offset``,
    read to its end; _Incomplete when the stream is truncated or corrupt."""
    total = 0
    try:
        with open(path, "rb") as raw:
            raw.seek(offset)
            if kind == "gzip":
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    while True:
                        chunk = stream.read(_CHUNK)
                        if not chunk:
                            break
                        total += len(chunk)
                return total
            decoder = zlib.decompressobj() if kind == "zlib" else bz2.BZ2Decompressor()
            while True:
                data = raw.read(_CHUNK)
                if not data:
                    break
                total += len(decoder.decompress(data))
                if decoder.eof:
                    break
            if not isinstance(decoder, bz2.BZ2Decompressor):  # zlib: bzip2 has nothing to flush
                total += len(decoder.flush())
            if not decoder.eof:
                raise _Incomplete(f"the {kind}-compressed data end early (the file is truncated)")
            return total
    except EOFError:
        raise _Incomplete(f"the {kind}-compressed data end early (the file is truncated)") from None
    except (zlib.error, gzip.BadGzipFile, OSError) as error:
        if isinstance(error, OSError) and not isinstance(error, gzip.BadGzipFile) and error.errno is not None:
            raise
        raise _Incomplete(f"the {kind}-compressed data are corrupt ({error})") from None


def _require(path_kind: str, have: int, need: int) -> None:
    if have < need:
        raise _Incomplete(
            f"holds {have:,} bytes of voxel data but its header declares {need:,} ({path_kind}; the file is truncated)"
        )


def _check_nifti(path: Path) -> None:
    import nibabel
    from nibabel.analyze import AnalyzeHeader

    compressed = path.name.lower().endswith(".gz") and _starts_with_gzip(path)
    have = _stream_size(path, 0, "gzip") if compressed else path.stat().st_size
    try:
        header = nibabel.load(str(path)).header
    except Exception:  # noqa: BLE001 - not a NIfTI nibabel reads: SimpleITK will report it
        return
    if not isinstance(header, AnalyzeHeader):  # NIfTI-1 and -2 headers are Analyze ones
        return
    shape = header.get_data_shape()
    item = header.get_data_dtype().itemsize
    need = int(header.get_data_offset()) + int(np.prod(shape, dtype=np.int64)) * item
    _require("decompressed" if compressed else "raw", have, need)


_META_TYPES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}


def _check_metaimage(path: Path) -> None:
    with open(path, "rb") as handle:
        probe = handle.read(_HEADER_PROBE)
    fields: dict[str, str] = {}
    data_start = None
    position = 0
    for line in probe.splitlines(keepends=True):
        position += len(line)
        key, sep, value = line.decode("latin-1").partition("=")
        if not sep:
            continue
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            data_start = position
            break
    try:
        dims = [int(v) for v in fields["dimsize"].split()]
        item = _META_TYPES[fields["elementtype"].upper()]
        channels = int(fields.get("elementnumberofchannels", "1"))
    except (KeyError, ValueError):
        return  # not a header we understand: SimpleITK will report it
    need = int(np.prod(dims, dtype=np.int64)) * item * channels
    data_file = fields.get("elementdatafile", "")
    if data_file.upper() == "LOCAL":
        source, offset = path, data_start or 0
    elif data_file and " " not in data_file and "%" not in data_file and data_file.upper() != "LIST":
        source, offset = path.parent / data_file, 0
        check_regular(source)
    else:
        return
    if fields.get("compresseddata", "false").lower() == "true":
        _require("decompressed", _stream_size(source, offset, "zlib"), need)
    else:
        _require("raw", source.stat().st_size - offset, need)


_NRRD_ITEM = {
    "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8,
    "float": 4, "double": 8,
}
_NRRD_ALIASES = {
    "signed char": "int8", "int8_t": "int8", "uchar": "uint8", "unsigned char": "uint8", "uint8_t": "uint8",
    "short": "int16", "short int": "int16", "signed short": "int16", "signed short int": "int16", "int16_t": "int16",
    "ushort": "uint16", "unsigned short": "uint16", "unsigned short int": "uint16", "uint16_t": "uint16",
    "int": "int32", "signed int": "int32", "int32_t": "int32", "uint": "uint32", "unsigned int": "uint32",
    "uint32_t": "uint32", "longlong": "int64", "long long": "int64", "long long int": "int64",
    "signed long long": "int64", "signed long long int": "int64", "int64_t": "int64", "ulonglong": "uint64",
    "unsigned long long": "uint64", "unsigned long long int": "uint64", "uint64_t": "uint64",
}


def nrrd_header_end(path: Path) -> int | None:
    """Byte offset of the data of an attached-data NRRD (after the blank line ending the header)."""
    with open(path, "rb") as handle:
        probe = handle.read(_HEADER_PROBE)
    match = re.search(rb"\r?\n\r?\n", probe)
    return None if match is None else match.end()


def _nrrd_fields(path: Path, header_end: int) -> dict[str, str]:
    with open(path, "rb") as handle:
        text = handle.read(header_end).decode("latin-1")
    fields = {}
    for line in text.splitlines()[1:]:
        if line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.lstrip("=").strip()
    return fields


def nrrd_sizes(path: Path) -> tuple[int, ...] | None:
    """The ``sizes`` of a NRRD header (fastest axis first), or None when it cannot be parsed."""
    end = nrrd_header_end(path)
    if end is None:
        return None
    try:
        return tuple(int(v) for v in _nrrd_fields(path, end)["sizes"].split())
    except (KeyError, ValueError):
        return None


def _check_nrrd(path: Path) -> None:
    end = nrrd_header_end(path)
    if end is None:
        with open(path, "rb") as handle:
            attached = handle.read(4) == b"NRRD" and not path.name.lower().endswith(".nhdr")
        if attached and path.stat().st_size < _HEADER_PROBE:
            raise _Incomplete("the NRRD header ends early and no voxel data follow (the file is truncated)")
        return
    fields = _nrrd_fields(path, end)
    try:
        sizes = [int(v) for v in fields["sizes"].split()]
        kind = fields["type"].lower()
        item = _NRRD_ITEM[_NRRD_ALIASES.get(kind, kind)]
    except (KeyError, ValueError):
        return
    need = int(np.prod(sizes, dtype=np.int64)) * item
    encoding = fields.get("encoding", "raw").lower()
    source, offset = path, end
    data_file = fields.get("data file") or fields.get("datafile")
    if data_file:
        if " " in data_file or data_file.upper().startswith("LIST"):
            return
        source, offset = path.parent / data_file, 0
        check_regular(source)
    try:
        offset += max(0, int(fields.get("byte skip", "0")))
    except ValueError:
        pass
    if encoding == "raw":
        _require("raw", source.stat().st_size - offset, need)
    elif encoding in ("gzip", "gz"):
        _require("decompressed", _stream_size(source, offset, "gzip"), need)
    elif encoding in ("bzip2", "bz2"):
        _require("decompressed", _stream_size(source, offset, "bzip2"), need)


# DICOM series -----------------------------------------------------------------------------------
def check_slice_positions(folder: Path, files: Sequence[str], positions: Sequence[Sequence[float]],
                          normal: Sequence[float] | np.ndarray) -> None:
    """InputError when the slices of a series (``files`` in slice order with their
    ImagePositionPatient ``positions``, mm) are not evenly spaced along the slice ``normal``: a
    gap of more than 1.5x the usual spacing means slices are missing there; two slices at the
    same position mean a duplicate."""
    if len(files) < 3:
        return
    along = np.asarray(positions, dtype=float) @ np.asarray(normal, dtype=float)
    order = np.argsort(along, kind="stable")
    along = along[order]
    gaps = np.diff(along)
    step = float(np.median(gaps))
    if step <= 1e-6:
        return
    for i, gap in enumerate(gaps):
        if gap < 0.1 * step:
            a, b = Path(files[order[i]]).name, Path(files[order[i + 1]]).name
            raise InputError(
                f"{folder}: slices {a} and {b} lie at the same position ({along[i]:.2f} mm): duplicate slice"
            )
        if gap > 1.5 * step:
            missing = int(round(gap / step)) - 1
            a, b = Path(files[order[i]]).name, Path(files[order[i + 1]]).name
            raise InputError(
                f"{folder}: the series is missing {max(missing, 1)} slice(s) between {a} ({along[i]:.2f} mm) and {b} "
                f"({along[i + 1]:.2f} mm) (spacing {step:.2f} mm elsewhere); give the complete series"
            )
