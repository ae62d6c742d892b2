"""Engine ``auto``: per structure, leave-one-slice-out validation picks how to fill.

For every label with at least three drawn slices, each interior drawn slice is left out in turn
and predicted from the others by every candidate of :data:`CANDIDATES`: ``register``, ``refined``
(the registration re-decided slice by slice by the intensity model of the drawn slices,
``propagation/intensity_refinement.py``), ``blend`` (the mean of those two probabilities),
``interpolate`` (Fill between slices) and ``fusion`` (mean of the registration probability and a
soft version of the interpolated shape). The
candidate with the best mean Dice on the left-out slices fills the range between the outermost
drawn slices; ``refined`` must win by the damage refinement does to the drawn masks themselves
(:func:`choose`). Beyond them only registration can extrapolate: the outermost drawn slices are left
out too and predicted by ``register``, ``refined`` and ``blend``, and the best on them
extrapolates, so the validation covers extrapolation as well. With one drawn slice nothing can be
validated and ``refined`` fills everything (measured better on every structure of the abdominal
CT but the urinary bladder, README "Accuracy"); the expected Dice is then unknown.
For structures whose intensities separate them, the envelope segmentation
(``propagation/envelope_segmentation.py``, for large folded structures such as white matter)
replaces the whole result when its own leave-one-slice-out Dice beats the choice
(:func:`envelope_if_better`). ``expected_dice.py`` turns the validation Dice of the left-out
slices into the structure's expected Dice.

All validation runs reuse the registrations of the final run (``SliceFlows`` memoises them, one
worker pool serves every label), and every interpolation, validation ones included, runs in one
child process started before the registrations, so ITK's import and the filter overlap them; both
work on each structure's working grid (``propagation/working_grid.py``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage

from ..annotation import SparseAnnotation
from ..metrics import dice
from ..progress import CancelToken, Progress, no_progress
from ..propagation.envelope_segmentation import leave_one_out_dice, segment_in_envelope
from ..propagation.intensity_refinement import refinement_reliability
from ..propagation.mask_chain import ChainSettings
from ..propagation.slice_registration import DEFAULT_REGISTRAR
from ..volume import Volume
from .base import LabelProbability, Prediction, Timer, per_label_prediction
from .expected_dice import expected_dice, slice_areas
from .interpolate import ContourInterpolationChild, LabelPlan, plan_label, plan_probability
from .register import RegisterEngine, slice_progress

#: Softness (pixels) of the interpolated shape's edge when fused with the registration.
FUSION_EDGE_PX = 1.0
#: The chained candidates: registration, plain or refined (computed from the chain).
CHAINED = ("register", "refined")
#: What fills the slices beyond the outermost drawn slices: registration, plain, refined, or the
#: blend of both (their mean probability, :func:`_blend`).
EXTRAPOLATION_CANDIDATES = ("register", "refined", "blend")
#: The extrapolation used when there is nothing to validate it with (one drawn slice).
DEFAULT_EXTRAPOLATION = "refined"
#: ``refined`` must beat the other candidates on the left-out slices by this times the damage
#: refinement does to a correct mask (1 - ``refinement_reliability``): see :func:`choose`.
REFINEMENT_DAMAGE_WEIGHT = 1.0


def choose(scores: dict[str, float], reliability: float | None) -> str | None:
    """The candidate with the best validation Dice (``scores``: {candidate: mean Dice on the
    left-out drawn slices}), ``refined``'s Dice lowered by ``REFINEMENT_DAMAGE_WEIGHT * (1 -
    reliability)`` (``propagation/intensity_refinement.refinement_reliability``); None without scores.

    Why: a left-out slice is predicted from twice as far as any slice of the result, where the
    chain has lost more and refinement gains more than it will in the result, while the damage
    refinement does to edges the chain got right stays. On the clinical-grid liver (k = 3) the
    left-out slices gave ``refined`` 0.80 against 0.71 for ``register``, yet on the whole liver
    refinement lowered the Dice from 0.940 to 0.920 (it moves correct edges towards tissue that
    looks like liver: refined drawn masks keep a Dice of only 0.86 with themselves)."""
    if not scores:
        return None
    penalty = 0.0 if reliability is None else REFINEMENT_DAMAGE_WEIGHT * (1.0 - reliability)
    adjusted = {name: score - (penalty if name == "refined" else 0.0) for name, score in scores.items()}
    return max(adjusted, key=adjusted.__getitem__)


def soft_shape(inside: np.ndarray) -> np.ndarray:
    """(n, rows, cols) float32 in [0, 1]: sigmoid of the in-plane signed distance (pixels) to
    the edge of a binary stack, 0.5 on the edge; slices without any voxel stay 0."""
    out = np.zeros(inside.shape, np.float32)
    for z in np.flatnonzero(inside.any(axis=(1, 2))):
        signed = ndimage.distance_transform_edt(inside[z]) - ndimage.distance_transform_edt(~inside[z])
        out[z] = 1.0 / (1.0 + np.exp(-(signed - 0.5 * np.sign(signed)) / FUSION_EDGE_PX))
    return out


def _fusion(inputs: dict[str, np.ndarray]) -> np.ndarray:
    return 0.5 * (inputs["register"] + soft_shape(inputs["interpolate"] > 0.5))


def _blend(inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The mean of the registration's and the refinement's probability. Chained registration
    loses area and refinement tends to overshoot where the tissue around looks alike, so their
    errors partly cancel (abdominal CT, README "Accuracy": k = 3 mean Dice 0.928 plain, 0.933
    refined, 0.942 blended). A correct mask stays as it is (inside: (1 + p) / 2 > 0.5; outside:
    p / 2 < 0.5), so unlike ``refined`` it needs no margin in :func:`choose`."""
    return 0.5 * (inputs["register"] + inputs["refined"])


#: The candidates between the outermost drawn slices: name -> probability from the inputs
#: {"register", "refined", "interpolate"} (canonical float32 arrays of one shape). A new
#: candidate is one entry here and one in :data:`NEEDS`.
CANDIDATES: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {
    "register": lambda inputs: inputs["register"],
    "refined": lambda inputs: inputs["refined"],
    "interpolate": lambda inputs: inputs["interpolate"],
    "fusion": _fusion,
    "blend": _blend,
}
#: The inputs each candidate is computed from.
NEEDS = {
    "register": ("register",),
    "refined": ("refined",),
    "blend": ("register", "refined"),
    "interpolate": ("interpolate",),
    "fusion": ("register", "interpolate"),
}
#: Every choice auto reports: the candidates above, or the envelope segmentation of a structure
#: (``envelope_if_better``), which replaces the whole result when it validates better.
CHOICES = (*CANDIDATES, "envelope")


def candidate_probability(name: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The probability candidate ``name`` gives from ``inputs`` (see :data:`CANDIDATES`)."""
    return CANDIDATES[name](inputs)


def union_box(a: tuple[slice, ...] | None, b: tuple[slice, ...] | None, shape) -> tuple[slice, ...]:
    """The smallest box (tuple of slices) of a volume of ``shape`` holding boxes a and b
    (None = the whole volume)."""
    out = []
    for axis, size in enumerate(shape):
        ranges = [box[axis].indices(size)[:2] if box is not None else (0, size) for box in (a, b)]
        out.append(slice(min(r[0] for r in ranges), max(r[1] for r in ranges)))
    return tuple(out)


def on_box(result: LabelProbability, box: tuple[slice, ...], shape) -> np.ndarray:
    """:func:`in_box`, without a copy when ``result`` already covers exactly ``box`` (then the
    result's own array, which the caller may change)."""
    own = result.box or tuple(slice(0, n) for n in shape)
    if all(o.indices(n)[:2] == b.indices(n)[:2] for o, b, n in zip(own, box, shape)):
        return result.probability
    return in_box(result, box, shape)


def in_box(result: LabelProbability, box: tuple[slice, ...], shape) -> np.ndarray:
    """``result``'s probability on ``box`` of the canonical volume of ``shape`` (a new float32
    array; ``box`` must hold ``result.box``): never a whole-volume copy."""
    out = np.zeros([s.stop - s.start for s in box], np.float32)
    own = result.box or tuple(slice(0, n) for n in shape)
    inner = tuple(slice(o.indices(n)[0] - b.start, o.indices(n)[1] - b.start) for o, b, n in zip(own, box, shape))
    out[inner] = result.probability
    return out


def envelope_if_better(
    stack: np.ndarray, annotation: SparseAnnotation, value: int, chosen_dice: dict[int, float]
) -> tuple[LabelProbability, dict[int, float]] | None:
    """The envelope segmentation of label ``value`` (``propagation/envelope_segmentation.py``,
    for large folded structures) and its leave-one-slice-out Dice on every drawn slice, when its
    intensities separate the structure (``reliable``) and that Dice's mean beats ``chosen_dice``
    ({left-out drawn slice: the choice's Dice there}, interior and outermost); else None.
    ``stack``: the canonical image (n_slices, rows, cols)."""
    drawn = annotation.drawn_slices(value)
    if len(drawn) < 2 or len(chosen_dice) != len(drawn):
        return None
    mask, spacing = annotation.mask(value), annotation.spacing_canonical
    empty = set(annotation.empty_slices.get(value, ()))
    result = segment_in_envelope(stack, {z: mask[z] for z in drawn}, spacing, empty)
    if not result.reliable:  # intensities too weak to carry it
        return None
    per_slice = leave_one_out_dice(stack, mask, drawn, spacing, empty)
    if not float(np.mean(list(per_slice.values()))) > float(np.mean(list(chosen_dice.values()))):
        return None
    return result.label_probability(annotation.canonical_shape), per_slice


class AutoEngine:
    """Picks register, refined, interpolate or fusion per structure by leave-one-slice-out Dice."""

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

        def chained(value: int, drawn: list[int] | None = None, only: int | None = None, on_slice=None):
            # One crop per label (from all drawn slices): validation reuses the registrations.
            return self.register.chain_label(prepared, annotation, value, drawn, cancel, only, crops[value], on_slice)

        def propagate_label(value: int) -> LabelProbability:
            mask = annotation.mask(value)
            drawn = annotation.drawn_slices(value)
            chain = chains.pop(value)
            validation: dict[str, list[float]] = {name: [] for name in CANDIDATES}
            outer: dict[str, list[float]] = {name: [] for name in EXTRAPOLATION_CANDIDATES}
            for left_out in drawn if len(drawn) >= 2 else []:
                remaining = [s for s in drawn if s != left_out]
                chain_out = chained(value, remaining, only=left_out)
                inputs = {
                    name: self.register.label_probability(chain_out, name == "refined", left_out)
                    .slice_at(left_out, shape)[None]
                    for name in CHAINED
                }
                truth = mask[None, left_out]
                if left_out in (drawn[0], drawn[-1]):
                    for name in EXTRAPOLATION_CANDIDATES:
                        outer[name].append(dice(candidate_probability(name, inputs) > 0.5, truth))
                    continue
                inputs["interpolate"] = interpolated(value, left_out).slice_at(left_out, shape)[None]
                for name in CANDIDATES:
                    validation[name].append(dice(candidate_probability(name, inputs) > 0.5, truth))
            scores = {name: float(np.mean(v)) for name, v in validation.items() if v}
            outer_scores = {name: float(np.mean(v)) for name, v in outer.items() if v}
            reliability = (
                refinement_reliability(chain.working.values, chain.drawn, chain.value_range, chain.slice_mm)
                if len(drawn) >= 2 else None
            )
            outside = choose(outer_scores, reliability) or DEFAULT_EXTRAPOLATION
            choice = choose(scores, reliability) or outside
            parts = {
                name: self.register.label_probability(chain, name == "refined")
                for name in CHAINED
                if name in NEEDS[outside] + NEEDS[choice]
            }
            if "interpolate" in NEEDS[choice]:
                parts["interpolate"] = interpolated(value, None)
            union = None
            for part in parts.values():
                union = union_box(union or part.box, part.box, shape)
            assert union is not None  # every candidate needs at least one part
            full = parts["register"] if "register" in parts else next(iter(parts.values()))
            parts_in_union = {name: on_box(part, union, shape) for name, part in parts.items()}
            del parts  # only the arrays on the union box are kept (memory: seven labels at clinical scale)
            whole = candidate_probability(outside, parts_in_union)
            if choice != outside:
                inside = slice(drawn[0] - union[0].start, drawn[-1] + 1 - union[0].start)
                whole[inside] = candidate_probability(choice, {n: p[inside] for n, p in parts_in_union.items()})
            del parts_in_union
            probability: np.ndarray = whole
            box: tuple[slice, slice, slice] | None = (union[0], union[1], union[2])
            chosen = validation[choice] if scores else []
            scored = drawn[1:-1] + [drawn[0], drawn[-1]] if len(drawn) >= 2 else []  # the order of chosen + outer
            per_slice = dict(zip(scored, chosen + outer[outside]))
            envelope = envelope_if_better(prepared.stack, annotation, value, per_slice)
            if envelope is not None:  # large folded structures: see envelope_if_better
                choice, (full, per_slice) = "envelope", envelope
                probability, box = full.probability, full.box
            areas = slice_areas(probability, box, shape[0])
            expected = expected_dice(drawn, per_slice, areas)
            return LabelProbability(
                probability=probability,
                box=box,
                slice_confidence=full.slice_confidence,
                expected_dice=expected,
                details={
                    "choice": choice,
                    "extrapolation": outside,
                    "validation_dice": scores,
                    "extrapolation_dice": outer_scores or None,
                    "refinement_reliability": None if reliability is None else round(reliability, 3),
                    "stopped_at": full.details.get("stopped_at"),
                    "intensity_separability": full.details.get("intensity_separability"),
                },
            )

        chains: dict = {}
        # The child imports ITK and interpolates while this process registers.
        with prepared, ContourInterpolationChild(jobs) as child:
            with timer.stage("register"):
                for value in annotation.label_values:
                    if cancel is not None:
                        cancel.raise_if_cancelled()
                    chains[value] = chained(value, on_slice=slice_progress(progress, self.name, value))
            with timer.stage("contour interpolation"):
                filled, statistics = child.result(progress=progress, cancel=cancel)
            filled_by_key.update(zip(pending, filled))
            prediction = per_label_prediction(
                self.name, annotation, propagate_label, progress=progress, cancel=cancel, timer=timer
            )
        self.register.record_registrations(prediction, prepared)
        prediction.counters.update(interpolation_jobs=len(pending), **statistics)
        return prediction
