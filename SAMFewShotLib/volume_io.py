"""Reading and writing volumes and label maps.

Images: any file SimpleITK reads (NIfTI ``.nii``/``.nii.gz``, NRRD, MHA/MHD, ...) or a folder
holding a DICOM series. Label maps: the same, or a Slicer ``.seg.nrrd`` segmentation read with
slicerio (segment names, colours and label values kept).

Every array is returned in numpy (z, y, x) order; geometry is in ITK (x, y, z) order with spacing
and origin in mm and origin/direction in LPS, exactly as :class:`~SAMFewShotLib.volume.Volume`
documents. Bad input raises ``ValueError`` with one line naming the path and the problem, so
the command line can print it as is.

Writers are atomic (:func:`SAMFewShotLib.files.write_atomic`): the file is written under a
temporary name in the destination folder, fsynced, checked not empty and moved into place with
:func:`os.replace`, so a failed write leaves no file behind and never a half-written destination.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .files import PathLike, write_atomic
from .volume import LabelVolume, Segment, Volume, label_dtype

logger = logging.getLogger(__name__)

#: Output extensions accepted by :func:`write_labels` (``.seg.nrrd`` keeps the segment table).
LABEL_EXTENSIONS = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha")
#: Output extensions accepted by :func:`write_volume`.
VOLUME_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha")
#: Colours given to segments without one when writing ``.seg.nrrd`` (r, g, b in [0, 1]),
#: the first entries of Slicer's GenericAnatomyColors table.
DEFAULT_COLORS = (
    (0.501961, 0.682353, 0.501961),
    (0.945098, 0.839216, 0.568627),
    (0.694118, 0.478431, 0.396078),
    (0.435294, 0.721569, 0.823529),
    (0.847059, 0.396078, 0.309804),
    (0.866667, 0.509804, 0.396078),
    (0.564706, 0.933333, 0.564706),
    (0.752941, 0.407843, 0.345098),
    (0.862745, 0.960784, 0.078431),
    (0.305882, 0.247059, 0.0),
)


# Paths -------------------------------------------------------------------------------------------
def _extension(path: Path, choices: tuple[str, ...]) -> str | None:
    """The (possibly compound) extension of ``path`` among ``choices``, case-insensitive."""
    name = path.name.lower()
    for ext in choices:  # compound extensions come first in the tuples
        if name.endswith(ext) and len(name) > len(ext):
            return ext
    return None


def _is_seg_nrrd(path: Path) -> bool:
    return path.name.lower().endswith(".seg.nrrd")


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file (after resolving links, ``..`` and ``~``).

    Uses :func:`os.path.samefile` when both exist (so hard links and case-insensitive file
    systems are handled), otherwise compares the resolved paths.
    """
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return os.path.samefile(pa, pb)
    return pa.resolve() == pb.resolve()


def check_writable(path: PathLike, kind: Literal["labels", "volume"] = "labels") -> Path:
    """Check that ``path`` can be written before any work is done; return it as a Path.

    Args:
        path: the output file.
        kind: "labels" accepts .nii, .nii.gz, .nrrd, .mha and .seg.nrrd; "volume" the same
            without .seg.nrrd.

    Raises:
        ValueError: unknown extension, missing folder, folder not writable, the path is a
            folder, or an existing file that cannot be overwritten.
    """
    choices = LABEL_EXTENSIONS if kind == "labels" else VOLUME_EXTENSIONS
    out = Path(path).expanduser()
    if _extension(out, choices) is None or (kind == "volume" and _is_seg_nrrd(out)):
        what = "a label map" if kind == "labels" else "an image"
        raise InputError(f"{out}: unknown output extension for {what}; use one of {', '.join(choices)}")
    folder = out.parent
    if not folder.exists():
        raise InputError(f"{out}: the output folder {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"{out}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{out}: the output folder {folder} is not writable")
    if out.is_dir():
        raise InputError(f"{out}: is a folder, not a file name")
    if out.exists() and not os.access(out, os.W_OK):
        raise InputError(f"{out}: the existing file is not writable")
    return out


# Reading ----------------------------------------------------------------------------------------
def _first_line(error: BaseException) -> str:
    """The most informative single line of an exception message (SimpleITK's are multi-line)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "ERROR:" in line:
            return line.split("ERROR:", 1)[1].strip()
    return lines[-1] if lines else type(error).__name__


def _dicom_series_files(folder: Path) -> list[str]:
    """File names of the DICOM series in ``folder`` with the most files (logged when several)."""
    try:
        series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as error:
        raise InputError(f"{folder}: cannot scan the folder for DICOM files ({_first_line(error)})") from None
    if not series_ids:
        raise InputError(f"{folder}: the folder holds no DICOM series (give an image file or a DICOM folder)")
    series = {sid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series_ids}
    chosen = max(series_ids, key=lambda sid: (len(series[sid]), sid))
    if len(series_ids) > 1:
        others = ", ".join(f"{sid} ({len(series[sid])} files)" for sid in series_ids if sid != chosen)
        logger.warning(
            "%s holds %d DICOM series; reading %s (%d files), the one with the most files; skipped: %s",
            folder, len(series_ids), chosen, len(series[chosen]), others,
        )
    else:
        logger.info("Reading DICOM series %s (%d files) from %s", chosen, len(series[chosen]), folder)
    return list(series[chosen])


def _check_image_shape(path: Path, dimension: int, size: tuple[int, ...], components: int) -> None:
    text = "x".join(str(s) for s in size)
    if dimension < 3:
        raise InputError(f"{path}: is a {dimension}D image of size {text}, not a 3D volume")
    if dimension > 3:
        raise InputError(f"{path}: is a {dimension}D image of size {text}; only 3D volumes are supported")
    if components != 1:
        raise InputError(
            f"{path}: has {components} components per voxel (colour or vector image); only scalar volumes are supported"
        )
    if min(size) < 2:
        raise InputError(f"{path}: is a single slice of size {text} (x,y,z), not a 3D volume")


def _read_sitk(path: Path, series_files: Sequence[str] = ()) -> sitk.Image:
    """Read a file or a DICOM folder (``series_files`` when given, else its largest series) with
    SimpleITK after checking its header."""
    if path.is_dir():
        files = list(series_files) or _dicom_series_files(path)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        try:
            image = reader.Execute()
        except RuntimeError as error:
            raise InputError(f"{path}: cannot read the DICOM series ({_first_line(error)})") from None
        _check_image_shape(path, image.GetDimension(), image.GetSize(), image.GetNumberOfComponentsPerPixel())
        return image
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise InputError(f"{path}: is not an image file SimpleITK can read ({_first_line(error)})") from None
    _check_image_shape(path, reader.GetDimension(), reader.GetSize(), reader.GetNumberOfComponents())
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise InputError(f"{path}: cannot read the image ({_first_line(error)})") from None


def _check_finite(path: Path, array: np.ndarray) -> None:
    if not np.issubdtype(array.dtype, np.floating):
        if np.issubdtype(array.dtype, np.complexfloating):
            raise InputError(f"{path}: has complex voxels ({array.dtype}); only real-valued volumes are supported")
        return
    n_nan = int(np.count_nonzero(np.isnan(array)))
    n_inf = int(np.count_nonzero(np.isinf(array)))
    if n_nan or n_inf:
        raise InputError(f"{path}: has {n_nan + n_inf} non-finite voxels ({n_nan} NaN, {n_inf} inf)")


def read_volume(path: PathLike, *, series_files: Sequence[str] = ()) -> Volume:
    """Read a 3D scalar image from a file or a DICOM series folder.

    Args:
        path: a SimpleITK-readable file (.nii, .nii.gz, .nrrd, .mha, .mhd, a DICOM file, ...)
            or a folder holding a DICOM series. When a folder holds several series, the one with
            the most files is read and the choice is logged (warning).
        series_files: for a folder, the files of the one series to read, in slice order
            (``sitk.ImageSeriesReader.GetGDCMSeriesFileNames``); empty: choose as above.

    Returns:
        The volume: array (z, y, x) with the dtype as read; spacing (x, y, z) in mm; origin in
        mm, LPS; direction row-major 3x3 with columns = index axes (x, y, z).

    Raises:
        ValueError (one line naming ``path``): missing path, unreadable or non-image file,
        folder without DICOM series, 2D / single-slice, 4D or multi-component image, NaN or inf
        voxels (with their count).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    image = _read_sitk(path, series_files)
    volume = Volume.from_sitk(image)
    _check_finite(path, volume.array)
    _check_finite_nifti(path)
    return volume


def _check_finite_nifti(path: Path) -> None:
    """ValueError for NaN/inf voxels of a floating-point NIfTI file.

    SimpleITK's NIfTI reader (ITK before PR #6683) silently turns NaN and inf into 0, so the file's
    own data are checked with nibabel; integer NIfTI files (most CT) cannot hold NaN and are skipped.
    """
    if not path.is_file() or not path.name.lower().endswith((".nii", ".nii.gz")):
        return
    import nibabel

    image = nibabel.load(str(path))
    if not np.issubdtype(image.get_data_dtype(), np.floating):
        return
    _check_finite(path, np.asanyarray(image.dataobj))


def _as_label_array(path: Path, array: np.ndarray) -> np.ndarray:
    """Check that ``array`` holds non-negative integers; return it as an unsigned array.

    Unsigned integer arrays are returned as they are; signed integer and float arrays are
    converted to the smallest unsigned dtype holding their largest value (``label_dtype``).
    """
    if np.issubdtype(array.dtype, np.floating):
        _check_finite(path, array)
        fractional = array != np.round(array)
        if fractional.any():
            example = float(array[fractional].flat[0])
            raise InputError(
                f"{path}: is not a label map: {int(fractional.sum())} voxels hold non-integer values "
                f"such as {example:g}"
            )
    elif not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"{path}: is not a label map: voxel type {array.dtype} is not an integer type")
    if np.issubdtype(array.dtype, np.unsignedinteger):
        return array
    if array.size == 0:
        return array.astype(np.uint8)
    low = array.min()
    if low < 0:
        raise InputError(
            f"{path}: is not a label map: {int(np.count_nonzero(array < 0))} voxels hold negative values "
            f"(smallest {low:g})"
        )
    high = int(array.max())
    try:
        dtype = label_dtype(high)
    except ValueError:
        raise InputError(f"{path}: label value {high} is too large (more than 32 bits)") from None
    return array.astype(dtype)


def read_labels(path: PathLike) -> LabelVolume:
    """Read a label map: a label image (any :func:`read_volume` input) or a Slicer ``.seg.nrrd``.

    A label image must hold non-negative integers; a float image whose values are all integers
    is accepted. Unsigned integer images keep their dtype; signed integer and float images are
    converted to the smallest unsigned dtype that holds their largest label. Label images carry
    no segment table (``segments`` is empty).

    A ``.seg.nrrd`` (or any NRRD whose header has Slicer ``SegmentN_`` fields) is read with
    slicerio keeping each segment's name, colour and label value. Segments stored in several
    layers are flattened into one label map when no voxel belongs to two segments; if label
    values repeat across layers, segments are renumbered 1..n in file order.

    Returns:
        The label map: array (z, y, x) unsigned integers, 0 = background; geometry as in
        :func:`read_volume` (spacing x, y, z in mm, LPS origin and direction).

    Raises:
        ValueError (one line naming ``path``): the :func:`read_volume` errors, negative or
        non-integer values, overlapping segments in a ``.seg.nrrd``.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file() and (_is_seg_nrrd(path) or _has_segment_fields(path)):
        return _read_seg_nrrd(path)
    volume = read_volume(path)
    return LabelVolume(volume.with_array(_as_label_array(path, volume.array)))


# Slicer segmentations ----------------------------------------------------------------------------
def _has_segment_fields(path: Path) -> bool:
    """True for a NRRD file whose header holds Slicer segmentation fields."""
    if not path.name.lower().endswith((".nrrd", ".nhdr")):
        return False
    import nrrd

    try:
        header = nrrd.read_header(str(path))
    except Exception:  # not a readable NRRD: let SimpleITK report the problem
        return False
    return any(key.startswith("Segment0_") for key in header)


def geometry_from_ijk_to_lps(
    ijk_to_lps: np.ndarray,
) -> tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, ...]]:
    """(spacing, origin, direction) of a 4x4 voxel (i, j, k) to LPS (mm) matrix.

    Column c of the 3x3 part is ``spacing[c] * direction[:, c]``; the last column is the
    origin. Spacing is (x, y, z) in mm; direction is row-major with columns = index axes.
    Oblique, flipped (negative) and left-handed directions are kept exactly.
    """
    matrix = np.asarray(ijk_to_lps, dtype=float)
    axes = matrix[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if np.any(spacing == 0) or not np.all(np.isfinite(axes)):
        raise InputError(f"Degenerate voxel-to-LPS matrix {matrix[:3].tolist()}")
    direction = axes / spacing
    return tuple(spacing), tuple(matrix[:3, 3]), tuple(direction.ravel())  # type: ignore[return-value]


def ijk_to_lps_from_geometry(volume: Volume) -> np.ndarray:
    """The 4x4 voxel (i, j, k) = (x, y, z) index to LPS (mm) matrix of a volume's grid."""
    matrix = np.eye(4)
    matrix[:3, :3] = volume.direction_matrix * np.asarray(volume.spacing)[np.newaxis, :]
    matrix[:3, 3] = volume.origin
    return matrix


def _read_seg_nrrd(path: Path) -> LabelVolume:
    import slicerio

    try:
        segmentation = slicerio.read_segmentation(str(path))
    except Exception as error:  # pynrrd and slicerio raise several types
        raise InputError(f"{path}: cannot read the segmentation ({_first_line(error)})") from None
    voxels = segmentation.get("voxels")
    if voxels is None or voxels.ndim not in (3, 4):
        shape = None if voxels is None else voxels.shape
        raise InputError(f"{path}: segmentation voxels must be 3D or 4D (layers), not of shape {shape}")
    try:
        spacing, origin, direction = geometry_from_ijk_to_lps(segmentation["ijkToLPS"])
    except ValueError as error:
        raise InputError(f"{path}: {error}") from None
    segments_info = list(segmentation.get("segments", []))

    # pynrrd's default (Fortran) index order gives voxels[(layer,) i, j, k]; numpy wants (z, y, x).
    if voxels.ndim == 4:
        flat, segments = _flatten_layers(path, voxels, segments_info)
    else:
        flat = voxels
        segments = tuple(_segment_from_info(info, info.get("labelValue", 1)) for info in segments_info)
    array = np.ascontiguousarray(np.transpose(_as_label_array(path, flat), (2, 1, 0)))
    volume = Volume(array=array, spacing=spacing, origin=origin, direction=direction)
    _check_image_shape(path, 3, tuple(array.shape[::-1]), 1)
    return LabelVolume(volume, segments)


def _segment_from_info(info: dict, value: int) -> Segment:
    color = info.get("color")
    return Segment(
        value=int(value),
        name=str(info.get("name", info.get("id", ""))),
        color=None if color is None else tuple(float(c) for c in color[:3]),  # type: ignore[arg-type]
        terminology=_terminology_text(info.get("terminology")),
    )


def _terminology_text(terminology) -> str | None:
    """Slicer's terminology entry string from slicerio's segment field (a dict), or None."""
    if not terminology:
        return None
    import slicerio.segmentation

    try:
        return slicerio.segmentation.terminology_entry_to_string(terminology)
    except (KeyError, TypeError):  # incomplete entries are dropped, not fatal
        return None


def _flatten_layers(
    path: Path, voxels: np.ndarray, segments_info: list[dict]
) -> tuple[np.ndarray, tuple[Segment, ...]]:
    """Merge the layers (axis 0) of a segmentation into one label array (i, j, k)."""
    occupied = np.count_nonzero(voxels, axis=0)
    overlap = occupied > 1
    if overlap.any():
        index = tuple(int(i[0]) for i in np.nonzero(overlap))
        names = [
            info.get("name", info.get("id", "?"))
            for info in segments_info
            if voxels[(info.get("layer", 0),) + index] == info.get("labelValue", 1)
        ]
        raise InputError(
            f"{path}: segments overlap in {int(overlap.sum())} voxels (e.g. {', '.join(map(repr, names))} at "
            f"voxel {index}); overlapping segments are not supported, make them exclusive in Slicer first"
        )
    keys = [(info.get("layer", 0), info.get("labelValue", 1)) for info in segments_info]
    values = [value for _, value in keys]
    renumber = len(set(values)) != len(values)
    flat = np.zeros(voxels.shape[1:], dtype=label_dtype(len(keys)) if renumber else voxels.dtype)
    segments = []
    for n, (info, (layer, value)) in enumerate(zip(segments_info, keys), start=1):
        out_value = n if renumber else value
        flat[voxels[layer] == value] = out_value
        segments.append(_segment_from_info(info, out_value))
    unclaimed = int(np.count_nonzero(occupied)) - int(np.count_nonzero(flat))
    if unclaimed:
        logger.warning("%s: %d labelled voxels belong to no declared segment and were dropped", path, unclaimed)
    if renumber:
        logger.info("%s: label values repeat across layers; segments renumbered 1..%d", path, len(segments))
    return flat, tuple(segments)


# Writing ----------------------------------------------------------------------------------------
def atomic_write(out: Path, ext: str, write) -> None:
    """Call ``write(temp_path)`` for a temporary file next to ``out`` (ending in ``ext``), then
    fsync it, check it is not empty and move it into place (:func:`..files.write_atomic`)."""
    write_atomic(out, write, suffix=ext)


def _write_sitk(image: sitk.Image, out: Path, ext: str) -> None:
    def write(temp: Path) -> None:
        try:
            sitk.WriteImage(image, str(temp), True)
        except RuntimeError as error:
            raise OSError(f"{out}: cannot write the image ({_first_line(error)})") from None

    atomic_write(out, ext, write)


def write_volume(volume: Volume, path: PathLike) -> None:
    """Write an image atomically to .nii, .nii.gz, .nrrd or .mha (compressed where the format allows).

    The array (z, y, x) and the geometry (spacing x, y, z in mm, LPS origin and direction) are
    written as they are; a bool array is written as uint8.

    Raises:
        ValueError: see :func:`check_writable` (checked before anything is written).
        OSError: the write itself failed; no file is left behind.
    """
    out = check_writable(path, "volume")
    ext = _extension(out, VOLUME_EXTENSIONS)
    if volume.array.dtype == bool:
        volume = volume.with_array(volume.array.astype(np.uint8))
    _write_sitk(volume.to_sitk(), out, ext)  # type: ignore[arg-type]


def _segments_to_write(labels: LabelVolume) -> list[Segment]:
    """Declared segments plus a default one for every present label without an entry."""
    declared = {seg.value: seg for seg in labels.segments if seg.value > 0}
    for value in labels.label_values():
        declared.setdefault(value, Segment(value=value))
    return [declared[v] for v in sorted(declared)]


def write_labels(labels: LabelVolume, path: PathLike) -> None:
    """Write a label map atomically.

    Args:
        labels: label array (z, y, x) with its geometry and segment table.
        path: .nii, .nii.gz, .nrrd or .mha (SimpleITK, compressed where the format allows;
            geometry kept, segment names and colours are not) or .seg.nrrd (slicerio; one
            layer, each segment's name, colour, terminology and label value kept; segments without a
            colour get one from :data:`DEFAULT_COLORS`, without a name ``Segment_<value>``).

    Raises:
        ValueError: see :func:`check_writable` (checked before anything is written).
        OSError: the write itself failed; no file is left behind.
    """
    out = check_writable(path, "labels")
    ext = _extension(out, LABEL_EXTENSIONS)
    if ext != ".seg.nrrd":
        _write_sitk(labels.volume.to_sitk(), out, ext)  # type: ignore[arg-type]
        return

    import slicerio
    import slicerio.segmentation

    array = labels.array
    segments = []
    for n, seg in enumerate(_segments_to_write(labels)):
        color = seg.color if seg.color is not None else DEFAULT_COLORS[n % len(DEFAULT_COLORS)]
        entry = {
            "id": f"Segment_{seg.value}",
            "name": seg.display_name(),
            "nameAutoGenerated": not seg.name,
            "color": [float(c) for c in color],
            "colorAutoGenerated": seg.color is None,
            "labelValue": int(seg.value),
            "layer": 0,
        }
        if seg.terminology:
            entry["terminology"] = slicerio.segmentation.terminology_entry_from_string(seg.terminology)
        segments.append(entry)
    segmentation = {
        # slicerio writes in Fortran order: voxels[i, j, k] = array[k, j, i].
        "voxels": np.transpose(array, (2, 1, 0)),
        "ijkToLPS": ijk_to_lps_from_geometry(labels.volume),
        "segments": segments,
        "containedRepresentationNames": ["Binary labelmap"],
        "masterRepresentation": "Binary labelmap",
    }

    def write(temp: Path) -> None:
        slicerio.write_segmentation(str(temp), segmentation)

    atomic_write(out, ext, write)  # type: ignore[arg-type]
