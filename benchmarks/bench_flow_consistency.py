"""A/B of forward-backward consistency (``propagation/flow_consistency.py``) on a benchmark CT.

For every structure and k, the drawings of ``samfewshot bench`` are chained by ``register`` (its
working grid and registrar) and the result is scored four ways:
- Dice of the plain chain, of the intensity refinement with its distance ramp (``auto``'s
  ``refined``), and of the refinement whose band follows the round-trip error accumulated from
  the nearest drawn slice instead (``refine_slices(..., inconsistency=...)``, ramp R pixels);
- as a per-slice confidence: Spearman correlation, over the propagated slices, between the true
  slice Dice and the chain's confidence, minus the accumulated round-trip error, or minus the
  distance to the nearest drawn slice.

    PYTHONPATH=$PWD python benchmarks/bench_flow_consistency.py ../shared/data/abdomen_ct/image.nii.gz \
        ../shared/data/abdomen_ct/reference_labels.nii.gz \
        --labels 5=liver,1=spleen,3=kidney_left,2=kidney_right,52=aorta,21=urinary_bladder,6=stomach --k 1,3,10
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import numpy as np
from scipy import stats

RAMPS_PX = (0.5, 1.0, 2.0)


def slice_dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * float((a & b).sum()) / float(total)


def run_case(image, reference, value: int, k: int) -> dict:
    from SAMFewShotLib.bench import simulate_annotation
    from SAMFewShotLib.engines.register import RegisterEngine
    from SAMFewShotLib.metrics import dice
    from SAMFewShotLib.propagation.flow_consistency import accumulated_inconsistency, step_inconsistency
    from SAMFewShotLib.propagation.intensity_model import IntensityModel
    from SAMFewShotLib.propagation.intensity_refinement import RefinementSettings, refine_slices

    single = reference.with_array((reference.array == value).astype(reference.array.dtype) * value)
    annotation = simulate_annotation(single, k)
    truth = annotation.to_canonical(reference.array == value)
    shape = annotation.canonical_shape
    engine = RegisterEngine()
    prepared = engine.prepare(image, annotation)
    row: dict = {}
    with prepared:
        chained = engine.chain_label(prepared, annotation, value)
        grid, probability = chained.working.grid, chained.result.probability
        whole = (slice(0, grid.shape[0]), slice(0, grid.shape[1]))
        steps = step_inconsistency(chained.working.flows, probability, whole)
        inconsistency = accumulated_inconsistency(steps, chained.drawn)
        model = IntensityModel([chained.working.values[z] for z in chained.drawn], list(chained.drawn.values()),
                               chained.value_range)

        def scored(p: np.ndarray) -> float:
            full = np.zeros(shape, bool)
            full[:, grid.crop[0], grid.crop[1]] = grid.upsample(p) > 0.5
            return dice(full, truth)

        row["register"] = scored(probability)
        row["refined"] = scored(refine_slices(probability, chained.working.values, model, chained.drawn,
                                              chained.slice_mm))
        for ramp in RAMPS_PX:
            settings = replace(RefinementSettings(), consistency_ramp_px=ramp)
            row[f"fb{ramp:g}"] = scored(refine_slices(probability, chained.working.values, model, chained.drawn,
                                                      chained.slice_mm, settings, inconsistency))
        zs = [z for z in range(len(probability)) if z not in chained.drawn and (probability[z] > 0.5).any()]
        crop_truth = truth[:, grid.crop[0], grid.crop[1]]
        true = [slice_dice(grid.upsample(probability[z:z + 1])[0] > 0.5, crop_truth[z]) for z in zs]
        drawn = sorted(chained.drawn)
        signals = {
            "conf chain": chained.result.confidence[zs],
            "conf fb": -inconsistency[zs],
            "conf distance": -np.array([min(abs(z - d) for d in drawn) for z in zs], float),
        }
        for name, signal in signals.items():
            row[name] = float(stats.spearmanr(signal, true)[0]) if len(zs) > 2 else float("nan")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image")
    parser.add_argument("reference")
    parser.add_argument("--labels", required=True, help="value=name,...")
    parser.add_argument("--k", default="1,3,10")
    args = parser.parse_args(argv)

    from SAMFewShotLib.volume_io import read_labels, read_volume

    image, reference = read_volume(args.image), read_labels(args.reference)
    labels = {int(v): n for v, n in (item.split("=") for item in args.labels.split(","))}
    ks = [int(k) for k in args.k.split(",")]
    for k in ks:
        rows = {}
        for value, name in labels.items():
            rows[name] = run_case(image, reference, value, k)
            print(f"k={k} {name}: " + " ".join(f"{key} {val:.3f}" for key, val in rows[name].items()), flush=True)
        keys = list(next(iter(rows.values())))
        print(f"| k = {k} | " + " | ".join(keys) + " |")
        print("|---|" + "---|" * len(keys))
        print("| mean | " + " | ".join(f"{np.nanmean([r[key] for r in rows.values()]):.3f}" for key in keys) + " |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
