"""ITK morphological contour interpolation, run in a child process.

This file is what the child process of the ``interpolate`` engine executes: it is loaded by
path (never through the ``SAMFewShotLib`` package) and imports nothing but the standard
library, numpy and itk. It reads a job folder written by the parent, interpolates every slab,
writes the results, and leaves with ``os._exit`` without interpreter teardown:
itk-morphologicalcontourinterpolation 2.1.2 can abort with heap corruption
("malloc_consolidate") when the interpreter exits after running the filter.

Job folder protocol (all paths relative to the folder):

- ``job.json`` (parent): ``{"slabs": [{"input", "output", "slices", "spacing"}, ...]}``.
  ``input`` is a uint8 .npy of shape (n_slices, rows, cols) holding 1 inside the label, in the
  canonical orientation (slices along numpy axis 0, = ITK axis 2); ``slices`` the indices of
  the annotated slices within the slab (drawn ones and ones declared empty); ``spacing`` the
  voxel size in mm in ITK order (cols, rows, slices).
- ``output`` (child): the interpolated slab, uint8 .npy of the same shape, written under a
  temporary name and renamed when complete.
- ``done.json`` (child, last): ``{"count", "import_seconds", "filter_seconds"}``, renamed into
  place after every output exists. Its presence means the result was fully delivered.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

JOB_FILE = "job.json"
DONE_FILE = "done.json"

#: The filter's settings, as 3D Slicer's "Fill between slices" runs it
#: (vtkITKMorphologicalContourInterpolator: heuristic alignment on, repeated dilations with the
#: cross structuring element rather than the distance transform, the filter's default
#: extrapolation of branch extremities). Axis, label and slice positions are set per slab.
FILTER_SETTINGS = {
    "HeuristicAlignment": True,
    "UseDistanceTransform": False,
    "UseBallStructuringElement": False,
    "UseExtrapolation": True,
}
#: The ITK axis of the slabs' slice axis: numpy (slices, rows, cols) is ITK (cols, rows, slices).
SLICE_AXIS_ITK = 2
#: The label value inside a slab.
SLAB_LABEL = 1


def load_filter():
    """(itk module, the uint8 3D MorphologicalContourInterpolator class).

    Imports the filter's own wrapping module directly: that loads only what the filter needs
    (about 0.5 s), where ``itk.MorphologicalContourInterpolator`` lazily loads every module it
    depends on (about 10 s). Falls back to the lazy attribute if the wrapping layout differs.
    """
    import itk

    try:
        from itk import itkMorphologicalContourInterpolatorPython as wrapping

        return itk, wrapping.itkMorphologicalContourInterpolatorIUC3
    except (ImportError, AttributeError):
        return itk, itk.MorphologicalContourInterpolator[itk.Image[itk.UC, 3]]


def interpolate_slab(
    slab: np.ndarray,
    slices: list[int],
    spacing_xyz: tuple[float, float, float] = (1.0, 1.0, 1.0),
    settings: dict | None = None,
) -> np.ndarray:
    """Fill between the annotated slices of one binary slab (in this process).

    Args:
        slab: (n_slices, rows, cols) array, non-zero inside; slices along numpy axis 0.
        slices: indices (along axis 0) of the annotated slices; the filter interpolates between
            consecutive ones. A listed slice without any voxel is an annotated empty slice.
        spacing_xyz: voxel size in mm in ITK order (cols, rows, slices).
        settings: filter settings overriding :data:`FILTER_SETTINGS`.

    Returns:
        (n_slices, rows, cols) uint8, 1 inside.
    """
    itk, filter_class = load_filter()
    image = itk.image_from_array(np.ascontiguousarray(slab != 0, dtype=np.uint8))
    image.SetSpacing([float(s) for s in spacing_xyz])
    interpolator = filter_class.New()
    interpolator.SetInput(image)
    interpolator.SetLabel(SLAB_LABEL)
    interpolator.SetAxis(SLICE_AXIS_ITK)
    for name, value in {**FILTER_SETTINGS, **(settings or {})}.items():
        getattr(interpolator, f"Set{name}")(value)
    # Custom positions: every annotated slice is a key slice, also drawn slices with drawn
    # neighbours (which the filter's own detection skips) and slices declared empty.
    interpolator.SetUseCustomSlicePositions(True)
    interpolator.SetLabeledSliceIndices(SLICE_AXIS_ITK, SLAB_LABEL, sorted(int(s) for s in slices))
    interpolator.Update()
    return (itk.array_from_image(interpolator.GetOutput()) == SLAB_LABEL).astype(np.uint8)


def _save_atomic(path: Path, write) -> None:
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as stream:
        write(stream)
    os.replace(partial, path)


def run_job(job_dir: Path) -> dict:
    """Interpolate every slab of a job folder and write the outputs and ``done.json``."""
    job_dir = Path(job_dir)
    job = json.loads((job_dir / JOB_FILE).read_text())
    start = time.perf_counter()
    load_filter()
    import_seconds = time.perf_counter() - start
    filter_seconds = 0.0
    for entry in job["slabs"]:
        slab = np.load(job_dir / entry["input"])
        start = time.perf_counter()
        result = interpolate_slab(slab, entry["slices"], tuple(entry["spacing"]), job.get("settings"))
        filter_seconds += time.perf_counter() - start
        _save_atomic(job_dir / entry["output"], lambda stream, array=result: np.save(stream, array))
    summary = {"count": len(job["slabs"]), "import_seconds": import_seconds, "filter_seconds": filter_seconds}
    _save_atomic(job_dir / DONE_FILE, lambda stream: stream.write(json.dumps(summary).encode()))
    return summary


def main(argv: list[str] | None = None) -> None:
    """Child entry point: ``main([job_dir])``. Never returns: leaves with ``os._exit``."""
    args = sys.argv[1:] if argv is None else argv
    code = 0
    try:
        if len(args) != 1:
            raise SystemExit(f"usage: contour_interpolation.py JOB_DIR, not {args}")
        run_job(Path(args[0]))
    except BaseException:  # noqa: BLE001 - report anything, then leave without teardown
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
