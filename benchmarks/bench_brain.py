"""Brain-MRI proxy benchmark (issue 16): large folded structures on the 1 mm MNI152 template.

The image is the MNI ICBM152 2009a symmetric T1 template that the nilearn wheel ships, loaded
by :func:`SAMFewShotLib.demo_data.mni_case` (resampled to ``--spacing`` mm, 1 mm = the
template's own grid, and cropped to the brain; nothing is downloaded). The reference holds:

- ``white_matter``: cerebral white matter, nilearn's WM probability map > 0.5 inside the brain,
  the brainstem cut below RAS z = -10 mm (|x| < 18 mm, -50 < y < 0 mm) so the cerebellar white
  matter falls off, largest connected component (the folded structure of issue 16);
- ``grey_matter``: the GM probability map > 0.5, same cut, largest component (cortex and the
  deep grey matter connected to it: a thin folded sheet);
- ``lateral_ventricles``: the demo's reference structure (:func:`demo_data.lateral_ventricles`).

For every structure, k and engine, k axial slices are drawn as ``samfewshot bench`` draws them
(:func:`SAMFewShotLib.bench.simulate_annotation`, each structure on its own), the engine
propagates them in this process, and the whole structure is scored (Dice, HD95 in mm). Wall
seconds and CPU seconds (this process plus the worker/child processes it waited for) per run.

Engines: any ``samfewshot`` engine name (``interpolate`` = Fill between slices, ``register``,
``auto``) and ``envelope``: the envelope segmentation of
``SAMFewShotLib/propagation/envelope_segmentation.py`` on its own (auto's candidate).

    PYTHONPATH=$PWD python benchmarks/bench_brain.py --k 1,3,5 --engines interpolate,register,auto,envelope
    PYTHONPATH=$PWD python benchmarks/bench_brain.py --structures white_matter --k 3 --engines envelope --json wm.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from SAMFewShotLib.annotation import SparseAnnotation  # noqa: E402
from SAMFewShotLib.prediction import LabelProbability  # noqa: E402
from SAMFewShotLib.volume import LabelVolume, Segment, Volume  # noqa: E402

STRUCTURES = ("white_matter", "grey_matter", "lateral_ventricles")
SEGMENTS = {
    "white_matter": Segment(value=1, name="Cerebral white matter", color=(0.96, 0.96, 0.96)),
    "grey_matter": Segment(value=2, name="Grey matter", color=(0.55, 0.55, 0.55)),
    "lateral_ventricles": Segment(value=3, name="Lateral ventricles", color=(0.345, 0.416, 0.843)),
}
#: Brainstem cut (RAS mm): below this z, within this |x| and this y range, voxels are dropped.
BRAINSTEM_BELOW_Z_MM = -10.0
BRAINSTEM_HALF_WIDTH_MM = 18.0
BRAINSTEM_Y_RANGE_MM = (-50.0, 0.0)


def brain_case(spacing_mm: float = 1.0):
    """(T1 Volume, reference LabelVolume with the three structures, source text)."""
    import SimpleITK as sitk
    from scipy import ndimage

    from SAMFewShotLib import demo_data

    files = demo_data.nilearn_template_files()
    if files is None:
        raise SystemExit("nilearn with its MNI ICBM152 2009a template files is not installed")
    case = demo_data.mni_case(files, spacing_mm)
    t1 = case.image
    grid = t1.to_sitk()

    def on_grid(path: Path) -> np.ndarray:
        image = sitk.ReadImage(str(path), sitk.sitkFloat32)
        resampled = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        return sitk.GetArrayFromImage(resampled) / 255.0

    x, y, z = demo_data.ras_coordinates(t1)
    low_y, high_y = BRAINSTEM_Y_RANGE_MM
    stem = (z < BRAINSTEM_BELOW_Z_MM) & (np.abs(x) < BRAINSTEM_HALF_WIDTH_MM) & (y > low_y) & (y < high_y)
    brain = t1.array > 0

    def largest(mask: np.ndarray) -> np.ndarray:
        components, count = ndimage.label(mask)
        sizes = ndimage.sum_labels(mask, components, np.arange(1, count + 1))
        return components == int(np.argmax(sizes)) + 1

    labels = np.zeros(t1.shape, np.uint8)
    labels[largest((on_grid(files["wm"]) > 0.5) & brain & ~stem)] = SEGMENTS["white_matter"].value
    labels[largest((on_grid(files["gm"]) > 0.5) & brain & ~stem)] = SEGMENTS["grey_matter"].value
    labels[case.reference.array > 0] = SEGMENTS["lateral_ventricles"].value
    reference = LabelVolume(t1.with_array(labels), tuple(SEGMENTS.values()))
    source = case.source.split("; reference:")[0]
    return t1, reference, source


class EnvelopeBenchEngine:
    """The envelope segmentation alone, wrapped as an engine for this benchmark."""

    name = "envelope"

    def propagate(self, image: Volume, annotation: SparseAnnotation, **_):
        from SAMFewShotLib.engines.base import per_label_prediction
        from SAMFewShotLib.progress import no_progress
        from SAMFewShotLib.propagation.envelope_segmentation import segment_in_envelope

        stack = annotation.to_canonical(image.array)
        spacing = annotation.spacing_canonical

        def one(value: int) -> LabelProbability:
            mask = annotation.mask(value)
            drawn = {z: mask[z] for z in annotation.drawn_slices(value)}
            result = segment_in_envelope(stack, drawn, spacing, empty=set(annotation.empty_slices.get(value, ())))
            return result.label_probability(stack.shape)

        return per_label_prediction(self.name, annotation, one, progress=no_progress, cancel=None)


def make(name: str):
    if name == "envelope":
        return EnvelopeBenchEngine()
    from SAMFewShotLib.engines import make_engine

    return make_engine(name)


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(args) -> list[dict]:
    from SAMFewShotLib.bench import simulate_annotation
    from SAMFewShotLib.metrics import evaluate

    start = time.perf_counter()
    image, reference, source = brain_case(args.spacing)
    print(f"{source}; {image.shape[2]}x{image.shape[1]}x{image.shape[0]} voxels, "
          f"loaded in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    rows = []
    for structure in args.structures:
        segment = SEGMENTS[structure]
        truth = reference.array == segment.value
        single = reference.with_array(truth.astype(np.uint8) * segment.value)
        for k in args.k:
            annotation = simulate_annotation(single, k, axis=0)
            for engine_name in args.engines:
                engine = make(engine_name)
                cpu, wall = cpu_seconds(), time.perf_counter()
                prediction = engine.propagate(image, annotation)
                wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
                scores = evaluate(prediction.labels.array == segment.value, truth, image.spacing_zyx)
                details = prediction.details.get(segment.value, {})
                row = {
                    "structure": structure, "k": k, "engine": engine_name,
                    "slices": annotation.drawn_slices(segment.value),
                    "dice": scores["dice"], "hd95": scores["hd95"] if math.isfinite(scores["hd95"]) else None,
                    "wall_s": wall, "cpu_s": cpu,
                    "choice": details.get("choice"),
                    "expected_dice": prediction.expected_dice.get(segment.value),
                    "validation_dice": details.get("validation_dice"),
                }
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    header = ["structure", "k", "engine", "Dice", "HD95 mm", "wall s", "CPU s", "auto chose"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        hd95 = "-" if r["hd95"] is None else f"{r['hd95']:.1f}"
        cells = [r["structure"], str(r["k"]), r["engine"], f"{r['dice']:.3f}", hd95,
                 f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}", r.get("choice") or ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--structures", default=",".join(STRUCTURES),
                        help=f"comma-separated, from {', '.join(STRUCTURES)}")
    parser.add_argument("--k", default="1,3,5", help="drawn axial slices per structure, comma-separated")
    parser.add_argument("--engines", default="interpolate,register,auto,envelope")
    parser.add_argument("--spacing", type=float, default=1.0, help="isotropic voxel size (mm) of the template")
    parser.add_argument("--json", type=Path, help="write the rows (and the load) to this file")
    args = parser.parse_args(argv)
    args.structures = [s.strip() for s in args.structures.split(",") if s.strip()]
    unknown = [s for s in args.structures if s not in SEGMENTS]
    if unknown:
        parser.error(f"unknown structure {unknown[0]!r} (choose from {', '.join(STRUCTURES)})")
    args.k = [int(k) for k in args.k.split(",")]
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    load_before = os.getloadavg()
    rows = run(args)
    load_after = os.getloadavg()
    print(table(rows))
    print(f"\nload average (1, 5, 15 min) before {tuple(round(v, 2) for v in load_before)}, "
          f"after {tuple(round(v, 2) for v in load_after)}; {os.cpu_count()} cores")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "load_before": load_before, "load_after": load_after,
                                         "spacing_mm": args.spacing}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
