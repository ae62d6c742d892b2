"""The ``interpolate`` engine: 3D Slicer's "Fill between slices".

ITK morphological contour interpolation (Albu et al. 2008, itk-morphologicalcontourinterpolation)
with the settings of Slicer's Segment Editor effect (see
:data:`~SAMFewShotLib.engines.contour_interpolation.FILTER_SETTINGS`), run one label at a time
along the annotated axis only. Like the Slicer effect it fills between the outermost drawn slices
of each label and nothing outside them. Unlike it, the key slices are given to the filter
explicitly: every drawn slice counts (also one whose neighbour is drawn, which the filter's own
detection skips), and a slice declared empty inside the drawn range is a key slice where the
structure vanishes. Declared-empty slices never widen the range.

The filter runs in ONE child process per :meth:`InterpolateEngine.propagate` call (all labels),
see :func:`run_contour_interpolation`: the filter's library can corrupt the heap at interpreter
exit, so the child leaves with ``os._exit`` right after delivering its result and the caller's
process never loads it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..annotation import SparseAnnotation
from ..progress import Cancelled, CancelToken, Progress, no_progress
from ..propagation.working_grid import DEFAULT_WORKING_MM, WorkingGrid
from ..volume import Volume
from . import contour_interpolation
from .base import (
    LabelProbability,
    Prediction,
    Timer,
    check_same_grid,
    per_label_prediction,
)

#: The file the child process runs (loaded by path, never through the package).
CHILD_SCRIPT = Path(contour_interpolation.__file__)
#: Started as ``python -c CHILD_BOOTSTRAP SCRIPT JOB_DIR`` with the job folder as working
#: directory, so the child's sys.path holds no package folder whose files could shadow modules.
CHILD_BOOTSTRAP = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('samfewshot_contour_interpolation', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)\n"
    "module.main(sys.argv[2:])\n"
)
#: Confidence of an interpolated slice halves every this many mm from the nearest annotated slice.
CONFIDENCE_HALF_DISTANCE_MM = 10.0
#: In-plane margin around a label's drawn voxels: this fraction of the extent, at least
#: MIN_MARGIN voxels (the margin Slicer's auto-complete effects add around the segments).
MARGIN_FRACTION = 0.1
MIN_MARGIN = 3
#: Seconds between two looks at the child (cancel, progress, exit).
POLL_SECONDS = 0.02
#: Seconds a child may take to exit after it delivered its result before it is killed.
EXIT_GRACE_SECONDS = 10.0


def python_executable() -> str:
    """The Python interpreter for child processes.

    ``SAMFEWSHOT_PYTHON`` when set; else ``sys.executable`` when it is a Python interpreter;
    else (inside 3D Slicer, where ``sys.executable`` is the application) ``PythonSlicer``.
    """
    override = os.environ.get("SAMFEWSHOT_PYTHON")
    if override:
        return override
    if os.path.basename(sys.executable).lower().startswith("python"):
        return sys.executable
    return shutil.which("PythonSlicer") or sys.executable


@dataclass
class SlabJob:
    """One binary slab for the child.

    Attributes:
        slab: (n_slices, rows, cols) bool, canonical orientation (slices along axis 0).
        slices: annotated slice indices within the slab (drawn and declared empty).
        spacing_xyz: voxel size in mm, ITK order (cols, rows, slices).
    """

    slab: np.ndarray
    slices: list[int]
    spacing_xyz: tuple[float, float, float]


def _stderr_tail(path: Path, limit: int = 2000) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return text[-limit:]


def _delivered(job_dir: Path, count: int) -> dict | None:
    """The child's summary when ``done.json`` and every output exist, else None."""
    try:
        summary = json.loads((job_dir / contour_interpolation.DONE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if summary.get("count") != count or not all((job_dir / f"result_{i}.npy").exists() for i in range(count)):
        return None
    return summary


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


class ContourInterpolationChild:
    """One child process interpolating every slab of ``jobs``: started on construction, so the
    caller can work (register) while the child imports ITK and filters; :meth:`result` collects.

    The child gets the slabs through .npy files in a temporary folder, writes each result
    under a temporary name and renames it, writes ``done.json`` last and leaves with
    ``os._exit(0)``. Use as a context manager (or call :meth:`close`): the child is killed if
    still running and the folder removed.
    """

    def __init__(self, jobs: list[SlabJob]) -> None:
        self.jobs = jobs
        self.process: subprocess.Popen | None = None
        self.job_dir: Path | None = None
        if not jobs:
            return
        self.job_dir = job_dir = Path(tempfile.mkdtemp(prefix="samfewshot-interpolate-"))
        try:
            entries = []
            for i, job in enumerate(jobs):
                np.save(job_dir / f"slab_{i}.npy", np.ascontiguousarray(job.slab, dtype=np.uint8))
                entries.append(
                    {
                        "input": f"slab_{i}.npy",
                        "output": f"result_{i}.npy",
                        "slices": [int(s) for s in job.slices],
                        "spacing": [float(s) for s in job.spacing_xyz],
                    }
                )
            (job_dir / contour_interpolation.JOB_FILE).write_text(json.dumps({"slabs": entries}))
            self.stderr_path = job_dir / "stderr.txt"
            command = [python_executable(), "-c", CHILD_BOOTSTRAP, str(CHILD_SCRIPT), str(job_dir)]
            self.start = time.perf_counter()
            with open(self.stderr_path, "wb") as stderr:
                try:
                    self.process = subprocess.Popen(
                        command,
                        cwd=job_dir,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=stderr,
                        creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),  # no console flash on Windows
                    )
                except OSError as error:
                    raise RuntimeError(
                        f"Could not start the contour interpolation process {command[0]}: {error}"
                    ) from error
        except BaseException:
            self.close()
            raise

    def result(
        self,
        *,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
        stage: str = "interpolate: contour interpolation",
    ) -> tuple[list[np.ndarray], dict]:
        """Wait for the child; (bool slabs, child statistics), see :func:`run_contour_interpolation`."""
        jobs, process, job_dir = self.jobs, self.process, self.job_dir
        if not jobs:
            return [], {}
        assert process is not None and job_dir is not None
        try:
            summary = None
            delivered_at = None
            reported = -1
            while True:
                if cancel is not None and cancel.cancelled:
                    _kill(process)
                    raise Cancelled("cancelled")
                exit_code = process.poll()
                if summary is None:
                    summary = _delivered(job_dir, len(jobs))
                    if summary is not None:
                        delivered_at = time.perf_counter()
                done = len(jobs) if summary is not None else sum(
                    (job_dir / f"result_{i}.npy").exists() for i in range(len(jobs))
                )
                if done != reported:
                    progress(stage, done, len(jobs))
                    reported = done
                if exit_code is not None:
                    break
                if delivered_at is not None and time.perf_counter() - delivered_at > EXIT_GRACE_SECONDS:
                    _kill(process)  # delivered but hung on the way out
                    exit_code = process.returncode
                    break
                time.sleep(POLL_SECONDS)
            child_seconds = time.perf_counter() - self.start
            if summary is None:
                summary = _delivered(job_dir, len(jobs))
            if summary is None and exit_code in (-signal.SIGTERM, -signal.SIGINT):
                raise Cancelled("the contour interpolation process was stopped (the command is being cancelled)")
            if summary is None:
                tail = _stderr_tail(self.stderr_path)
                raise RuntimeError(
                    f"The contour interpolation process ended (exit code {exit_code}) before delivering its result"
                    + (f": {tail}" if tail else "")
                )
            results = [np.load(job_dir / f"result_{i}.npy") != 0 for i in range(len(jobs))]
            statistics = {
                "child_seconds": child_seconds,
                "child_import_seconds": float(summary.get("import_seconds", float("nan"))),
                "child_filter_seconds": float(summary.get("filter_seconds", float("nan"))),
                "child_exit_code": int(exit_code),
            }
            return results, statistics
        finally:
            self.close()

    def close(self) -> None:
        """Kill the child if it still runs and remove its folder."""
        if self.process is not None and self.process.poll() is None:
            _kill(self.process)
        if self.job_dir is not None:
            shutil.rmtree(self.job_dir, ignore_errors=True)

    def __enter__(self) -> ContourInterpolationChild:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_contour_interpolation(
    jobs: list[SlabJob],
    *,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
    stage: str = "interpolate: contour interpolation",
) -> tuple[list[np.ndarray], dict]:
    """Interpolate every slab in one child process; returns (bool slabs, child statistics).

    The result is accepted once ``done.json`` and all results exist, whatever the child's exit
    code (a crash after delivery is harmless); if the child ends before that, RuntimeError names
    its exit code and the end of its stderr. ``cancel`` is polled every :data:`POLL_SECONDS`; on
    cancel the child is killed and :class:`Cancelled` raised.

    Statistics: ``child_seconds`` (start to exit), ``child_import_seconds`` and
    ``child_filter_seconds`` (as the child measured them), ``child_exit_code``.
    """
    if not jobs:
        return [], {}
    if cancel is not None:
        cancel.raise_if_cancelled()
    with ContourInterpolationChild(jobs) as child:
        return child.result(progress=progress, cancel=cancel, stage=stage)


def slice_confidence(
    n_slices: int, drawn: list[int], annotated: list[int], slice_spacing_mm: float
) -> np.ndarray:
    """(n_slices,) float32 confidence of the interpolation along the annotated axis.

    1 on every annotated slice (drawn or declared empty); between the outermost drawn slices
    ``0.5 ** (d / CONFIDENCE_HALF_DISTANCE_MM)`` with ``d`` the distance in mm to the nearest
    annotated slice; 0 on the other slices outside the drawn range (nothing is predicted there).
    """
    confidence = np.zeros(n_slices, dtype=np.float32)
    if drawn:
        positions = np.arange(drawn[0], drawn[-1] + 1)
        anchors = np.asarray(annotated)
        distance = np.abs(positions[:, None] - anchors[None, :]).min(axis=1) * slice_spacing_mm
        confidence[positions] = 0.5 ** (distance / CONFIDENCE_HALF_DISTANCE_MM)
    confidence[list(annotated)] = 1.0
    return confidence


@dataclass
class LabelPlan:
    """Where one label's slab sits in the canonical volume."""

    value: int
    drawn: list[int]
    annotated: list[int]
    box: tuple[slice, slice, slice]  # (slices, rows, cols) of the slab in the canonical volume
    slab: np.ndarray  # the drawn voxels inside ``box`` (bool)
    job: SlabJob | None  # None when there is nothing to interpolate
    grid: WorkingGrid | None = None  # the in-plane working grid of ``job``'s slab


def plan_label(
    annotation: SparseAnnotation, value: int, leave_out: int | None = None, working_mm: float = DEFAULT_WORKING_MM
) -> LabelPlan:
    """Where label ``value`` is interpolated; ``leave_out`` drops one drawn slice (as if it had
    not been drawn: auto's leave-one-slice-out validation) and plans only the gap around it.

    The child gets the slab on the box's working grid (``working_mm`` in-plane, see
    ``propagation/working_grid.py``; the box itself where the pixels are about that size):
    the filter's cost follows the structure's physical size, not the voxel count."""
    mask = annotation.mask(value)
    drawn = annotation.drawn_slices(value)
    annotated = annotation.annotated_slices(value)
    if leave_out is not None:
        mask = mask.copy()
        mask[leave_out] = False
        drawn = [s for s in drawn if s != leave_out]
        annotated = [s for s in annotated if s != leave_out]
    first, last = drawn[0], drawn[-1]
    if leave_out is not None and first < leave_out < last:
        # Interpolation between two key slices depends on those two only: the slab between the
        # left-out slice's drawn neighbours is enough to predict it.
        first = max(s for s in drawn if s < leave_out)
        last = min(s for s in drawn if s > leave_out)
    rows = np.flatnonzero(mask[first : last + 1].any(axis=(0, 2)))
    cols = np.flatnonzero(mask[first : last + 1].any(axis=(0, 1)))
    in_plane = []
    for found, size in ((rows, mask.shape[1]), (cols, mask.shape[2])):
        lo, hi = int(found[0]), int(found[-1]) + 1
        margin = max(MIN_MARGIN, math.ceil(MARGIN_FRACTION * (hi - lo)))
        in_plane.append(slice(max(lo - margin, 0), min(hi + margin, size)))
    box = (slice(first, last + 1), in_plane[0], in_plane[1])
    keys = [s - first for s in annotated if first <= s <= last]
    needs_filling = any(b - a > 1 for a, b in zip(keys, keys[1:]))
    job, grid = None, None
    if needs_filling:
        spacing = annotation.spacing_canonical  # (slices, rows, cols) mm
        grid = WorkingGrid.around((box[1], box[2]), (spacing[1], spacing[2]), working_mm)
        slab = mask[box]
        if grid.resampled:
            slab = np.stack([grid.mask(plane) for plane in slab])
        job = SlabJob(slab=slab, slices=keys, spacing_xyz=(grid.spacing[1], grid.spacing[0], spacing[0]))
    return LabelPlan(value=value, drawn=drawn, annotated=annotated, box=box, slab=mask[box], job=job, grid=grid)


def plan_probability(
    plan: LabelPlan,
    filled: np.ndarray | None,
    shape: tuple[int, int, int],
    slice_spacing: float,
) -> LabelProbability:
    """A label's canonical probability (1.0 inside, 0.0 outside) from its plan and the child's
    filled slab (None when there was nothing to fill: the drawn slices as they are)."""
    inside = plan.slab if filled is None else filled
    if filled is not None and plan.grid is not None and plan.grid.resampled:
        inside = plan.grid.upsample(filled.astype(np.float32)) >= 0.5
    return LabelProbability(
        probability=inside.astype(np.float32),
        box=plan.box,
        slice_confidence=slice_confidence(shape[0], plan.drawn, plan.annotated, slice_spacing),
        details={"drawn_slices": plan.drawn, "filled_range": [plan.drawn[0], plan.drawn[-1]]},
    )


class InterpolateEngine:
    """Slicer's "Fill between slices" (ITK morphological contour interpolation) per label.

    Needs no image intensities and no weights. Per label: probability 1.0 inside the
    interpolated shape and 0.0 elsewhere (float32), only between the outermost drawn slices;
    slice confidence as :func:`slice_confidence`.
    """

    name = "interpolate"

    def __init__(self, working_mm: float = DEFAULT_WORKING_MM) -> None:
        if not working_mm > 0:
            raise ValueError(f"The working pixel size must be positive, not {working_mm!r}")
        self.working_mm = float(working_mm)

    def propagate(
        self,
        image: Volume,
        annotation: SparseAnnotation,
        *,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> Prediction:
        """Interpolate every label of ``annotation`` between its drawn slices.

        Args:
            image: the image; only its grid is checked (it must be the annotation's).
            annotation: the sparse annotation; its axis is the interpolation axis.
            progress: called with ("interpolate: contour interpolation", done, total) while the
                child runs and ("interpolate: labels", done, total) per label.
            cancel: polled while the child runs (the child is killed) and between labels.

        Returns:
            The prediction on the image grid; counters hold the child's timings
            (``child_seconds``, ``child_import_seconds``, ``child_filter_seconds``).
        """
        check_same_grid(image, annotation)
        timer = Timer()
        with timer.stage("prepare"):
            plans = {value: plan_label(annotation, value, working_mm=self.working_mm)
                     for value in annotation.label_values}
        pending = [plan for plan in plans.values() if plan.job is not None]
        with timer.stage("contour interpolation"):
            filled, statistics = run_contour_interpolation(
                [plan.job for plan in pending], progress=progress, cancel=cancel  # type: ignore[misc]
            )
        results = {plan.value: slab for plan, slab in zip(pending, filled)}
        shape = annotation.canonical_shape
        slice_spacing = annotation.spacing_canonical[0]

        def propagate_label(value: int) -> LabelProbability:
            return plan_probability(plans[value], results.get(value), shape, slice_spacing)

        counters = {"labels": len(plans), "labels_interpolated": len(pending), "child_processes": int(bool(pending))}
        counters.update(statistics)
        return per_label_prediction(
            self.name, annotation, propagate_label, progress=progress, cancel=cancel, timer=timer, counters=counters
        )
