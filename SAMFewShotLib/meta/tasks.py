"""Meta-training tasks: one structure of one labelled volume, and the episodes sampled from it.

A task is (volume, label value) along one axis. An episode imitates one propagation: K support
slices spread over the structure's extent (one drawn at random from each of K equal parts), Q
query slices inside the extent (not supports), and, when there is one, the first slice just
outside the extent as an empty query (the outward propagation must stop there). Every query's
support is its nearest support slice, whose mask is also its prior.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..progress import CancelToken, Progress, no_progress
from ..sam.preprocess import Preprocessing
from ..volume import LabelVolume, Volume
from .labeled_dir import LabeledCase
from .online import SupportSet, nearest
from .slices import SliceExample, prepare


@dataclass
class Task:
    """One structure of one volume.

    Attributes:
        name: "case:label".
        volume: the image.
        mask: (n_slices, rows, cols) bool, the structure with the slice axis first.
        axis: numpy axis of the slices.
        preprocessing: the intensity window for SAM.
    """

    name: str
    volume: Volume
    mask: np.ndarray
    axis: int
    preprocessing: Preprocessing

    @property
    def slices(self) -> list[int]:
        """Slice indices holding the structure."""
        return [int(z) for z in np.flatnonzero(self.mask.any(axis=(1, 2)))]


@dataclass
class Episode:
    """Support pairs and query pairs of one meta-training iteration."""

    task: Task
    support_set: SupportSet
    queries: list[tuple[SliceExample, SliceExample]]


def tasks_from_volumes(
    cases: Sequence[tuple[str, Volume, LabelVolume]],
    *,
    axis: int = 0,
    labels: Sequence[int] | None = None,
    window: str = "auto",
    min_slices: int = 3,
    held_out: int | None = None,
) -> tuple[list[Task], list[str]]:
    """Tasks of every (or of the listed) label of every volume, and notes on those skipped
    (fewer than ``min_slices`` slices). ``held_out``: a label left out of every volume
    (leave-one-organ-out). InputError (one line) when a listed or held-out label is in no
    volume or when no task is left."""
    tasks, notes = [], []
    seen: set[int] = set()
    for name, volume, label_volume in cases:
        volume.require_same_grid(label_volume.volume, f"labels of {name}")
        values = label_volume.label_values()
        seen |= set(values)
        chosen = [v for v in (values if labels is None else [v for v in labels if v in values]) if v != held_out]
        preprocessing = Preprocessing.for_volume(volume, window=window)
        for value in chosen:
            mask = np.moveaxis(label_volume.array == value, axis, 0)
            task = Task(f"{name}:{value}", volume, mask, axis, preprocessing)
            if len(task.slices) < min_slices:
                notes.append(f"{task.name} skipped: {len(task.slices)} slices (fewer than {min_slices})")
                continue
            tasks.append(task)
    for value in [*(labels or ()), *([] if held_out is None else [held_out])]:
        if value not in seen:
            raise InputError(f"Label {value} is in none of the labelled volumes (labels found: {sorted(seen)})")
    if not tasks:
        raise InputError(
            f"No meta-training task: every structure spans fewer than {min_slices} slices or the labels are empty"
        )
    return tasks, notes


def read_cases(
    cases: Sequence[LabeledCase], *, progress: Progress = no_progress, cancel: CancelToken | None = None
) -> list[tuple[str, Volume, LabelVolume]]:
    """Read the images and labels of a LABELED_DIR (one-line errors from the readers)."""
    from ..volume_io import read_labels, read_volume

    out = []
    for i, case in enumerate(cases):
        if cancel is not None:
            cancel.raise_if_cancelled()
        image = read_volume(case.image)
        labels = read_labels(case.labels)
        if not labels.array.any():
            raise InputError(f"Labels {case.labels} hold no labelled voxel")
        out.append((case.name, image, labels))
        progress("meta-train: read volumes", i + 1, len(cases))
    return out


def sample_episode(
    sam, task: Task, shots: int, queries: int, max_shift: float, rng: np.random.Generator
) -> Episode:
    """An episode of ``shots`` supports and up to ``queries`` queries (see the module docstring)."""
    slices = task.slices
    shots = max(1, min(shots, len(slices) - 1))
    parts = np.array_split(np.asarray(slices), shots)
    chosen = sorted(int(rng.choice(part)) for part in parts)
    first, last = slices[0], slices[-1]
    candidates = [z for z in range(first, last + 1) if z not in chosen]
    picked = sorted(int(z) for z in rng.choice(candidates, size=min(queries, len(candidates)), replace=False))
    outside = [z for z in (first - 1, last + 1) if 0 <= z < task.mask.shape[0]]
    if outside:
        picked.append(int(rng.choice(outside)))

    def example(z: int) -> SliceExample:
        return prepare(sam, task.volume, task.axis, z, task.preprocessing, task.mask[z])

    supports = [example(z) for z in chosen]
    support_set = SupportSet(supports, [], task.volume, task.axis, task.preprocessing, max_shift)
    query_pairs = [(example(z), nearest(z, supports)) for z in picked]
    return Episode(task, support_set, query_pairs)
