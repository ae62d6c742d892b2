"""Dice-vs-k benchmark: simulate a clinician's k annotated slices from a full reference.

For every structure of the reference and every k, the k annotated slices sit evenly inside the
structure's extent along the annotated axis, at z0 + (z1 - z0)(2i + 1)/(2k), i = 0..k-1 (see
:func:`simulate_annotation`), each structure on its own. Every engine propagates them;
the result is scored against the whole reference structure (Dice, IoU, HD95 and ASSD in mm) and
timed, one structure at a time.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np

from .annotation import SparseAnnotation
from .engines import make_engine
from .errors import InputError
from .metrics import evaluate
from .progress import CancelToken, Progress, no_progress
from .volume import LabelVolume, Volume


def slice_positions(first: int, last: int, k: int) -> list[int]:
    """k evenly spaced slices inside ``first..last`` (inclusive): the centres of k equal parts,
    ``first + (last - first)(2i + 1) / (2k)`` for i < k, computed exactly and rounded half up.
    Neighbouring centres lie (last - first) / k >= (k - 1) / k apart, so the k slices are always
    distinct (rounding half to even would merge 8.5 and 9.5 into one slice); sorted.

    Raises:
        ValueError: k < 1, or k larger than the number of slices ``last - first + 1``.
    """
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise InputError(f"k must be a positive integer, not {k!r}")
    if last < first:
        raise ValueError(f"Extent {first}..{last} is empty")
    n = last - first + 1
    if k > n:
        raise InputError(f"k = {k} exceeds the structure's extent: slices {first}..{last} ({n} slices)")
    span = last - first
    return sorted(math.floor(first + Fraction(span * (2 * i + 1), 2 * int(k)) + Fraction(1, 2)) for i in range(int(k)))


def annotation_slices(reference: LabelVolume, k: int, axis: int = 0) -> dict[int, list[int]]:
    """{label value: the slices along ``axis`` that :func:`simulate_annotation` keeps}.

    Each label gets :func:`slice_positions` over its own extent (first to last slice holding it).
    ValueError names the label, k and the extent when k is too large.
    """
    if axis not in (0, 1, 2):
        raise ValueError(f"Axis must be 0, 1 or 2 (numpy z, y, x), not {axis}")
    values = reference.label_values()
    if not values:
        raise InputError("The reference is empty: it holds no labelled voxel")
    other = tuple(a for a in range(3) if a != axis)
    result = {}
    for value in values:
        present = np.flatnonzero((reference.array == value).any(axis=other))
        try:
            result[value] = slice_positions(int(present[0]), int(present[-1]), k)
        except ValueError as error:
            name = reference.segment(value).display_name()
            raise InputError(f"Label {value} ({name}): {error}") from None
    return result


def simulate_annotation(reference: LabelVolume, k: int, axis: int = 0) -> SparseAnnotation:
    """The sparse annotation a user would draw: k evenly spaced slices of each structure.

    For every label of ``reference``, the slices :func:`annotation_slices` picks (k per label,
    centred inside the label's own extent along ``axis``) are copied from the reference, that
    label only; everything else is 0. Labels share one label map with the reference's segment
    table and geometry.

    Args:
        reference: full label map (z, y, x).
        k: slices per label, 1 to the label's extent in slices.
        axis: numpy axis (0 = z, 1 = y, 2 = x) of the annotated slices.

    Raises:
        ValueError: bad k or axis, an empty reference, or k larger than a label's extent
            (the message names k and the extent).
    """
    slices = annotation_slices(reference, k, axis)
    source = np.moveaxis(reference.array, axis, 0)
    drawn = np.zeros_like(source)
    for value, positions in slices.items():
        for s in positions:
            drawn[s][source[s] == value] = value
    labels = reference.with_array(np.ascontiguousarray(np.moveaxis(drawn, 0, axis)))
    return SparseAnnotation.from_labels(labels, axis=axis)


@dataclass
class BenchRecord:
    """One engine on one structure at one k."""

    engine: str
    label: int
    name: str
    k: int
    slices: list[int]
    dice: float
    iou: float
    hd95: float
    assd: float
    seconds: float
    expected_dice: float | None = None
    choice: str | None = None

    def as_json(self) -> dict:
        out = asdict(self)
        for key in ("hd95", "assd"):
            if not math.isfinite(out[key]):
                out[key] = None
        return out


@dataclass
class BenchResult:
    records: list[BenchRecord] = field(default_factory=list)
    image: str = ""
    reference: str = ""

    def engines(self) -> list[str]:
        return list(dict.fromkeys(r.engine for r in self.records))

    def ks(self) -> list[int]:
        return sorted({r.k for r in self.records})

    def labels(self) -> list[tuple[int, str]]:
        return list(dict.fromkeys((r.label, r.name) for r in self.records))

    def summary(self) -> list[dict]:
        """Per engine and k: mean Dice, mean HD95 (finite ones), mean seconds per structure."""
        rows = []
        for engine in self.engines():
            for k in self.ks():
                chosen = [r for r in self.records if r.engine == engine and r.k == k]
                if not chosen:
                    continue
                hd = [r.hd95 for r in chosen if math.isfinite(r.hd95)]
                rows.append(
                    {
                        "engine": engine,
                        "k": k,
                        "dice": {r.name: r.dice for r in chosen},
                        "mean_dice": float(np.mean([r.dice for r in chosen])),
                        "mean_hd95": float(np.mean(hd)) if hd else None,
                        "seconds_per_structure": float(np.mean([r.seconds for r in chosen])),
                    }
                )
        return rows

    def table(self) -> str:
        """A markdown table: engine, k, Dice per structure, mean Dice, mean HD95, seconds."""
        names = [name for _, name in self.labels()]
        header = ["engine", "k", *names, "mean Dice", "mean HD95 mm", "s / structure"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.summary():
            hd95 = "-" if row["mean_hd95"] is None else f"{row['mean_hd95']:.1f}"
            cells = [row["engine"], str(row["k"])]
            cells += [f"{row['dice'][name]:.3f}" if name in row["dice"] else "-" for name in names]
            cells += [f"**{row['mean_dice']:.3f}**", hd95, f"{row['seconds_per_structure']:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def expected_dice_error(self) -> dict[str, dict]:
        """How far each engine's own expected Dice is from the true Dice, for the engines that
        report one (``auto``).

        Returns:
            {engine: {"estimated": records with an expected Dice, "not_estimated": records
            without (e.g. one drawn slice), "not_estimated_k": the k values of those,
            "mean_absolute_error": mean |expected - true| (None when nothing was estimated),
            "mean_error": mean (expected - true) (> 0: too optimistic), "worst": {"name", "k",
            "expected", "dice", "error"} of the largest |error|}}.
        """
        out = {}
        for engine in self.engines():
            records = [r for r in self.records if r.engine == engine]
            estimated = [r for r in records if r.expected_dice is not None]
            if not estimated:
                continue
            errors = [r.expected_dice - r.dice for r in estimated]  # type: ignore[operator]
            worst_error, worst = max(zip(errors, estimated), key=lambda pair: abs(pair[0]))
            out[engine] = {
                "estimated": len(estimated),
                "not_estimated": len(records) - len(estimated),
                "not_estimated_k": sorted({r.k for r in records if r.expected_dice is None}),
                "mean_absolute_error": float(np.mean(np.abs(errors))),
                "mean_error": float(np.mean(errors)),
                "worst": {"name": worst.name, "k": worst.k, "expected": worst.expected_dice, "dice": worst.dice,
                          "error": float(worst_error)},
            }
        return out

    def expected_dice_table(self) -> str:
        """For the engines that report an expected Dice: a markdown table of "true / expected"
        Dice per structure and k with the mean absolute error per k, then one line per engine with
        the mean absolute error, the worst case and the structures without an estimate. Empty
        when no engine reports one."""
        errors = self.expected_dice_error()
        if not errors:
            return ""
        names = [name for _, name in self.labels()]
        header = ["engine", "k", *(f"{name} true / expected" for name in names), "mean abs error"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for engine in errors:
            for k in self.ks():
                chosen = {r.name: r for r in self.records if r.engine == engine and r.k == k}
                if not chosen:
                    continue
                cells = [engine, str(k)]
                for name in names:
                    r = chosen.get(name)
                    expected = "-" if r is None or r.expected_dice is None else f"{r.expected_dice:.3f}"
                    cells.append("-" if r is None else f"{r.dice:.3f} / {expected}")
                gaps = [abs(r.expected_dice - r.dice) for r in chosen.values() if r.expected_dice is not None]
                cells.append(f"{np.mean(gaps):.3f}" if gaps else "not estimated")
                lines.append("| " + " | ".join(cells) + " |")
        for engine, e in errors.items():
            w = e["worst"]
            missing = (
                f"; not estimated: {e['not_estimated']} (k = {', '.join(map(str, e['not_estimated_k']))})"
                if e["not_estimated"] else ""
            )
            lines.append(
                f"\n{engine} expected Dice: mean absolute error {e['mean_absolute_error']:.3f} over "
                f"{e['estimated']} estimates (mean error {e['mean_error']:+.3f}), worst {w['name']} at k = {w['k']} "
                f"(expected {w['expected']:.3f}, true {w['dice']:.3f}){missing}"
            )
        return "\n".join(lines)

    def as_json(self) -> dict:
        return {
            "image": self.image,
            "reference": self.reference,
            "records": [r.as_json() for r in self.records],
            "summary": self.summary(),
            "expected_dice_error": self.expected_dice_error(),
        }


def run_bench(
    image: Volume,
    reference: LabelVolume,
    labels: dict[int, str],
    ks: list[int],
    engines: list[str],
    axis: int = 0,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> BenchResult:
    """Benchmark ``engines`` on every (label, k); see the module docstring.

    Args:
        image: the image volume.
        reference: the full reference label map on the image grid.
        labels: {label value: display name} of the structures to test.
        ks: numbers of annotated slices.
        engines: engine names for :func:`~SAMFewShotLib.engines.make_engine`.
        axis: numpy axis of the simulated annotation (0 = z).
    Raises:
        ValueError before any engine runs: a label absent from the reference, a k larger
        than a structure's extent, an unknown engine, a grid mismatch.
    """
    image.require_same_grid(reference.volume, "reference")
    present = set(reference.label_values())
    missing = [value for value in labels if value not in present]
    if missing:
        raise InputError(f"Label {missing[0]} is not in the reference (it holds {sorted(present)})")
    built = {name: make_engine(name) for name in engines}
    cases = []
    for value, name in labels.items():
        single = reference.with_array((reference.array == value).astype(reference.array.dtype) * value)
        for k in ks:
            try:
                annotation = simulate_annotation(single, k, axis=axis)
            except ValueError as error:
                raise InputError(f"{name} (label {value}): {error}") from None
            cases.append((value, name, k, annotation))
    result = BenchResult()
    total = len(cases) * len(built)
    done = 0
    for value, name, k, annotation in cases:
        truth = reference.array == value
        slices = annotation.drawn_slices(value)
        for engine_name, engine in built.items():
            if cancel is not None:
                cancel.raise_if_cancelled()
            start = time.perf_counter()
            prediction = engine.propagate(image, annotation, cancel=cancel)
            seconds = time.perf_counter() - start
            scores = evaluate(prediction.labels.array == value, truth, image.spacing_zyx)
            details = prediction.details.get(value, {})
            result.records.append(
                BenchRecord(
                    engine=engine_name,
                    label=value,
                    name=name,
                    k=k,
                    slices=slices,
                    seconds=seconds,
                    expected_dice=prediction.expected_dice.get(value),
                    choice=details.get("choice"),
                    **scores,
                )
            )
            done += 1
            progress("bench", done, total)
    return result

