"""Engine ``auto``: per structure, leave-one-slice-out validation picks how to fill.

For every label with at least three drawn slices, each interior drawn slice is left out in turn
and predicted from the others by ``register``, by ``interpolate`` (Fill between slices) and by
their fusion (mean of the registration probability and a soft version of the interpolated
shape). The candidate with the best mean Dice on the left-out slices fills the range between the
outermost drawn slices; beyond them only ``register`` can extrapolate, so it always does.
Outermost drawn slices are left out too, and predicted by registration alone, so the reported
expected Dice covers extrapolation as well. With one or two drawn slices there is nothing
interior to validate and ``register`` fills everything (the expected Dice is then the mean Dice
of each drawn slice predicted from the other, or unknown with one slice).

All validation runs reuse the registrations of the final run (``SliceFlows`` memoises them, one
worker pool serves every label), and every interpolation, validation ones included, runs in one
child process started before the registrations, so ITK's import and the filter overlap them; both
work on each structure's working grid (``propagation/working_grid.py``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..annotation import SparseAnnotation
from ..metrics import dice
from ..progress import CancelToken, Progress, no_progress
from ..propagation.mask_chain import ChainSettings
from ..propagation.slice_registration import DEFAULT_REGISTRAR
from ..volume import Volume
from .base import LabelProbability, Prediction, Timer, per_label_prediction
from .interpolate import ContourInterpolationChild, LabelPlan, plan_label, plan_probability
from .register import RegisterEngine, slice_progress

CANDIDATES = ("register", "interpolate", "fusion")
#: Softness (pixels) of the interpolated shape's edge when fused with the registration.
FUSION_EDGE_PX = 1.0


def soft_shape(inside: np.ndarray) -> np.ndarray:
    """(n, rows, cols) float32 in [0, 1]: sigmoid of the in-plane signed distance (pixels) to
    the edge of a binary stack, 0.5 on the edge; slices without any voxel stay 0."""
    out = np.zeros(inside.shape, np.float32)
    for z in np.flatnonzero(inside.any(axis=(1, 2))):
        signed = ndimage.distance_transform_edt(inside[z]) - ndimage.distance_transform_edt(~inside[z])
        out[z] = 1.0 / (1.0 + np.exp(-(signed - 0.5 * np.sign(signed)) / FUSION_EDGE_PX))
    return out


def candidate_probability(name: str, registered: np.ndarray, interpolated: np.ndarray) -> np.ndarray:
    """The probability a candidate gives (canonical arrays of the same shape)."""
    if name == "register":
        return registered
    if name == "interpolate":
        return interpolated
    return 0.5 * (registered + soft_shape(interpolated > 0.5))


def union_box(a: tuple[slice, ...] | None, b: tuple[slice, ...] | None, shape) -> tuple[slice, ...]:
    """The smallest box (tuple of slices) of a volume of ``shape`` holding boxes a and b
    (None = the whole volume)."""
    out = []
    for axis, size in enumerate(shape):
        ranges = [box[axis].indices(size)[:2] if box is not None else (0, size) for box in (a, b)]
        out.append(slice(min(r[0] for r in ranges), max(r[1] for r in ranges)))
    return tuple(out)


def in_box(result: LabelProbability, box: tuple[slice, ...], shape) -> np.ndarray:
    """``result``'s probability on ``box`` of the canonical volume of ``shape`` (a new float32
    array; ``box`` must hold ``result.box``): never a whole-volume copy."""
    out = np.zeros([s.stop - s.start for s in box], np.float32)
    own = result.box or tuple(slice(0, n) for n in shape)
    inner = tuple(slice(o.indices(n)[0] - b.start, o.indices(n)[1] - b.start) for o, b, n in zip(own, box, shape))
    out[inner] = result.probability
    return out


class AutoEngine:
    """Picks register, interpolate or their fusion per structure by leave-one-slice-out Dice."""

    name = "auto"

    def __init__(self, backend: str = DEFAULT_REGISTRAR, settings: ChainSettings | None = None) -> None:
        self.register = RegisterEngine(backend=backend, settings=settings)

    def propagate(
        self,
        image: Volume,
        annotation: SparseAnnotation,
        *,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> Prediction:
        timer = Timer()
        with timer.stage("prepare"):
            prepared = self.register.prepare(image, annotation)
            working_mm = self.register.working_mm
            shape = annotation.canonical_shape
            slice_spacing = annotation.spacing_canonical[0]
            plans: dict[tuple[int, int | None], LabelPlan] = {}
            crops = {value: self.register.crop(annotation, value) for value in annotation.label_values}
            for value in annotation.label_values:
                drawn = annotation.drawn_slices(value)
                plans[(value, None)] = plan_label(annotation, value, working_mm=working_mm)
                if len(drawn) >= 3:
                    for left_out in drawn[1:-1]:
                        plans[(value, left_out)] = plan_label(annotation, value, left_out, working_mm)
        pending = [key for key, plan in plans.items() if plan.job is not None]
        jobs = [plan.job for plan in plans.values() if plan.job is not None]  # in the order of pending
        if cancel is not None:
            cancel.raise_if_cancelled()
        filled_by_key: dict = {}

        def interpolated(value: int, left_out: int | None) -> LabelProbability:
            plan = plans[(value, left_out)]
            return plan_probability(plan, filled_by_key.get((value, left_out)), shape, slice_spacing)

        def registered(value: int, drawn: list[int] | None = None, only: int | None = None, on_slice=None):
            # One crop per label (from all drawn slices): validation reuses the registrations.
            return self.register.propagate_label(
                prepared, annotation, value, drawn, cancel, only, crops[value], on_slice
            )

        def propagate_label(value: int) -> LabelProbability:
            mask = annotation.mask(value)
            drawn = annotation.drawn_slices(value)
            full = fulls.pop(value)
            validation: dict[str, list[float]] = {name: [] for name in CANDIDATES}
            outer_dice: list[float] = []
            for left_out in drawn if len(drawn) >= 2 else []:
                remaining = [s for s in drawn if s != left_out]
                reg = registered(value, remaining, only=left_out).slice_at(left_out, shape)
                if left_out in (drawn[0], drawn[-1]):
                    outer_dice.append(dice(reg[None] > 0.5, mask[None, left_out]))
                    continue
                interp = interpolated(value, left_out).slice_at(left_out, shape)
                for name in CANDIDATES:
                    guess = candidate_probability(name, reg[None], interp[None])[0]
                    validation[name].append(dice(guess[None] > 0.5, mask[None, left_out]))
            scores = {name: float(np.mean(v)) for name, v in validation.items() if v}
            choice = max(scores, key=scores.__getitem__) if scores else "register"
            probability, box = full.probability, full.box
            if choice != "register":
                interpolation = interpolated(value, None)
                union = union_box(full.box, interpolation.box, shape)
                inside = slice(drawn[0] - union[0].start, drawn[-1] + 1 - union[0].start)
                whole = in_box(full, union, shape)
                interpolated_inside = in_box(interpolation, union, shape)[inside]
                whole[inside] = candidate_probability(choice, whole[inside], interpolated_inside)
                probability, box = whole, (union[0], union[1], union[2])
            chosen = validation[choice] if scores else []
            per_slice = chosen + outer_dice
            expected = float(np.mean(per_slice)) if per_slice else None
            return LabelProbability(
                probability=probability,
                box=box,
                slice_confidence=full.slice_confidence,
                expected_dice=expected,
                details={
                    "choice": choice,
                    "validation_dice": scores,
                    "extrapolation_dice": float(np.mean(outer_dice)) if outer_dice else None,
                    "stopped_at": full.details.get("stopped_at"),
                    "intensity_separability": full.details.get("intensity_separability"),
                },
            )

        fulls: dict[int, LabelProbability] = {}
        # The child imports ITK and interpolates while this process registers.
        with prepared, ContourInterpolationChild(jobs) as child:
            with timer.stage("register"):
                for value in annotation.label_values:
                    if cancel is not None:
                        cancel.raise_if_cancelled()
                    fulls[value] = registered(value, on_slice=slice_progress(progress, self.name, value))
            with timer.stage("contour interpolation"):
                filled, statistics = child.result(progress=progress, cancel=cancel)
            filled_by_key.update(zip(pending, filled))
            prediction = per_label_prediction(
                self.name, annotation, propagate_label, progress=progress, cancel=cancel, timer=timer
            )
        self.register.record_registrations(prediction, prepared)
        prediction.counters.update(interpolation_jobs=len(pending), **statistics)
        return prediction
