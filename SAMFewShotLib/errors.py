"""The library's own exception types.

:class:`InputError` is anything the user can fix (a missing file, a bad option value, a label that
is not in the image): the command line reports it in one line and exits 2. It subclasses
``ValueError`` so that code catching ``ValueError`` keeps working. Internal invariants stay plain
``ValueError`` / ``RuntimeError``: a bug, reported as such.
"""

from __future__ import annotations

import math


class InputError(ValueError):
    """Bad input the user can fix; the message names the value and what is expected."""


class TrainingDiverged(RuntimeError):
    """Training went wrong in a way that makes its weights unusable: a step's loss is not finite
    (:func:`require_finite_loss`: the weights are lost to NaN/inf) or, for RRL-MedSAM, the
    registration has collapsed (``atlas.rrl.training.Trainer.check_registration``). Raised before
    anything is saved, so the last periodic checkpoint stays and no bundle of unusable weights is
    written; the command line says so in one line and exits 1 (not an internal error)."""


def require_finite_loss(loss: float, iteration: int, what: str) -> None:
    """TrainingDiverged naming ``what`` (e.g. "RRL-MedSAM training") and the iteration (1-based)
    unless ``loss`` is finite."""
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"{what} diverged at iteration {iteration} (loss {loss}): no bundle was written; train again "
            "with a lower learning rate or fewer iterations"
        )
