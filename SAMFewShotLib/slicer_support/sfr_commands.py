"""``samfewshot sfr train``: the command line of the Batch panel's "Train a study model".

One labelled volume (an image and its label map) plus a folder of the study's unlabelled images
give a study model bundle (``.zip`` or folder, engine ``sfr``) that the Batch panel then applies
as an atlas bundle::

    samfewshot sfr train LABELED LABELS UNLABELED_DIR -o BUNDLE [--pseudo atlas|sam|none|off]
                         [--checkpoint C] [--select F] [--iterations N] [--work-dir DIR] [--resume]
                         --progress json

The work folder (default ``<BUNDLE>.work``) keeps the pseudo-labels and the training checkpoint,
so a cancelled training is continued by the same command with ``--resume``.
"""

from __future__ import annotations

import os

from .commands import PathLike, base_command

#: ``--pseudo`` choices of ``samfewshot sfr train`` (off: no pseudo-labels).
PSEUDO_SOURCES = ("atlas", "sam", "none", "off")


def work_folder(bundle: PathLike) -> str:
    """The work folder ``samfewshot sfr train`` uses for ``bundle`` by default (``<bundle>.work``):
    where a cancelled training's checkpoint waits for ``--resume``."""
    return os.fspath(bundle) + ".work"


def can_resume(bundle: PathLike) -> bool:
    """Whether a training of ``bundle`` left a checkpoint in its default work folder."""
    from ..sfr import CHECKPOINT_NAME  # the package imports neither torch nor MONAI

    return os.path.isfile(os.path.join(work_folder(bundle), CHECKPOINT_NAME))


def sfr_train_command(
    python_executable: PathLike,
    labeled: PathLike,
    labels: PathLike,
    unlabeled_dir: PathLike,
    bundle: PathLike,
    pseudo: str = "atlas",
    checkpoint: str | None = None,
    select: float | None = None,
    iterations: int | None = None,
    resume: bool = False,
) -> list[str]:
    """argv of ``samfewshot sfr train ... --progress json``.

    Args:
        labeled, labels: the labelled image and its label map (same grid; a ``.seg.nrrd`` keeps
            names, colours and terminology).
        unlabeled_dir: folder of the study's unlabelled images.
        bundle: the study model to write (``.zip`` or a folder).
        pseudo: pseudo-label source (:data:`PSEUDO_SOURCES`); ``sam`` needs ``checkpoint``.
        checkpoint: SAM checkpoint (name or path), only with ``pseudo="sam"``.
        select: SFR+ kept fraction in (0, 1] (None: SFR, every pseudo-label).
        iterations: re-training iterations (None: the command's default).
        resume: continue the work folder's checkpoint.

    Raises:
        ValueError: an empty path, an unknown source, ``sam`` without checkpoint, a checkpoint
            with another source, a fraction outside (0, 1], iterations < 1.
    """
    paths = {"labelled image": labeled, "label map": labels, "unlabelled folder": unlabeled_dir, "bundle": bundle}
    for what, path in paths.items():
        if path is None or not str(os.fspath(path)).strip():
            raise ValueError(f"The study model's {what} path must not be empty, not {path!r}")
    if pseudo not in PSEUDO_SOURCES:
        raise ValueError(f"The pseudo-label source must be one of {', '.join(PSEUDO_SOURCES)}, not {pseudo!r}")
    if pseudo == "sam" and not checkpoint:
        raise ValueError("SAM pseudo-labels need a SAM checkpoint (name or path)")
    if checkpoint and pseudo != "sam":
        raise ValueError(f"A SAM checkpoint is only used with SAM pseudo-labels, not with {pseudo!r}")
    if select is not None and not (isinstance(select, (int, float)) and 0.0 < select <= 1.0):
        raise ValueError(f"The SFR+ kept fraction must be in (0, 1], not {select!r}")
    if iterations is not None and (isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1):
        raise ValueError(f"The re-training iterations must be a positive integer, not {iterations!r}")
    argv = base_command(python_executable, "sfr", "train", os.fspath(labeled), os.fspath(labels),
                        os.fspath(unlabeled_dir), "-o", os.fspath(bundle), "--pseudo", pseudo)
    if checkpoint:
        argv += ["--checkpoint", checkpoint]
    if select is not None:
        argv += ["--select", f"{float(select):g}"]
    if iterations is not None:
        argv += ["--iterations", str(iterations)]
    if resume:
        argv.append("--resume")
    return argv + ["--progress", "json"]
