"""Small files for the fault tests: a tiny image with a sparse annotation, truncated copies,
and the command line run in-process with its stderr lines."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import SAMFewShotLib.cli.main as cli
from SAMFewShotLib.volume import LabelVolume, Segment, Volume
from SAMFewShotLib.volume_io import write_labels, write_volume
from Testing.batch.batch_helpers import ThresholdModel

SHAPE = (12, 16, 16)


def tiny_case(folder: Path, ext: str = ".nii.gz") -> tuple[Path, Path]:
    """An image (int16, z, y, x = 12 x 16 x 16, random texture so it compresses poorly) and an
    annotation of a box drawn on slices 3, 6 and 9; returns their paths."""
    rng = np.random.default_rng(0)
    array = rng.integers(-500, 500, SHAPE).astype(np.int16)
    image = Volume(array, spacing=(1.0, 1.0, 2.0))
    labels = np.zeros(SHAPE, np.uint8)
    for z in (3, 6, 9):
        labels[z, 4:12, 5:11] = 1
    image_path = folder / ("image.nii.gz" if ext == ".seg.nrrd" else f"image{ext}")
    labels_path = folder / f"labels{ext}"
    write_volume(image, image_path)
    write_labels(LabelVolume(image.with_array(labels), (Segment(1, "box"),)), labels_path)
    return image_path, labels_path


def truncated_copy(source: Path, target: Path, keep: float = 0.5) -> Path:
    """``target`` holding the first ``keep`` fraction of ``source``'s bytes."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target


def run_cli(args, capfd) -> tuple[int, list[str], str]:
    """``samfewshot ARGS`` in-process: (exit code, non-empty stderr lines at the fd level, stdout)."""
    code = cli.main([str(a) for a in args])
    captured = capfd.readouterr()
    return code, [line for line in captured.err.splitlines() if line.strip()], captured.out


class CopyEngine:
    """A stand-in engine for command-line fault tests: the annotation as the result (the faults
    are in reading and writing, not in propagation; the real engines start child processes)."""

    name = "copy"

    def propagate(self, image, annotation, *, progress=None, cancel=None):
        from SAMFewShotLib.prediction import Prediction

        return Prediction(
            labels=annotation.labels, slice_confidence={}, expected_dice={}, seconds={"propagate": 0.0},
            counters={}, axis=int(annotation.axis),
        )


def use_copy_engine(monkeypatch) -> None:
    """``--engine interpolate`` runs :class:`CopyEngine` (patched into ``engines.make_engine``)."""
    import SAMFewShotLib.engines as engines

    monkeypatch.setattr(engines, "make_engine", lambda spec, **options: CopyEngine())



@dataclass(frozen=True)
class LeakyModel(ThresholdModel):
    """A batch model whose workers copy "patient data" to a temporary folder (as an atlas
    extraction does) and never clean up; with ``crash_tags`` they leave by ``os._exit``."""

    def segment(self, image: Volume) -> LabelVolume:
        folder = tempfile.mkdtemp(prefix="samfewshot-atlas-")
        with open(os.path.join(folder, "atlas_image.nii.gz"), "wb") as handle:
            handle.write(b"patient data")
        return super().segment(image)
