"""Batch inputs: files, globs, folders and DICOM study folders expanded into cases.

A case is one 3D image: an image file (NIfTI, NRRD, MHA/MHD, ...) or one DICOM series. Folders
are searched recursively: every image file in them is a case, and every DICOM series found in
any of their folders is a case of its own (a study folder with a CT and an MR series gives two
cases). Case ids are stable for the same inputs and unique: the file name without its image
extension (``ct_001.nii.gz`` -> ``ct_001``) or, for a DICOM series, its folder name (plus
``_s<SeriesNumber>`` when the folder holds several series); ids that collide are prefixed
with the folders that tell them apart (``patient1_ct``, ``patient2_ct``).
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import re
import stat
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from ..errors import InputError
from ..input_checks import check_regular
from ..volume import Volume
from ..volume_io import same_file

logger = logging.getLogger(__name__)

#: Extensions of image files taken from folders (compound ones first); ``.seg.nrrd`` files are
#: segmentations and never cases.
IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: Extensions of files that are never DICOM (their folders are not scanned for series).
NOT_DICOM_EXTENSIONS = IMAGE_EXTENSIONS + (
    ".seg.nrrd", ".json", ".csv", ".html", ".png", ".txt", ".raw", ".zraw", ".md",
)
_GLOB_CHARS = re.compile(r"[*?\[]")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Case:
    """One image of the batch.

    Attributes:
        case_id: unique, file-name-safe id; the outputs are ``<case_id>.seg.nrrd`` and so on.
        path: the image file, or the folder of a DICOM series.
        series_files: the series' files in slice order (DICOM only; empty for image files).
    """

    case_id: str
    path: str
    series_files: tuple[str, ...] = ()

    def input_files(self) -> tuple[str, ...]:
        """Every file the case is read from (the image file, or the series' files)."""
        return self.series_files or (self.path,)


def image_extension(name: str) -> str | None:
    """The image extension of a file name among :data:`IMAGE_EXTENSIONS` (lower case), or None
    (also for ``.seg.nrrd`` segmentations)."""
    lower = name.lower()
    if lower.endswith(".seg.nrrd"):
        return None
    return next((ext for ext in IMAGE_EXTENSIONS if lower.endswith(ext) and len(lower) > len(ext)), None)


def expand_inputs(inputs: Sequence[str], *, exclude: Iterable[str] = ()) -> list[Case]:
    """The cases of the command line's INPUTS, in input order (folders and globs sorted).

    Args:
        inputs: image files, DICOM series folders, folders to search recursively, or glob
            patterns (``"data/*.nii.gz"``, ``"cohort/**/ct.nrrd"``; ``**`` is recursive).
        exclude: folders never searched (the output folder, so that results are not taken
            for inputs on a second run).

    Returns:
        One :class:`Case` per image file and per DICOM series, each file or series once.

    Raises:
        InputError: an input that matches nothing, or no case found at all.
    """
    _check_output_folders(inputs, exclude)
    excluded = [Path(p).expanduser().resolve() for p in exclude]
    found: list[tuple[Path, str | None, tuple[str, ...]]] = []
    seen: set[tuple[str, str | None]] = set()
    for given in inputs:
        for path in _matches(given):
            for item in _cases_in(path, excluded):
                key = (str(item[0].resolve()), item[1])
                if key not in seen:
                    seen.add(key)
                    found.append(item)
    if not found:
        raise InputError(f"No image found in the inputs {' '.join(inputs)} (files, folders, globs or DICOM folders)")
    ids = _unique_ids([_base_id(path, label) for path, label, _ in found], [path for path, _, _ in found])
    return [Case(case_id, str(path), files) for case_id, (path, _, files) in zip(ids, found)]


def _check_output_folders(inputs: Sequence[str], outputs: Iterable[str]) -> None:
    """InputError for an output folder that is an existing file (one of the inputs, or not)."""
    for output in outputs:
        out = Path(output).expanduser()
        if not out.exists() or out.is_dir():
            continue
        same = next((given for given in inputs if Path(given).expanduser().exists() and same_file(given, out)), None)
        if same is not None:
            raise InputError(f"-o {output} is the input file {same}: -o names the output folder; choose another one")
        raise InputError(f"-o {output} is a file, not a folder: -o names the output folder")


def _matches(given: str) -> list[Path]:
    path = Path(given).expanduser()
    if path.exists():
        check_regular(path, folder_ok=True)
        return [path]
    if _GLOB_CHARS.search(given):
        matches = sorted(glob.glob(os.path.expanduser(given), recursive=True))
        if matches:
            return [Path(m) for m in matches]
        raise InputError(f"{given}: no file or folder matches this pattern")
    raise InputError(f"{given}: no such file or folder")


def _is_excluded(path: Path, excluded: list[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved == e or e in resolved.parents for e in excluded)


def _cases_in(path: Path, excluded: list[Path]) -> list[tuple[Path, str | None, tuple[str, ...]]]:
    """(path, series label or None, series files) of every case of one existing input path."""
    if path.is_file():
        return [] if _is_excluded(path, excluded) else [(path, None, ())]
    cases: list[tuple[Path, str | None, tuple[str, ...]]] = []
    for folder, subfolders, files in os.walk(path):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        here = Path(folder)
        if _is_excluded(here, excluded):
            subfolders[:] = []
            continue
        visible = sorted(f for f in files if not f.startswith(".") and _is_regular(here / f))
        cases.extend((here / f, None, ()) for f in visible if image_extension(f))
        special = [f for f in files if not _is_regular(here / f)]
        if special:  # GDCM's folder scan would open (and block on) a FIFO: not scanned
            logger.warning("%s holds %s, not a regular file: the folder is not scanned for DICOM", here, special[0])
        elif any(not f.lower().endswith(NOT_DICOM_EXTENSIONS) for f in visible):
            cases.extend(_dicom_series(here))
    return cases


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _dicom_series(folder: Path) -> list[tuple[Path, str | None, tuple[str, ...]]]:
    """One entry per DICOM series in ``folder`` (not its subfolders), labelled when several."""
    try:
        series_ids = sorted(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    except RuntimeError:
        return []
    files = {sid: tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid)) for sid in series_ids}
    if len(series_ids) == 1:
        return [(folder, None, files[series_ids[0]])]
    numbers = {sid: _series_number(files[sid][0]) for sid in series_ids}
    unique_numbers = None not in numbers.values() and len(set(numbers.values())) == len(numbers)
    labels = {
        sid: f"s{numbers[sid]}" if unique_numbers else hashlib.sha1(sid.encode()).hexdigest()[:8]
        for sid in series_ids
    }
    return [(folder, labels[sid], files[sid]) for sid in series_ids]


def _series_number(dicom_file: str) -> str | None:
    """The SeriesNumber (0020,0011) of a DICOM file, or None when absent or unreadable."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(dicom_file)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    if not reader.HasMetaDataKey("0020|0011"):
        return None
    number = reader.GetMetaData("0020|0011").strip()
    return number or None


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("._") or "case"


def _base_id(path: Path, series_label: str | None) -> str:
    if series_label is None and path.is_file():
        ext = image_extension(path.name)
        return _safe(path.name[: -len(ext)] if ext else path.name)
    name = _safe(path.resolve().name)
    return f"{name}_{series_label}" if series_label else name


def _unique_ids(ids: list[str], paths: list[Path]) -> list[str]:
    """Make colliding ids unique: prefix the parent folders that differ, then a path hash."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, case_id in enumerate(ids):
        groups[case_id.lower()].append(index)
    result = list(ids)
    for members in groups.values():
        if len(members) < 2:
            continue
        parents = [paths[i].resolve().parent.parts for i in members]
        common = len(os.path.commonprefix(parents))
        for i, parts in zip(members, parents):
            prefix = "_".join(_safe(p) for p in parts[common:])
            result[i] = f"{prefix}_{ids[i]}" if prefix else ids[i]
    counts: dict[str, int] = defaultdict(int)
    for case_id in result:
        counts[case_id.lower()] += 1
    return [
        f"{case_id}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:6]}"
        if counts[case_id.lower()] > 1
        else case_id
        for case_id, path in zip(result, paths)
    ]


def read_case_image(case: Case) -> Volume:
    """The case's image: :func:`~SAMFewShotLib.volume_io.read_volume` of its file, or of its
    own DICOM series (its files, in slice order) even when its folder holds several.

    Returns:
        The volume: array (z, y, x), spacing (x, y, z) in mm, LPS origin and direction.

    Raises:
        InputError: one line naming the path (unreadable, not 3D, non-finite voxels, ...).
    """
    from ..volume_io import read_volume

    return read_volume(case.path, series_files=case.series_files)


def input_signature(case: Case) -> list[dict]:
    """Size (bytes) and modification time (ns) of every input file of the case, for resume."""
    signature = []
    for name in case.input_files():
        stat = os.stat(name)
        signature.append({"path": str(Path(name).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return signature
