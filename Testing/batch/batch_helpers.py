"""Test models and tiny cases for the batch tests.

:class:`ThresholdModel` is a cheap :class:`~SAMFewShotLib.batch.models.CaseModel`: label 1 where
the image is above a threshold, label 2 declared in the segment table but never drawn. It can
sleep (to be caught mid-case), fail or crash its process on chosen cases, and leaves a start
marker per call (``<tag>.<pid>.<n>.start`` in ``log_dir``) so tests count how often a case ran.
A case's tag is the value of its voxel (0, 0, 0).
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from SAMFewShotLib.batch.models import CaseModel
from SAMFewShotLib.volume import LabelVolume, Segment, Volume
from SAMFewShotLib.volume_io import write_volume

#: Intensity inside the bright box of every test case.
BRIGHT = 200


@dataclass(frozen=True)
class ThresholdModel(CaseModel):
    threshold: float = 100.0
    sleep: float = 0.0
    log_dir: str | None = None
    fail_tags: tuple[int, ...] = ()
    crash_tags: tuple[int, ...] = ()
    digest: str = "threshold-model-v1"
    device: str = "cpu"
    kind: str = "test"

    def segment(self, image: Volume) -> LabelVolume:
        tag = int(image.array[0, 0, 0])
        if self.log_dir is not None:
            Path(self.log_dir, f"{tag}.{os.getpid()}.{uuid.uuid4().hex[:8]}.start").touch()
        time.sleep(self.sleep)
        if tag in self.crash_tags:
            os._exit(7)
        if tag in self.fail_tags:
            raise ValueError(f"test model refuses case tag {tag}")
        array = (image.array > self.threshold).astype(np.uint8)
        segments = (Segment(1, "bright", (1.0, 0.0, 0.0)), Segment(2, "never", (0.0, 1.0, 0.0)))
        return LabelVolume(image.with_array(array), segments)


def case_volume(tag: int, shape=(6, 8, 10), box=(slice(2, 4), slice(2, 6), slice(3, 8)), **geometry) -> Volume:
    """A float32 volume (z, y, x) of zeros with a BRIGHT box and ``tag`` at voxel (0, 0, 0)."""
    array = np.zeros(shape, np.float32)
    array[box] = BRIGHT
    array[0, 0, 0] = tag
    return Volume(array, **geometry)


def write_cases(folder: Path, n: int, *, names: list[str] | None = None) -> list[Path]:
    """n NIfTI cases with tags 1..n and different spacing, origin and direction each."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        angle = 0.3 * i
        c, s = np.cos(angle), np.sin(angle)
        volume = case_volume(
            i + 1,
            spacing=(0.5 + 0.25 * i, 1.0 + 0.5 * i, 2.0 + i),
            origin=(10.0 * i, -5.0 * i, 3.0 + i),
            direction=(c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0),
        )
        path = folder / f"{(names or [])[i] if names else f'case{i + 1}'}.nii.gz"
        write_volume(volume, path)
        paths.append(path)
    return paths


def start_markers(log_dir: Path) -> dict[int, int]:
    """How many times each case tag was started."""
    counts: dict[int, int] = {}
    for marker in log_dir.glob("*.start"):
        tag = int(marker.name.split(".")[0])
        counts[tag] = counts.get(tag, 0) + 1
    return counts


def wait_for(predicate, timeout: float = 60.0, step: float = 0.05):
    """Poll ``predicate()`` until it returns a truthy value (returned) or ``timeout`` s pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError("condition not reached")
