"""The ``samfewshot`` command lines the Slicer module runs, and what an engine still needs.

Every builder returns an argv list for :class:`subprocess.Popen` (no shell, so paths with
spaces need no quoting): ``[python_executable, "-m", "SAMFewShotLib", ...]``. Running the
package with the Python that runs Slicer avoids depending on a ``samfewshot`` script on PATH.
Paths are passed as given (``str()`` of a :class:`pathlib.Path` is fine); nothing here touches
the file system.

This module is deliberately light (no numpy, no engine imports) so the Slicer module can import
it when its GUI is built; ``Testing/slicer_support/test_slicer_commands.py`` checks that the engine table below
matches :mod:`SAMFewShotLib.engines`. The ``weights``, ``atlas`` and ``batch`` command lines are in
:mod:`.weights_commands`, :mod:`.atlas_commands` and :mod:`.batch_commands`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Union

from ..engines.catalog import DEVICES, WEIGHTED_ENGINES, WEIGHTLESS_ENGINES  # the one engine list

PathLike = Union[str, "os.PathLike[str]"]
EmptySlices = Union[str, Sequence[int], Mapping[int, Sequence[int]], None]

#: ``python -m`` target of every command.
MODULE = "SAMFewShotLib"
#: Engines with SAM post-refinement rounds (``--refine``).
REFINING_ENGINES = ("sam",)
#: Engines that start from a meta-learned initialisation file (``--init``, optional).
INIT_ENGINES = ("meta",)
#: ``--axis`` choices of ``propagate`` (``suggest`` has no ``auto``).
AXES = ("auto", "axial", "coronal", "sagittal")

#: ``--device`` choices of the ``samfewshot`` command (auto, cpu, cuda, mps).
CLI_DEVICES = DEVICES

#: Tooltip texts of :func:`engine_requirements`.
NEEDS_TORCH = "needs PyTorch (install from the Extension Manager: PyTorch)"
NEEDS_CHECKPOINT = "needs a SAM checkpoint: import one under Model"


def engine_family(engine: str) -> str:
    """The engine name without its option: ``"register:dis"`` -> ``"register"``."""
    if not isinstance(engine, str) or not engine.strip():
        raise ValueError(f"Engine must be a non-empty name, not {engine!r}")
    return engine.strip().partition(":")[0]


def _check_engine(engine: str) -> str:
    family = engine_family(engine)
    if family not in WEIGHTLESS_ENGINES + WEIGHTED_ENGINES:
        known = ", ".join(WEIGHTLESS_ENGINES + WEIGHTED_ENGINES)
        raise ValueError(f"Engine must be one of {known} (optionally with ':option'), not {engine!r}")
    return family


def base_command(python_executable: PathLike, *command: str) -> list[str]:
    """``[python, "-m", "SAMFewShotLib", *command]``; ValueError for an empty executable."""
    python = os.fspath(python_executable)
    if not python:
        raise ValueError("The Python executable must be a path, not an empty string")
    return [python, "-m", MODULE, *command]


def empty_slices_spec(empty_slices: EmptySlices) -> str | None:
    """The ``--empty-slices`` text for slices declared free of a structure.

    Args:
        empty_slices: ``None`` (none declared); a spec string, passed as is (``"12,40"`` or
            ``"5:12,40;1:3"``); a sequence of slice indices (every label); or a mapping
            {label value: slice indices}. Indices are along the annotated axis.

    Returns:
        The spec string, or None when nothing is declared.
    """
    if empty_slices is None:
        return None
    if isinstance(empty_slices, str):
        return empty_slices.strip() or None

    def indices(values: Iterable[int], what: str) -> str:
        items = []
        for value in values:
            if isinstance(value, bool) or int(value) != value or value < 0:
                raise ValueError(f"Empty slice indices {what} must be integers >= 0, not {value!r}")
            items.append(str(int(value)))
        return ",".join(items)

    if isinstance(empty_slices, Mapping):
        parts = []
        for label, slices in sorted(empty_slices.items()):
            if isinstance(label, bool) or int(label) != label or label <= 0:
                raise ValueError(f"Empty-slice label values must be integers > 0, not {label!r}")
            text = indices(slices, f"of label {label}")
            if text:
                parts.append(f"{int(label)}:{text}")
        return ";".join(parts) or None
    return indices(empty_slices, "") or None


def propagate_command(
    python_executable: PathLike,
    image_path: PathLike,
    annotation_path: PathLike,
    output_path: PathLike,
    report_path: PathLike,
    engine: str = "auto",
    checkpoint: str | None = None,
    refine: int | None = None,
    axis: str = "auto",
    empty_slices: EmptySlices = None,
    init: PathLike | None = None,
    device: str = "auto",
) -> list[str]:
    """argv of ``samfewshot propagate`` with JSON progress on stdout and a JSON report.

    Args:
        python_executable: the Python to run (Slicer's ``sys.executable`` / PythonSlicer).
        image_path, annotation_path: the exported volume and labelmap (same grid, LPS files).
        output_path: where the propagated labels go (``.nii.gz``, ``.nrrd``, ``.seg.nrrd``, ...).
        report_path: the ``--report`` JSON (read it with
            :func:`~SAMFewShotLib.slicer_support.progress_lines.read_report`).
        engine: ``auto``, ``interpolate``, ``register[:tvl1|dis|elastix]``, ``sam[:interpolate]``,
            ``fewshot`` or ``meta``.
        checkpoint: SAM checkpoint name or path; added for the weighted engines
            (:data:`WEIGHTED_ENGINES`) only (the CLI rejects it for the others).
        refine: SAM post-refinement rounds; added for ``sam`` only.
        axis: ``auto``, ``axial``, ``coronal`` or ``sagittal`` (the annotated axis).
        empty_slices: see :func:`empty_slices_spec`.
        init: meta-learned initialisation file of the ``meta`` engine (None: its default);
            ignored for the other engines.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps`` (:data:`CLI_DEVICES`); added for the weighted
            engines when not ``auto``.

    Raises:
        ValueError: an unknown engine family, axis or device, or a negative ``refine``.
    """
    family = _check_engine(engine)
    if axis not in AXES:
        raise ValueError(f"Axis must be one of {', '.join(AXES)}, not {axis!r}")
    argv = base_command(
        python_executable,
        "propagate",
        os.fspath(image_path),
        os.fspath(annotation_path),
        "-o",
        os.fspath(output_path),
        "--engine",
        engine.strip(),
        "--progress",
        "json",
        "--report",
        os.fspath(report_path),
    )
    if axis != "auto":
        argv += ["--axis", axis]
    spec = empty_slices_spec(empty_slices)
    if spec is not None:
        argv += ["--empty-slices", spec]
    if family in WEIGHTED_ENGINES and checkpoint:
        argv += ["--checkpoint", os.fspath(checkpoint)]
    if family in REFINING_ENGINES and refine is not None:
        if isinstance(refine, bool) or int(refine) != refine or refine < 0:
            raise ValueError(f"Refinement rounds must be an integer >= 0, not {refine!r}")
        argv += ["--refine", str(int(refine))]
    if family in INIT_ENGINES and init is not None and os.fspath(init):
        argv += ["--init", os.fspath(init)]
    if device not in CLI_DEVICES:
        raise ValueError(f"Device must be one of {', '.join(CLI_DEVICES)}, not {device!r}")
    if family in WEIGHTED_ENGINES and device != "auto":
        argv += ["--device", device]
    return argv


def suggest_command(
    python_executable: PathLike,
    image_path: PathLike,
    k: int = 5,
    slice_range: tuple[int, int] | str | None = None,
    axis: str = "axial",
    checkpoint: str | None = None,
    json_path: PathLike | None = None,
) -> list[str]:
    """argv of ``samfewshot suggest``: which ``k`` slices to annotate.

    Args:
        k: how many slices to suggest (>= 1).
        slice_range: candidate slices, inclusive: ``(first, last)`` or ``"first:last"``; None = all.
        axis: ``axial``, ``coronal`` or ``sagittal``.
        checkpoint: SAM checkpoint (name or path) to choose on SAM embeddings; None = intensities.
        json_path: also write ``{"axis", "numpy_axis", "slices", "features"}`` there.

    Progress goes to stdout as JSON lines; the answer is the last stdout line (and the JSON file).
    """
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, not {k!r}")
    if axis not in AXES[1:]:
        raise ValueError(f"Axis must be one of {', '.join(AXES[1:])}, not {axis!r}")
    argv = base_command(python_executable, "suggest", os.fspath(image_path), "--k", str(int(k)), "--axis", axis)
    if slice_range is not None:
        if isinstance(slice_range, str):
            text = slice_range.strip()
        else:
            first, last = slice_range
            if first > last or first < 0:
                raise ValueError(f"Slice range must be (first, last) with 0 <= first <= last, not {slice_range!r}")
            text = f"{int(first)}:{int(last)}"
        argv += ["--range", text]
    if checkpoint:
        argv += ["--checkpoint", os.fspath(checkpoint)]
    if json_path is not None:
        argv += ["--json", os.fspath(json_path)]
    return argv + ["--progress", "json"]


def engine_requirements(engine: str, torch_available: bool, checkpoints_present: Sequence[str]) -> str | None:
    """What ``engine`` still needs before it can run, as tooltip text; None when it is usable.

    Args:
        engine: an engine name as the module offers it (``auto``, ``register:dis``, ``sam``, ...).
        torch_available: whether ``import torch`` works in Slicer's Python.
        checkpoints_present: usable checkpoint names
            (:func:`~.weights_commands.present_checkpoints`).

    Returns:
        None, or e.g. ``"needs PyTorch (install from the Extension Manager: PyTorch)"``; several
        needs are joined with ``"; "``.

    Raises:
        ValueError: an engine name this version does not know at all.
    """
    family = _check_engine(engine)
    if family in WEIGHTLESS_ENGINES:
        return None
    needs = []
    if not torch_available:
        needs.append(NEEDS_TORCH)
    if not list(checkpoints_present):
        needs.append(NEEDS_CHECKPOINT)
    return "; ".join(needs) or None
