"""``samfewshot demo``: propagate a structure from k simulated slices on real data, offline.

:func:`run_demo` loads the demo case (see demo_data.py: the MNI template shipped with nilearn,
or a phantom), simulates the k slices a user would draw (bench.simulate_annotation), runs the
engines, scores them against the reference and writes everything to a folder.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bench import simulate_annotation
from .demo_data import DemoCase, load_demo_case
from .errors import InputError
from .files import write_text_atomic
from .metrics import evaluate
from .progress import CancelToken, Progress, no_progress
from .result_montage import write_result_montage
from .volume_io import PathLike, same_file, write_labels, write_volume

#: The engine every other one is compared with.
BASELINE_ENGINE = "interpolate"
BASELINE_TITLE = "Fill between slices"


# Running the demo --------------------------------------------------------------------------
@dataclass
class EngineScore:
    """One engine's result on the demo case.

    Attributes:
        engine: the engine name as given.
        dice: mean Dice over the labels (in [0, 1]).
        hd95: mean HD95 over the labels in mm (inf when a label was predicted empty).
        seconds: wall time of ``propagate``.
        per_label: {label value: metrics.evaluate's dict}.
        file: the written prediction.
    """

    engine: str
    dice: float
    hd95: float
    seconds: float
    per_label: dict[int, dict[str, float]]
    file: Path


@dataclass
class DemoResult:
    """What :func:`run_demo` did: the scores and the written files."""

    source: str
    k: int
    axis: int
    out_dir: Path
    annotated_slices: dict[int, list[int]]
    scores: list[EngineScore]
    files: dict[str, Path] = field(default_factory=dict)
    structure: str = ""

    def score(self, engine: str) -> EngineScore | None:
        return next((s for s in self.scores if s.engine == engine), None)

    def comparison(self) -> str:
        """One line: which engines beat Fill between slices (``interpolate``) and by how much."""
        baseline = self.score(BASELINE_ENGINE)
        if baseline is None:
            return f"{BASELINE_TITLE} ({BASELINE_ENGINE}) was not run: nothing to compare with."
        better = sorted(
            (s for s in self.scores if s.engine != BASELINE_ENGINE and s.dice > baseline.dice),
            key=lambda s: s.dice, reverse=True,
        )
        others = [s for s in self.scores if s.engine != BASELINE_ENGINE]
        if not others:
            return f"Only {BASELINE_TITLE} ({BASELINE_ENGINE}) was run: nothing to compare with."
        if not better:
            return f"No engine beats {BASELINE_TITLE} ({BASELINE_ENGINE}, Dice {baseline.dice:.3f}) on this case."
        parts = [
            f"{s.engine} by {s.dice - baseline.dice:+.3f} Dice ({_hd_change(baseline.hd95, s.hd95)})" for s in better
        ]
        return f"Beats {BASELINE_TITLE} ({BASELINE_ENGINE}, Dice {baseline.dice:.3f}): " + "; ".join(parts) + "."

    def table(self) -> str:
        """A fixed-width text table (engine, Dice, HD95 mm, seconds) and the comparison line."""
        slices = ", ".join(f"{v}: {s}" for v, s in self.annotated_slices.items())
        width = max([len("engine")] + [len(s.engine) for s in self.scores])
        lines = [
            f"{self.structure or 'structure'}: k = {self.k} slices along axis {self.axis} ({slices})",
            f"{'engine':<{width}}  {'Dice':>6}  {'HD95 mm':>8}  {'seconds':>8}",
        ]
        for s in self.scores:
            hd = "inf" if math.isinf(s.hd95) else f"{s.hd95:.2f}"
            lines.append(f"{s.engine:<{width}}  {s.dice:>6.3f}  {hd:>8}  {s.seconds:>8.1f}")
        lines.append(self.comparison())
        return "\n".join(lines)

    def summary(self) -> dict:
        """The JSON-ready summary (inf distances become None)."""
        finite = lambda v: None if math.isinf(v) or math.isnan(v) else round(float(v), 4)  # noqa: E731
        return {
            "source": self.source,
            "structure": self.structure,
            "k": self.k,
            "axis": self.axis,
            "annotated_slices": {str(v): s for v, s in self.annotated_slices.items()},
            "engines": [s.engine for s in self.scores],
            "dice": {s.engine: finite(s.dice) for s in self.scores},
            "hd95": {s.engine: finite(s.hd95) for s in self.scores},
            "seconds": {s.engine: round(s.seconds, 3) for s in self.scores},
            "per_label": {
                s.engine: {str(v): {m: finite(x) for m, x in d.items()} for v, d in s.per_label.items()}
                for s in self.scores
            },
            "files": {key: path.name for key, path in self.files.items()},
        }


def _hd_change(baseline: float, value: float) -> str:
    if math.isinf(baseline) or math.isinf(value):
        return f"HD95 {value:.2f} mm vs {baseline:.2f} mm"
    if abs(value - baseline) < 0.005:
        return f"same HD95, {value:.2f} mm"
    return f"HD95 {value - baseline:+.2f} mm"


def _engine_file_name(engine: str, extension: str = ".seg.nrrd") -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in engine) + extension


def _check_outputs(paths: Iterable[Path], inputs: Iterable[Path]) -> None:
    inputs = list(inputs)
    for path in paths:
        for source in inputs:
            if same_file(path, source):
                raise InputError(f"{path}: is an input of the demo ({source}); choose another output folder")


def run_demo(
    out_dir: PathLike,
    engines: Sequence[str] = ("interpolate", "register", "auto"),
    k: int = 5,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
    case: DemoCase | None = None,
) -> DemoResult:
    """Simulate k annotated slices of the demo structure, propagate them with each engine, score.

    Writes to ``out_dir`` (created when missing): ``image.nii.gz``, ``reference.seg.nrrd``,
    ``annotation.seg.nrrd``, ``<engine>.seg.nrrd`` and the QC picture ``<engine>-qc.png``
    (:mod:`~SAMFewShotLib.result_montage`) per engine (":" becomes "-") and ``summary.json``
    (source, k, engines, dice, hd95 in mm, seconds, per-label metrics).
    Existing files of these names in ``out_dir`` are replaced; the case's input files never are.

    Args:
        out_dir: output folder.
        engines: engine names for :func:`~SAMFewShotLib.engines.make_engine`.
        k: annotated slices per structure (see :func:`simulate_annotation`).
        progress: called with ("demo", engines done, engines) and passed on to every engine.
        cancel: polled between engines and passed on to every engine.
        case: the case to run on; default :func:`load_demo_case`.

    Returns:
        The scores (Dice and HD95 in mm against the full reference, annotated slices included,
        mean over labels) and the written files.

    Raises:
        ValueError: unknown engine, bad k (too large for the structure), no engine, or an output
            that would replace an input.
    """
    from .engines import make_engine

    engines = list(dict.fromkeys(engines))
    if not engines:
        raise InputError("Give at least one engine")
    built = {name: make_engine(name) for name in engines}  # unknown names fail before any work
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file, not a folder")
    case = case if case is not None else load_demo_case()
    annotation = simulate_annotation(case.reference, k, case.axis)
    files = {
        "image": out / "image.nii.gz",
        "reference": out / "reference.seg.nrrd",
        "annotation": out / "annotation.seg.nrrd",
        **{name: out / _engine_file_name(name) for name in engines},
        **{f"{name} qc": out / _engine_file_name(name, "-qc.png") for name in engines},
        "summary": out / "summary.json",
    }
    _check_outputs(files.values(), case.input_files)
    out.mkdir(parents=True, exist_ok=True)
    write_volume(case.image, files["image"])
    write_labels(case.reference, files["reference"])
    write_labels(annotation.labels, files["annotation"])

    values = case.reference.label_values()
    spacing_zyx = case.image.spacing_zyx
    scores = []
    for done, name in enumerate(engines):
        progress("demo", done, len(engines))
        if cancel is not None:
            cancel.raise_if_cancelled()
        start = time.perf_counter()
        prediction = built[name].propagate(case.image, annotation, progress=progress, cancel=cancel)
        seconds = time.perf_counter() - start
        per_label = {v: evaluate(prediction.labels.array == v, case.reference.array == v, spacing_zyx) for v in values}
        write_labels(prediction.labels, files[name])
        write_result_montage(files[f"{name} qc"], case.image, annotation, prediction, engine=name)
        scores.append(
            EngineScore(
                engine=name,
                dice=float(np.mean([m["dice"] for m in per_label.values()])),
                hd95=float(np.mean([m["hd95"] for m in per_label.values()])),
                seconds=seconds,
                per_label=per_label,
                file=files[name],
            )
        )
    progress("demo", len(engines), len(engines))
    structure = ", ".join(case.reference.segment(v).display_name() for v in values)
    result = DemoResult(
        source=case.source, k=k, axis=case.axis, out_dir=out,
        annotated_slices={v: annotation.drawn_slices(v) for v in values},
        scores=scores, files=files, structure=structure,
    )
    write_text_atomic(files["summary"], json.dumps(result.summary(), indent=2) + "\n")
    return result
