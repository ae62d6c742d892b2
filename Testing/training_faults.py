"""Fault injection for the trainers' divergence guard (errors.require_finite_loss)."""

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
