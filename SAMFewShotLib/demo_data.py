"""The demo case: real data that a dependency ships, or a deterministic phantom.

The MNI ICBM152 2009a symmetric T1 template and its grey/white-matter probability maps that the
nilearn wheel ships in ``nilearn/datasets/data/`` (located through the installed package folder;
nothing is downloaded and nilearn is not even imported), with the lateral ventricles derived from
them as the reference structure. When nilearn or those files are missing, a deterministic
synthetic head phantom takes their place, and the case's ``source`` says so.

Arrays are numpy (z, y, x); geometry is ITK (x, y, z), spacing in mm, origin/direction in LPS,
as :class:`~SAMFewShotLib.volume.Volume` documents.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .volume import LabelVolume, Segment, Volume

#: The template files inside the nilearn package (``nilearn/datasets/data/``).
NILEARN_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
}
#: Voxel size (mm, isotropic) the template is resampled to.
DEMO_SPACING_MM = 2.0
#: Voxels of margin kept around the brain's bounding box when cropping.
CROP_MARGIN_VOXELS = 2
#: Numpy axis the demo annotates (0 = z = axial for the template).
DEMO_AXIS = 0

#: Lateral-ventricle rules (template in MNI space, RAS mm; see :func:`lateral_ventricles`):
#: CSF is darker than this fraction of the median T1 of grey matter ...
CSF_T1_FRACTION = 0.65
#: ... lies at least this deep (mm) below the brain surface ...
MIN_DEPTH_MM = 12.0
#: ... and at least this far (mm) from the midline plane x = 0 (drops septum, third ventricle,
#: interhemispheric fissure).
MIDLINE_MM = 2.0
#: Expected centroid of the left ventricle (RAS mm; the right one is its mirror image) ...
VENTRICLE_CENTROID_RAS = (-15.0, -15.0, 15.0)
#: ... the farthest (mm) a component's centroid may lie from it ...
CENTROID_TOLERANCE_MM = 20.0
#: ... and the volume (ml) each ventricle must have for the derivation to be trusted.
VENTRICLE_VOLUME_ML = (2.0, 40.0)

#: The demo's segment (Slicer's GenericAnatomyColors blue for the ventricles).
VENTRICLES = Segment(value=1, name="Lateral ventricles", color=(0.345, 0.416, 0.843))
#: The phantom's segment.
PHANTOM_STRUCTURE = Segment(value=1, name="Phantom C-shaped structure", color=(0.847, 0.396, 0.31))
#: Phantom size (z, y, x) and voxel size (x, y, z) in mm.
PHANTOM_SHAPE = (56, 88, 80)
PHANTOM_SPACING = (2.0, 2.0, 2.0)


class DemoDataError(RuntimeError):
    """The shipped template files are there but the demo structure cannot be derived from them."""


@dataclass(frozen=True, eq=False)
class DemoCase:
    """An image, its full reference segmentation and where they come from.

    Attributes:
        image: the image (z, y, x), float32.
        reference: the full reference label map on the image grid, with its segment table.
        source: one human-readable line naming the data and how the reference was made.
        axis: the numpy axis the demo annotates.
        input_files: the files the case was read from (never written to).
    """

    image: Volume
    reference: LabelVolume
    source: str
    axis: int = DEMO_AXIS
    input_files: tuple[Path, ...] = ()


# The template shipped with nilearn ----------------------------------------------------------
def nilearn_template_files() -> dict[str, Path] | None:
    """Paths of the template files inside the installed nilearn package, or None.

    Finds the package folder with :func:`importlib.util.find_spec` (nilearn is not imported)
    and returns {"t1", "wm", "gm": path} when all three files are there.
    """
    try:
        spec = importlib.util.find_spec("nilearn")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        data = Path(folder) / "datasets" / "data"
        files = {key: data / name for key, name in NILEARN_FILES.items()}
        if all(path.is_file() for path in files.values()):
            return files
    return None


def _nilearn_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nilearn")
    except PackageNotFoundError:
        return "?"


def _resample(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """Linear resampling to isotropic ``spacing_mm`` over the same field of view, float32."""
    size = [max(2, int(round(n * s / spacing_mm))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    return sitk.Resample(
        image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), (spacing_mm,) * 3,
        image.GetDirection(), 0.0, sitk.sitkFloat32,
    )


def ras_coordinates(volume: Volume) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Physical RAS coordinates (mm) of every voxel: three (nz, ny, nx) float arrays (x, y, z).

    RAS is LPS with x and y negated (MNI coordinates for an MNI-space template).
    """
    k, j, i = np.indices(volume.shape, dtype=float)
    ijk_mm = np.stack([i, j, k]) * np.asarray(volume.spacing)[:, None, None, None]
    lps = np.asarray(volume.origin)[:, None, None, None] + np.einsum(
        "rc,c...->r...", volume.direction_matrix, ijk_mm
    )
    return -lps[0], -lps[1], lps[2]


def lateral_ventricles(t1: Volume, wm: np.ndarray, gm: np.ndarray) -> np.ndarray:
    """The lateral ventricles of an MNI-space skull-stripped T1: (z, y, x) bool on its grid.

    CSF is what the probability maps leave out (white matter < 0.5 and grey matter < 0.5) inside
    the brain and dark on T1 (below :data:`CSF_T1_FRACTION` of grey matter's median). Keeping
    only deep CSF (:data:`MIN_DEPTH_MM`) off the midline (:data:`MIDLINE_MM`) splits it into
    components; on each side the largest one whose centroid lies within
    :data:`CENTROID_TOLERANCE_MM` of :data:`VENTRICLE_CENTROID_RAS` (mirrored for the right) is
    that side's lateral ventricle.

    Args:
        t1: the T1 template, skull-stripped (0 outside the brain).
        wm, gm: white/grey-matter probabilities in [0, 1] on the same grid.

    Raises:
        DemoDataError: a side has no such component, or its volume is outside
            :data:`VENTRICLE_VOLUME_ML`.
    """
    brain = ndimage.binary_fill_holes(t1.array > 0)
    threshold = CSF_T1_FRACTION * float(np.median(t1.array[(gm > 0.5) & brain]))
    depth = ndimage.distance_transform_edt(brain, sampling=t1.spacing_zyx)
    x, y, z = ras_coordinates(t1)
    candidate = (
        brain & (wm < 0.5) & (gm < 0.5) & (t1.array < threshold) & (depth >= MIN_DEPTH_MM)
        & (np.abs(x) >= MIDLINE_MM)
    )
    components, count = ndimage.label(candidate)
    index = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(candidate, components, index)
    centroids = np.stack([ndimage.mean(c, components, index) for c in (x, y, z)], axis=1)
    voxel_ml = float(np.prod(t1.spacing)) / 1000.0
    result = np.zeros(t1.shape, bool)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        expected = np.asarray(VENTRICLE_CENTROID_RAS) * (sign, 1.0, 1.0)
        near = np.linalg.norm(centroids - expected, axis=1) <= CENTROID_TOLERANCE_MM
        if not near.any():
            raise DemoDataError(f"no CSF component near the expected {side} lateral ventricle {tuple(expected)} mm")
        best = int(index[near][np.argmax(sizes[near])])
        volume_ml = float(sizes[best - 1]) * voxel_ml
        low, high = VENTRICLE_VOLUME_ML
        if not low <= volume_ml <= high:
            raise DemoDataError(f"the {side} lateral ventricle measures {volume_ml:.1f} ml, not {low}-{high} ml")
        result |= ndimage.binary_fill_holes(components == best)
    return result


def mni_case(files: dict[str, Path], spacing_mm: float = DEMO_SPACING_MM) -> DemoCase:
    """The template case: T1 resampled (linear) to ``spacing_mm``, cropped to the brain, and the
    lateral ventricles derived from the resampled probability maps (see :func:`lateral_ventricles`).
    """
    images = {key: _resample(sitk.ReadImage(str(path), sitk.sitkFloat32), spacing_mm) for key, path in files.items()}
    brain = sitk.GetArrayFromImage(images["t1"]) > 0
    bounds = [np.flatnonzero(brain.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    lo_zyx = [max(int(b[0]) - CROP_MARGIN_VOXELS, 0) for b in bounds]
    hi_zyx = [min(int(b[-1]) + 1 + CROP_MARGIN_VOXELS, n) for b, n in zip(bounds, brain.shape)]
    index_xyz = [int(v) for v in lo_zyx[::-1]]
    size_xyz = [int(high - low) for low, high in zip(lo_zyx[::-1], hi_zyx[::-1])]
    cropped = {key: Volume.from_sitk(sitk.RegionOfInterest(im, size_xyz, index_xyz)) for key, im in images.items()}
    t1 = cropped["t1"]
    mask = lateral_ventricles(t1, cropped["wm"].array / 255.0, cropped["gm"].array / 255.0)
    reference = LabelVolume(t1.with_array(mask.astype(np.uint8)), (VENTRICLES,))
    source = (
        f"MNI ICBM152 2009a symmetric T1 template shipped with nilearn {_nilearn_version()} "
        f"({files['t1'].parent}), resampled to {spacing_mm:g} mm and cropped to the brain; "
        "reference: lateral ventricles (CSF left by the white/grey-matter probability maps at 0.5, "
        "dark on T1, deep and off the midline)"
    )
    return DemoCase(t1, reference, source, DEMO_AXIS, tuple(files.values()))


# The synthetic phantom --------------------------------------------------------------------------
def phantom_case(
    shape: Sequence[int] = PHANTOM_SHAPE, spacing: Sequence[float] = PHANTOM_SPACING, seed: int = 0
) -> DemoCase:
    """A deterministic synthetic head: textured brain, darker cortex band, bright skull, two
    bright "nuclei", and a dark C-shaped tube (the reference) whose arc rotates, widens and
    moves along z, so its cross-section changes from slice to slice.

    Args:
        shape: (nz, ny, nx), at least 16 voxels each; the anatomy scales with it.
        spacing: voxel size (x, y, z) in mm.
        seed: seed of the texture (the same seed gives the same volume).
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 16:
        raise ValueError(f"Phantom shape must be three sizes of at least 16 voxels, not {shape}")
    rng = np.random.default_rng(seed)
    # Normalised coordinates in [-1, 1] along each axis.
    zz, yy, xx = np.meshgrid(*(np.linspace(-1.0, 1.0, n) for n in shape), indexing="ij")
    head = (xx / 0.92) ** 2 + (yy / 0.92) ** 2 + (zz / 0.95) ** 2
    brain = (xx / 0.8) ** 2 + (yy / 0.8) ** 2 + (zz / 0.85) ** 2
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    texture /= texture.std()
    image = np.where(head <= 1.0, 60.0, 0.0)  # scalp
    image[(head <= 1.0) & (brain > 1.0)] = 210.0  # skull
    image[brain <= 1.0] = 95.0  # cortex band
    image[brain <= 0.72] = 120.0  # inner brain
    for cx in (-0.3, 0.3):  # bright deep "nuclei"
        image[((xx - cx) / 0.12) ** 2 + ((yy + 0.25) / 0.16) ** 2 + (zz / 0.3) ** 2 <= 1.0] = 150.0
    image += np.where(brain <= 1.0, 12.0, 4.0) * texture * (head <= 1.0)

    structure = phantom_structure(zz, yy, xx)
    soft = ndimage.gaussian_filter(structure.astype(np.float32), 0.6)
    image = image * (1.0 - soft) + 35.0 * soft
    image += rng.normal(0.0, 2.0, shape) * (head <= 1.0)
    spacing_xyz = cast("tuple[float, float, float]", tuple(float(s) for s in spacing))  # Volume checks the length
    volume = Volume(image.astype(np.float32), spacing=spacing_xyz)
    reference = LabelVolume(volume.with_array(structure.astype(np.uint8)), (PHANTOM_STRUCTURE,))
    source = (
        f"synthetic head phantom (seed {seed}, {shape[2]}x{shape[1]}x{shape[0]} voxels of "
        f"{'x'.join(f'{s:g}' for s in spacing)} mm); reference: a C-shaped tube whose cross-section "
        "rotates and widens along z"
    )
    return DemoCase(volume, reference, source, DEMO_AXIS)


def phantom_structure(zz: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """The phantom's C-shaped tube on normalised coordinates in [-1, 1] (z, y, x): bool array.

    Along s = z / 0.6 in [-1, 1] the tube's centre line is an arc of radius 0.3 + 0.06 s around a
    centre that drifts with z, centred at an angle that turns by about 125 degrees, half-opening
    0.9 + 0.5 s^2 rad; its thickness tapers to the ends (ellipsoidal profile).
    """
    s = zz / 0.6
    inside = np.abs(s) <= 1.0
    s = np.clip(s, -1.0, 1.0)
    cy, cx = 0.05 + 0.1 * np.sin(2.0 * s), 0.08 * s
    radius = 0.3 + 0.06 * s
    angle = np.pi / 2.0 + 0.8 * s + 0.3 * s**3
    half_open = 0.9 + 0.5 * s**2
    thickness = 0.03 + 0.07 * np.sqrt(np.clip(1.0 - s**2, 0.0, 1.0))
    dy, dx = yy - cy, xx - cx
    rho = np.hypot(dy, dx)
    phi = np.arctan2(dy, dx)
    off = np.abs(np.angle(np.exp(1j * (phi - angle))))
    on_arc = np.abs(rho - radius)
    ends = [
        np.hypot(dy - radius * np.sin(angle + sign * half_open), dx - radius * np.cos(angle + sign * half_open))
        for sign in (-1.0, 1.0)
    ]
    distance = np.where(off <= half_open, on_arc, np.minimum(*ends))
    return inside & (distance <= thickness)


def load_demo_case(phantom: bool = False, spacing_mm: float = DEMO_SPACING_MM) -> DemoCase:
    """The demo case: the nilearn MNI template with its lateral ventricles, else the phantom.

    Why the lateral ventricles: they are a structure clinicians do segment, they are well
    defined from the shipped maps (CSF is what the white- and grey-matter maps leave out, dark on
    T1, deep in the brain) and they are not trivially easy: in axial slices the frontal horns, the
    bodies and the atria change shape, split and merge over about 16 slices of 2 mm, which a
    shape interpolation between a few slices does not follow while the image edges do. The
    white matter of one hemisphere was the alternative, but nobody draws that slice by slice,
    and deep grey matter has no sharp edge in the grey-matter map.

    Args:
        phantom: use the synthetic phantom even when the template is available.
        spacing_mm: isotropic voxel size (mm) the template is resampled to (2 mm keeps every
            engine well under a minute on two cores).

    Returns:
        The case; its ``source`` says which data it holds and, for the phantom, why.
    """
    if phantom:
        return phantom_case()
    files = nilearn_template_files()
    if files is None:
        case = phantom_case()
        reason = "nilearn or its MNI ICBM152 2009a template files are not installed"
    else:
        try:
            return mni_case(files, spacing_mm)
        except RuntimeError as error:  # DemoDataError, or SimpleITK cannot read a file
            case = phantom_case()
            detail = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            reason = f"the nilearn template could not be used ({detail})"
    return DemoCase(case.image, case.reference, f"{case.source} [fallback: {reason}]", case.axis)


