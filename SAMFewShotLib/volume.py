"""Volumes with their geometry.

A :class:`Volume` is a numpy array in (z, y, x) order together with the ITK/file geometry
in (x, y, z) order: spacing in mm, origin in mm (LPS, as files store it) and the 3x3
direction matrix whose columns are the directions of the index axes i, j, k (= x, y, z).
This is exactly what SimpleITK uses, so ``Volume.from_sitk(img).to_sitk()`` is lossless.

A :class:`LabelVolume` is an integer :class:`Volume` plus the segment table (label value,
name, colour) that `.seg.nrrd` files and Slicer segmentations carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import SimpleITK as sitk

from .errors import InputError

#: Absolute tolerance (mm, or unitless for direction cosines) when comparing two grids.
GRID_TOLERANCE = 1e-4


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image and its physical geometry.

    Attributes:
        array: (nz, ny, nx) voxel values, numpy order (z, y, x).
        spacing: (sx, sy, sz) voxel size in mm, ITK order (x, y, z).
        origin: (ox, oy, oz) physical position of voxel (0, 0, 0) in mm, LPS, ITK order.
        direction: 9 floats, the row-major 3x3 direction matrix; column c is the LPS direction
            of index axis c (c = 0: x/i, 1: y/j, 2: z/k).
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"A volume must be 3D (z, y, x), not an array of shape {self.array.shape}")
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "direction", tuple(float(d) for d in self.direction))
        if len(self.spacing) != 3 or len(self.origin) != 3 or len(self.direction) != 9:
            raise ValueError(
                f"Geometry must be 3D: spacing {self.spacing}, origin {self.origin}, direction {self.direction}"
            )
        if min(self.spacing) <= 0:
            raise InputError(f"Spacing must be positive, not {self.spacing}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(nz, ny, nx)."""
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Voxel size in mm in numpy order (z, y, x)."""
        return self.spacing[::-1]  # type: ignore[return-value]

    @property
    def direction_matrix(self) -> np.ndarray:
        """(3, 3) direction matrix, columns = LPS directions of the index axes (x, y, z)."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def with_array(self, array: np.ndarray) -> Volume:
        """A volume with the same geometry and new voxel values of the same shape."""
        if array.shape != self.array.shape:
            raise ValueError(f"Array shape {array.shape} differs from the volume's {self.array.shape}")
        return replace(self, array=array)

    def same_grid(self, other: Volume, tolerance: float = GRID_TOLERANCE) -> bool:
        """True when both volumes have the same shape, spacing, origin and direction."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=tolerance, rtol=0)
            and np.allclose(self.origin, other.origin, atol=tolerance, rtol=0)
            and np.allclose(self.direction, other.direction, atol=tolerance, rtol=0)
        )

    def require_same_grid(self, other: Volume, what: str) -> None:
        """ValueError naming both grids unless ``other`` (the ``what``: "annotation",
        "reference", ...) lies on this volume's grid."""
        if not self.same_grid(other):
            raise InputError(f"The {what} grid ({other.grid_text()}) differs from the image grid ({self.grid_text()})")

    def grid_text(self) -> str:
        """A one-line description of the grid, for error messages."""
        nz, ny, nx = self.shape
        fmt = lambda values: "(" + ", ".join(f"{v:g}" for v in values) + ")"  # noqa: E731
        return (
            f"size {nx}x{ny}x{nz} (x,y,z), spacing {fmt(self.spacing)} mm, origin {fmt(self.origin)} mm, "
            f"direction {fmt(np.round(self.direction, 4))}"
        )

    def to_sitk(self) -> sitk.Image:
        """The SimpleITK image with this array and geometry (no copy semantics guaranteed)."""
        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> Volume:
        """The volume of a 3D scalar SimpleITK image."""
        if image.GetDimension() != 3:
            raise InputError(f"Expected a 3D image, not {image.GetDimension()}D of size {image.GetSize()}")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(
                f"Expected a scalar image, not {image.GetNumberOfComponentsPerPixel()} components per voxel"
            )
        return cls(
            array=sitk.GetArrayFromImage(image),
            spacing=image.GetSpacing(),
            origin=image.GetOrigin(),
            direction=image.GetDirection(),
        )


@dataclass(frozen=True)
class Segment:
    """One structure of a label map.

    Attributes:
        value: the label value in the label map (> 0).
        name: human-readable name ("liver").
        color: (r, g, b) in [0, 1].
        terminology: Slicer's terminology entry string (``"context~category codes~type codes~
            ..."``, codes as ``scheme^value^meaning``), kept in .seg.nrrd files; None when unknown.
    """

    value: int
    name: str = ""
    color: tuple[float, float, float] | None = None
    terminology: str | None = None

    def display_name(self) -> str:
        return self.name or f"Segment_{self.value}"


@dataclass(frozen=True, eq=False)
class LabelVolume:
    """An integer label map and its segment table.

    Attributes:
        volume: label values, (z, y, x) integer array; 0 is background.
        segments: one :class:`Segment` per label value present or declared.
    """

    volume: Volume
    segments: tuple[Segment, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not np.issubdtype(self.volume.array.dtype, np.integer):
            raise ValueError(f"A label map must hold integers, not {self.volume.array.dtype}")

    @property
    def array(self) -> np.ndarray:
        return self.volume.array

    def label_values(self) -> list[int]:
        """Sorted non-zero label values present in the array."""
        values = np.unique(self.volume.array)
        return [int(v) for v in values if v != 0]

    def segment(self, value: int) -> Segment:
        """The segment with this label value (a default one when the table lacks it)."""
        for seg in self.segments:
            if seg.value == value:
                return seg
        return Segment(value=value)

    def with_array(self, array: np.ndarray, segments: tuple[Segment, ...] | None = None) -> LabelVolume:
        """Same geometry, new labels; the segment table is kept unless given."""
        return LabelVolume(self.volume.with_array(array), self.segments if segments is None else segments)


def label_dtype(max_value: int) -> np.dtype:
    """The smallest unsigned dtype that stores label values up to ``max_value``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise InputError(f"Label value {max_value} is too large")
