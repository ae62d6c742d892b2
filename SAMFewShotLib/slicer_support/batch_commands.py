"""``samfewshot batch``: the command line of the Slicer module's Batch panel.

One model is applied to many images (cases)::

    samfewshot batch INPUTS... --model MODEL [--annotation ANNOTATION] [--engine ENGINE]
                     [--checkpoint C] -o DIR [--scheduler local:N | tcp://HOST:PORT] [--force]
                     [--format seg.nrrd|nii.gz|both] --progress json

MODEL is an atlas bundle (``.zip`` or a folder with ``manifest.json``), a few-shot head
(``.sfs``), or a reference image whose ANNOTATION (a label map on its grid) is the model. With
``--progress json`` stdout carries progress lines and one line per finished case (read them with
:mod:`.batch_cases`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .commands import WEIGHTED_ENGINES, PathLike, base_command, engine_family

#: What a batch model is: an atlas bundle, a few-shot head, or a reference image + annotation.
MODEL_KINDS = ("atlas", "head", "reference")
#: File suffix of a few-shot head (``samfewshot fewshot train``).
HEAD_SUFFIX = ".sfs"
#: ``--format`` choices.
OUTPUT_FORMATS = ("seg.nrrd", "nii.gz", "both")


def model_kind(path: PathLike) -> str:
    """What the model file or folder ``path`` is (one of :data:`MODEL_KINDS`), as ``samfewshot
    batch`` tells: ``.sfs`` -> ``head``; a ``.zip`` or a bundle folder (with ``manifest.json``)
    -> ``atlas``; anything else -> ``reference`` (an image that needs its annotation)."""
    from ..atlas.bundle import is_bundle  # imports numpy and SimpleITK: late, not at GUI build

    if Path(path).suffix.lower() == HEAD_SUFFIX:
        return "head"
    if Path(path).suffix.lower() == ".zip" or is_bundle(path):
        return "atlas"
    return "reference"


def check_scheduler(address: str | None) -> str | None:
    """The ``--scheduler`` value: None for empty text (the command's default, local processes),
    else ``local:N`` (N >= 1 worker processes) or ``tcp://HOST:PORT`` (a dask.distributed
    scheduler), stripped.

    Raises:
        ValueError: any other text.
    """
    text = (address or "").strip()
    if not text:
        return None
    from ..batch.dask_runner import check_scheduler as check  # the command's own rule (imports SimpleITK)

    check(text)
    return text


def batch_command(
    python_executable: PathLike,
    inputs: Sequence[PathLike],
    model: PathLike,
    output_dir: PathLike,
    annotation: PathLike | None = None,
    engine: str | None = None,
    checkpoint: str | None = None,
    scheduler: str | None = None,
    force: bool = False,
    output_format: str = "seg.nrrd",
) -> list[str]:
    """argv of ``samfewshot batch ... --progress json``.

    Args:
        inputs: image files, DICOM series folders, folders (searched recursively) or globs.
        model: atlas bundle, few-shot head (``.sfs``) or reference image (see :func:`model_kind`).
        output_dir: where ``<case>.seg.nrrd``, ``qc.csv``, ``qc.html`` and ``montages/`` go.
        annotation: label map of the reference image; required for, and only passed with, a
            ``reference`` model.
        engine: how a reference's annotation is propagated on the reference before the cases are
            registered to it (``auto`` by default, ``none`` when it is complete); only passed
            with a ``reference`` model.
        checkpoint: SAM checkpoint name or path: required for a few-shot head (the one it was
            trained on); with a bundle it turns on SAM refinement; with a reference only for a
            weighted engine.
        scheduler: see :func:`check_scheduler`.
        force: recompute cases whose outputs exist (default: they are skipped).
        output_format: one of :data:`OUTPUT_FORMATS`; ``seg.nrrd`` (the default) is left out.

    Raises:
        ValueError: no inputs, an empty path, a reference model without annotation, a head
            without checkpoint, a bad scheduler address or output format.
    """
    paths = [os.fspath(path) for path in inputs]
    if not paths or any(not str(path).strip() for path in paths):
        raise ValueError(f"Batch inputs must be one or more non-empty paths, not {list(inputs)!r}")
    model_text, output_text = os.fspath(model), os.fspath(output_dir)
    if not str(model_text).strip():
        raise ValueError(
            "The batch model path must not be empty: choose an atlas bundle, a few-shot head or a reference"
        )
    if not str(output_text).strip():
        raise ValueError("The batch output folder must not be empty")
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"Output format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}")
    kind = model_kind(model_text)
    if kind == "reference" and not annotation:
        raise ValueError(f"The reference image {model_text} needs its annotation (a label map on its grid)")
    if kind == "head" and not checkpoint:
        raise ValueError(f"The few-shot head {model_text} needs the SAM checkpoint it was trained on")
    argv = base_command(python_executable, "batch", *paths, "--model", model_text)
    if kind == "reference" and annotation:  # a reference without its annotation was refused above
        argv += ["--annotation", os.fspath(annotation)]
        if engine:
            argv += ["--engine", engine]
    weighted_reference = (
        kind == "reference"
        and isinstance(engine, str)
        and engine not in ("", "none")
        and engine_family(engine) in WEIGHTED_ENGINES
    )
    if checkpoint and (kind != "reference" or weighted_reference):
        argv += ["--checkpoint", os.fspath(checkpoint)]
    argv += ["-o", output_text]
    address = check_scheduler(scheduler)
    if address is not None:
        argv += ["--scheduler", address]
    if force:
        argv.append("--force")
    if output_format != "seg.nrrd":
        argv += ["--format", output_format]
    return argv + ["--progress", "json"]
