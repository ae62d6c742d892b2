"""Sparse slice annotations: which slices of which axis hold which label.

A clinician draws a structure on a few slices of one axis. :class:`SparseAnnotation` finds
that axis (or takes it from the user), lists the annotated slices per label, records slices the
user declares empty ("the structure ends here"), and gives engines the data in a canonical
orientation where the annotated axis is numpy axis 0.

Slices are counted per label: a slice is annotated for label L when it holds L, or when the
user declared it empty for L. A slice that holds only other labels says nothing about L.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .volume import LabelVolume

#: Numpy axis of each name for an image whose direction is (close to) the identity.
AXIS_NAMES = {"axial": 0, "coronal": 1, "sagittal": 2}
#: Fraction of labelled voxels that must have in-plane neighbours along both in-plane axes of
#: the annotated axis (a drawing is a 2D region, not the 1-voxel line a perpendicular drawing
#: leaves in a slice).
PLANARITY_THRESHOLD = 0.75


def axis_from_name(name: str, direction: Iterable[float]) -> int:
    """The numpy axis (0 = z, 1 = y, 2 = x) whose slices are axial, coronal or sagittal.

    Args:
        name: "axial", "coronal" or "sagittal".
        direction: the 9 row-major direction cosines (columns = index axes x, y, z in LPS).
    """
    if name not in AXIS_NAMES:
        raise InputError(f"Axis must be one of auto, {', '.join(AXIS_NAMES)}, not {name!r}")
    matrix = np.abs(np.asarray(tuple(direction), dtype=float).reshape(3, 3))
    # Slices of an axial stack are stacked along S (LPS row 2), coronal along P (row 1),
    # sagittal along L (row 0). Find the index axis (column) most aligned with that direction.
    world_row = {"axial": 2, "coronal": 1, "sagittal": 0}[name]
    index_axis_xyz = int(np.argmax(matrix[world_row]))
    return 2 - index_axis_xyz


def _in_plane_fraction(mask: np.ndarray, axis: int) -> float:
    """Fraction of True voxels with a True neighbour along both in-plane axes of ``axis``."""
    inner = np.ones_like(mask)
    for other in (a for a in range(3) if a != axis):
        shifted = np.zeros_like(mask)
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[other], hi[other] = slice(0, -1), slice(1, None)
        shifted[tuple(lo)] |= mask[tuple(hi)]
        shifted[tuple(hi)] |= mask[tuple(lo)]
        inner &= shifted
    return float((inner & mask).sum()) / max(int(mask.sum()), 1)


def detect_axis(array: np.ndarray) -> int:
    """The numpy axis along which the labels were drawn slice by slice.

    Among the axes whose slices hold planar drawings (see :data:`PLANARITY_THRESHOLD`), the one
    with the fewest labelled slices. Raises ValueError for an empty annotation or labels drawn
    on slices of different axes.
    """
    if not array.any():
        raise InputError("The annotation is empty: it holds no labelled voxel")
    # the same answer on the labels' bounding box (no labelled voxel outside it, so neither the
    # in-plane neighbours nor the slice counts change): cost follows what was drawn, not the grid
    box = []
    for axis in range(3):
        held = np.flatnonzero(array.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(int(held[0]), int(held[-1]) + 1))
    array = array[tuple(box)]
    planar, counts = [], []
    for axis in range(3):
        score = min(_in_plane_fraction(array == value, axis) for value in np.unique(array[array != 0]))
        planar.append(score)
        other = tuple(a for a in range(3) if a != axis)
        counts.append(int(np.count_nonzero(array.any(axis=other))))
    candidates = [a for a in range(3) if planar[a] >= PLANARITY_THRESHOLD]
    if not candidates:
        raise InputError(
            "The annotation mixes slices of different axes (no axis has planar drawings: in-plane "
            f"fractions z={planar[0]:.2f}, y={planar[1]:.2f}, x={planar[2]:.2f}); draw on one axis or pass --axis"
        )
    return min(candidates, key=lambda a: (counts[a], -planar[a], a))


def parse_empty_slices(text: str, labels: Iterable[int]) -> dict[int, list[int]]:
    """Parse ``--empty-slices``: "12,40" (every label) or "5:12,40;1:3" (per label).

    Returns {label value: [slice index, ...]}.
    """
    labels = list(labels)
    result: dict[int, list[int]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        if ":" in part:
            label_text, slices_text = part.split(":", 1)
            targets = [_parse_int(label_text, "label")]
        else:
            targets, slices_text = labels, part
        slices = [_parse_int(s, "slice") for s in slices_text.split(",") if s.strip()]
        for label in targets:
            result.setdefault(label, []).extend(slices)
    return result


def _parse_int(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise InputError(f"Empty-slice {what} must be an integer, not {text.strip()!r}") from None


@dataclass(frozen=True, eq=False)
class SparseAnnotation:
    """Labels drawn on a few slices of one axis, with the slices declared empty.

    Attributes:
        labels: the annotation label map on the image grid, (z, y, x).
        axis: numpy axis (0 = z, 1 = y, 2 = x) of the annotated slices.
        empty_slices: {label value: slice indices along ``axis`` declared free of that label}.
    """

    labels: LabelVolume
    axis: int
    empty_slices: Mapping[int, tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def from_labels(
        cls,
        labels: LabelVolume,
        axis: int | None = None,
        empty_slices: Mapping[int, Iterable[int]] | None = None,
    ) -> SparseAnnotation:
        """Build from a label map; detects the axis unless given (numpy axis 0, 1 or 2)."""
        if not labels.array.any():
            raise InputError("The annotation is empty: it holds no labelled voxel")
        if axis is None:
            axis = detect_axis(labels.array)
        if axis not in (0, 1, 2):
            raise InputError(f"Axis must be 0, 1 or 2 (numpy z, y, x), not {axis}")
        present = set(labels.label_values())
        n_slices = labels.array.shape[axis]
        empty: dict[int, tuple[int, ...]] = {}
        for value, slices in (empty_slices or {}).items():
            if value not in present:
                raise InputError(f"Empty slices given for label {value}, which the annotation does not hold")
            slices = tuple(sorted({int(s) for s in slices}))
            bad = [s for s in slices if not 0 <= s < n_slices]
            if bad:
                raise InputError(f"Empty slice {bad[0]} of label {value} is outside 0..{n_slices - 1}")
            empty[value] = slices
        annotation = cls(labels=labels, axis=axis, empty_slices=empty)
        for value, slices in empty.items():
            drawn = set(annotation.drawn_slices(value)) & set(slices)
            if drawn:
                raise InputError(f"Slice {min(drawn)} is declared empty for label {value} but holds it")
        return annotation

    # Canonical orientation -------------------------------------------------------------------
    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """View of a (z, y, x) array with the annotated axis first."""
        return np.moveaxis(array, self.axis, 0)

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_canonical`: back to (z, y, x)."""
        return np.moveaxis(array, 0, self.axis)

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        return self.to_canonical(self.labels.array).shape

    @property
    def n_slices(self) -> int:
        return self.labels.array.shape[self.axis]

    @property
    def spacing_canonical(self) -> tuple[float, float, float]:
        """Voxel size in mm in the canonical order (slice axis, rows, cols)."""
        zyx = self.labels.volume.spacing_zyx
        order = [self.axis] + [a for a in range(3) if a != self.axis]  # as np.moveaxis(_, axis, 0)
        return tuple(float(zyx[a]) for a in order)  # type: ignore[return-value]

    # Per-label queries -------------------------------------------------------------------------
    @property
    def label_values(self) -> list[int]:
        """Sorted label values drawn (computed once: an annotation is never modified)."""
        if "_label_values" not in self.__dict__:
            self.__dict__["_label_values"] = tuple(self.labels.label_values())
        return list(self.__dict__["_label_values"])

    def mask(self, value: int) -> np.ndarray:
        """(n_slices, rows, cols) bool: where label ``value`` was drawn, canonical orientation."""
        return self.to_canonical(self.labels.array == value)

    def drawn_slices(self, value: int) -> list[int]:
        """Sorted slice indices (along the annotated axis) that hold label ``value`` (computed once
        per value: engines ask per slice, and on a clinical grid each answer scans the volume)."""
        known = self.__dict__.setdefault("_drawn_slices", {})
        if value not in known:
            known[value] = tuple(int(s) for s in np.flatnonzero(self.mask(value).any(axis=(1, 2))))
        return list(known[value])

    def annotated_slices(self, value: int) -> list[int]:
        """Sorted slices annotated for ``value``: drawn ones and those declared empty."""
        return sorted(set(self.drawn_slices(value)) | set(self.empty_slices.get(value, ())))

    def restore_annotated(self, labels: np.ndarray) -> np.ndarray:
        """Copy of a canonical label array with every annotated slice exactly as drawn.

        On a slice annotated for label L, L is set where drawn and removed elsewhere; other
        labels on that slice are kept where L was not drawn.
        """
        out = labels.copy()
        drawn = self.to_canonical(self.labels.array)
        for value in self.label_values:
            for s in self.annotated_slices(value):
                drawn_here = drawn[s] == value
                out[s][(out[s] == value) & ~drawn_here] = 0
                out[s][drawn_here] = value
        return out
