"""Fault injection for the trainers' guards: a non-finite loss (errors.require_finite_loss) and
RRL-MedSAM's collapsed registration (atlas.rrl.training.Trainer.check_registration)."""

from __future__ import annotations


def step_with_nan_loss_at(original_step, iteration: int):
    """A replacement for a trainer's ``step`` method: the original step, whose returned "total"
    loss is NaN when the trainer's ``iteration`` attribute equals ``iteration`` after it ran."""

    def step(self):
        losses = original_step(self)
        if self.iteration == iteration:
            losses["total"] = float("nan")
        return losses

    return step


def step_with_worse_ncc_from(original_step, iteration: int, excess: float):
    """A replacement for RRL-MedSAM's ``Trainer.step``: the original step, whose returned "ncc"
    loss is ``excess`` worse than "ncc_identity" (no registration) once the trainer's
    ``iteration`` attribute is >= ``iteration`` (counted before the step: 2 = the 3rd step)."""

    def step(self):
        losses = original_step(self)
        if self.iteration >= iteration:
            losses["ncc"] = losses["ncc_identity"] + excess
        return losses

    return step
