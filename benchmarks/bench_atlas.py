"""Atlas registration benchmark on real CT deformed by known smooth random fields.

The abdominal CT of ``../shared/data/abdomen_ct`` and its reference labels are warped by a known
smooth random field (:mod:`SAMFewShotLib.atlas.deformation`, max displacement ``--max-mm``):
that is the target, and the warped reference is its true label map. Then:

- identity: the undeformed labels as they are (what registration must beat);
- single atlas: a bundle holding the undeformed CT, applied with ``apply_bundle`` (the whole
  user path: bundle written, loaded, registered);
- multi-atlas: the undeformed CT plus the CT under ``--atlases - 1`` further independent known
  deformations, each registered once onto the target and fused by majority vote, STAPLE and
  locally weighted voting.

Dice per label, mean Dice, wall seconds and process CPU seconds (user + system; on a quiet
2-core machine the wall time of a 2-thread run is about half of it). Not collected by pytest:

    .venv/bin/python benchmarks/bench_atlas.py [--max-mm 10] [--control-mm 60] [--size 128] [--json OUT]
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from SAMFewShotLib.atlas.apply import apply_bundle  # noqa: E402
from SAMFewShotLib.atlas.bundle import load_bundle, write_bundle  # noqa: E402
from SAMFewShotLib.atlas.deformation import deform_case  # noqa: E402
from SAMFewShotLib.atlas.fusion import FUSION_METHODS, fuse_labels  # noqa: E402
from SAMFewShotLib.atlas.registration import check_parameters, register  # noqa: E402
from SAMFewShotLib.metrics import dice  # noqa: E402
from SAMFewShotLib.volume import LabelVolume, Volume  # noqa: E402
from SAMFewShotLib.volume_io import read_labels, read_volume  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "abdomen_ct"
LABELS = {5: "liver", 1: "spleen", 3: "kidney_left", 2: "kidney_right"}


def resample_cube(volume: Volume, size: int, nearest: bool) -> Volume:
    """``volume`` resampled onto a ``size``^3 grid covering the same extent (same origin and
    direction), linear for images, nearest neighbour for labels."""
    extent = np.asarray(volume.spacing) * np.asarray(volume.shape[::-1])
    grid = sitk.Image([size] * 3, sitk.sitkUInt8)
    grid.SetSpacing(tuple(float(v) for v in extent / size))
    grid.SetOrigin(volume.origin)
    grid.SetDirection(volume.direction)
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    out = sitk.Resample(volume.to_sitk(), grid, sitk.Transform(), interpolator, float(volume.array.min()))
    return Volume.from_sitk(out)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def scores(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {name: dice(labels == value, truth == value) for value, name in LABELS.items()}


def row(method: str, dices: dict[str, float], wall: float, cpu: float) -> dict:
    return {"method": method, "dice": dices, "mean_dice": float(np.mean(list(dices.values()))), "seconds": wall,
            "cpu_seconds": cpu}


def table(rows: list[dict]) -> str:
    header = ["method", *LABELS.values(), "mean Dice", "wall s", "CPU s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["method"], *(f"{r['dice'][n]:.3f}" for n in LABELS.values()), f"**{r['mean_dice']:.3f}**",
                 f"{r['seconds']:.1f}", f"{r['cpu_seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA), help="folder with image.nii.gz and reference_labels.nii.gz")
    parser.add_argument("--max-mm", type=float, default=10.0, help="largest displacement of the known fields, mm")
    parser.add_argument("--control-mm", type=float, default=60.0, help="control-point spacing of the fields, mm")
    parser.add_argument("--atlases", type=int, default=3, help="atlases of the multi-atlas run")
    parser.add_argument("--parameters", default="{}", help="registration settings as JSON (default: built-in)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the target's field")
    parser.add_argument("--size", type=int, default=None, help="resample the CT to SIZE^3 voxels first (timing)")
    parser.add_argument("--json", default=None, help="write the rows as JSON")
    args = parser.parse_args()

    image = read_volume(Path(args.data) / "image.nii.gz")
    reference = read_labels(Path(args.data) / "reference_labels.nii.gz")
    if args.size:
        image = resample_cube(image, args.size, nearest=False)
        reference = LabelVolume(resample_cube(reference.volume, args.size, nearest=True))
    parameters = check_parameters(json.loads(args.parameters))
    deform = dict(control_spacing_mm=args.control_mm)
    target, truth = deform_case(image, reference, args.max_mm, seed=args.seed, **deform)
    print(f"target: CT {'x'.join(map(str, image.shape[::-1]))} (x,y,z) at {image.spacing} mm, field seed {args.seed}, "
          f"max {args.max_mm} mm, control points every {args.control_mm} mm; parameters {json.dumps(parameters)}")
    rows = [row("identity (no registration)", scores(reference.array, truth.array), 0.0, 0.0)]

    importlib.import_module("itk")  # load ITK before timing: 10-20 s once per process

    with tempfile.TemporaryDirectory() as folder:
        write_bundle(Path(folder) / "single.zip", name="abdomen", atlases=[(image, reference)], parameters=parameters)
        wall, cpu = time.perf_counter(), cpu_seconds()
        result = apply_bundle(load_bundle(Path(folder) / "single.zip"), target)
        rows.append(row("single atlas (apply_bundle)", scores(result.labels.array, truth.array),
                        time.perf_counter() - wall, cpu_seconds() - cpu))
    print(table(rows[-1:]), flush=True)

    atlases = [(image, reference)] + [
        deform_case(image, reference, args.max_mm, seed=args.seed + 100 + i, **deform) for i in range(args.atlases - 1)
    ]
    registrations, wall, cpu = [], time.perf_counter(), cpu_seconds()
    for atlas_image, atlas_labels in atlases:
        registrations.append(register(atlas_image, atlas_labels, target, parameters=parameters))
    register_wall, register_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    for i, registration in enumerate(registrations):
        rows.append(row(f"atlas {i} alone", scores(registration.labels.array, truth.array), float("nan"), float("nan")))
    for method in FUSION_METHODS:
        wall, cpu = time.perf_counter(), cpu_seconds()
        fused = fuse_labels([r.labels for r in registrations], method, images=[r.image for r in registrations],
                            target=target)
        rows.append(row(f"{args.atlases} atlases, {method}", scores(fused.array, truth.array),
                        register_wall + time.perf_counter() - wall, register_cpu + cpu_seconds() - cpu))
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"arguments": vars(args), "parameters": parameters, "rows": rows},
                                              indent=2, default=float))


if __name__ == "__main__":
    main()
