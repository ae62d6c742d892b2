"""Quality control of a cohort's label maps: volumes, connected components and flags.

Per case and label: the volume in mL (voxel count x voxel volume from the spacing) and the
number of connected components (26-connectivity: voxels touching by a face, an edge or a corner
belong to one component). Flags, computed once the whole cohort is known:

- ``empty``: the label is in the model's segment table but has no voxel in this case;
- ``N components``: more than :data:`MANY_COMPONENTS` pieces (specks, leaks, a split organ);
- ``volume R x the cohort median``: the volume differs from the median of the same label over
  the cohort's non-empty cases by more than :data:`VOLUME_FACTOR` either way (needs at least
  :data:`MIN_CASES_FOR_MEDIAN` non-empty cases).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from ..volume import LabelVolume

#: More connected components than this flags a label.
MANY_COMPONENTS = 3
#: A volume more than this factor above or below the cohort median flags a label.
VOLUME_FACTOR = 2.0
#: Non-empty cases of a label needed before its cohort median is used.
MIN_CASES_FOR_MEDIAN = 3
_CONNECTIVITY = ndimage.generate_binary_structure(3, 3)


@dataclass(frozen=True)
class LabelStats:
    """One label of one case.

    Attributes:
        value: label value in the label map.
        name: segment name (``Segment_<value>`` when the table has none).
        voxels: number of voxels holding the value.
        volume_ml: voxels x voxel volume, in mL (1 mL = 1000 mm^3).
        components: connected components (26-connectivity); 0 when empty.
    """

    value: int
    name: str
    voxels: int
    volume_ml: float
    components: int

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> LabelStats:
        return cls(
            int(data["value"]),
            str(data["name"]),
            int(data["voxels"]),
            float(data["volume_ml"]),
            int(data["components"]),
        )


def label_stats(labels: LabelVolume) -> list[LabelStats]:
    """Statistics of every label in the segment table or present in the array, by value.

    Args:
        labels: a label map (z, y, x) with its spacing (mm) and segment table.

    Returns:
        One :class:`LabelStats` per label value > 0, sorted by value; labels of the table that
        are absent from the array have 0 voxels, 0 mL and 0 components.
    """
    array = labels.array
    voxel_ml = float(np.prod(labels.volume.spacing)) / 1000.0
    present = labels.label_values()
    values = sorted(set(present) | {s.value for s in labels.segments if s.value > 0})
    boxes = ndimage.find_objects(array) if present else []
    stats = []
    for value in values:
        box = boxes[value - 1] if value - 1 < len(boxes) else None
        if box is None:
            voxels, components = 0, 0
        else:
            mask = array[box] == value
            voxels = int(np.count_nonzero(mask))
            components = int(ndimage.label(mask, structure=_CONNECTIVITY)[1])
        stats.append(LabelStats(value, labels.segment(value).display_name(), voxels, voxels * voxel_ml, components))
    return stats


def cohort_flags(
    stats_by_case: Mapping[str, Sequence[LabelStats]],
    *,
    many_components: int = MANY_COMPONENTS,
    volume_factor: float = VOLUME_FACTOR,
    min_cases: int = MIN_CASES_FOR_MEDIAN,
) -> dict[tuple[str, int], list[str]]:
    """Flags per (case id, label value); labels without a flag are absent from the result.

    Args:
        stats_by_case: the :func:`label_stats` of every case that has a label map.
        many_components: more components than this is flagged.
        volume_factor: > 1; a volume above median x factor or below median / factor is flagged.
        min_cases: non-empty cases of a label needed to compare with its median.
    """
    if volume_factor <= 1:
        raise ValueError(f"volume_factor must be > 1, not {volume_factor!r}")
    volumes: dict[int, list[float]] = {}
    for stats in stats_by_case.values():
        for s in stats:
            if s.voxels:
                volumes.setdefault(s.value, []).append(s.volume_ml)
    medians = {v: float(np.median(vols)) for v, vols in volumes.items() if len(vols) >= min_cases}
    flags: dict[tuple[str, int], list[str]] = {}
    for case_id, stats in stats_by_case.items():
        for s in stats:
            found = []
            if not s.voxels:
                found.append("empty")
            if s.components > many_components:
                found.append(f"{s.components} components")
            median = medians.get(s.value)
            if s.voxels and median:
                ratio = s.volume_ml / median
                if ratio > volume_factor or ratio < 1 / volume_factor:
                    found.append(f"volume {ratio:.2g} x the cohort median ({median:.4g} mL)")
            if found:
                flags[(case_id, s.value)] = found
    return flags
