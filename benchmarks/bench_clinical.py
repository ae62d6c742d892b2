"""Clinical-scale propagation benchmark (issue 12).

Builds the clinical grid from ``../shared/data/abdomen_ct`` (512 x 424 x 224 voxels, 0.715 x
0.715 x 1.5 mm; image linear, labels nearest, SimpleITK) once into a cache folder outside the
repository, then for every structure, k and engine simulates k drawn slices exactly as
``samfewshot bench`` does (:func:`SAMFewShotLib.bench.simulate_annotation`), runs
``samfewshot propagate ... --report`` in a fresh process (what a user or the Slicer module pays)
and prints Dice, HD95, the report's seconds per stage, the child's CPU seconds and peak RSS.
``--multi`` instead draws all structures (k = 3 by default) in one annotation and runs one
``propagate`` call.

    PYTHONPATH=$PWD python benchmarks/bench_clinical.py --engines register,auto,interpolate --k 3 \
        --structures liver
    PYTHONPATH=$PWD python benchmarks/bench_clinical.py --multi --engines auto

"compute" = the report's total minus read and write (the issue's definition).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "abdomen_ct"
if not DATA.exists():
    DATA = Path("/work/shared/data/abdomen_ct")
CACHE = Path(os.environ.get("SAMFEWSHOT_BENCH_CACHE", Path.home() / ".cache" / "samfewshot-bench"))
#: The clinical grid of issue 12: size (x, y, z) and spacing (x, y, z) in mm.
CLINICAL_SIZE = (512, 424, 224)
CLINICAL_SPACING = (0.715, 0.715, 1.5)
#: The README's seven structures (label value: name).
STRUCTURES = {
    "liver": 5,
    "spleen": 1,
    "kidney_left": 3,
    "kidney_right": 2,
    "aorta": 52,
    "urinary_bladder": 21,
    "stomach": 6,
}
STAGES = ("read", "prepare", "registration", "contour interpolation", "combine", "write")


def clinical_grid(cache: Path = CACHE) -> tuple[Path, Path]:
    """(image, labels) on the clinical grid as uncompressed NIfTI in ``cache`` (built once)."""
    import SimpleITK as sitk

    cache.mkdir(parents=True, exist_ok=True)
    image_path, labels_path = cache / "clinical_image.nii", cache / "clinical_labels.nii"
    if image_path.exists() and labels_path.exists():
        return image_path, labels_path
    image = sitk.ReadImage(str(DATA / "image.nii.gz"))
    labels = sitk.ReadImage(str(DATA / "reference_labels.nii.gz"))
    # Same physical extent centre: keep the origin and direction, set the clinical size/spacing.
    old_extent = np.array(image.GetSize()) * np.array(image.GetSpacing())
    new_extent = np.array(CLINICAL_SIZE) * np.array(CLINICAL_SPACING)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    origin = np.array(image.GetOrigin()) + direction @ ((old_extent - new_extent) / 2.0)
    origin += direction @ ((np.array(CLINICAL_SPACING) - np.array(image.GetSpacing())) / 2.0)

    def resample(volume, interpolator, pixel):
        f = sitk.ResampleImageFilter()
        f.SetSize([int(s) for s in CLINICAL_SIZE])
        f.SetOutputSpacing(CLINICAL_SPACING)
        f.SetOutputOrigin(tuple(float(o) for o in origin))
        f.SetOutputDirection(volume.GetDirection())
        f.SetInterpolator(interpolator)
        f.SetDefaultPixelValue(-1024 if pixel == sitk.sitkInt16 else 0)
        f.SetOutputPixelType(pixel)
        return f.Execute(volume)

    sitk.WriteImage(resample(image, sitk.sitkLinear, sitk.sitkInt16), str(image_path.with_suffix(".tmp.nii")))
    sitk.WriteImage(resample(labels, sitk.sitkNearestNeighbor, sitk.sitkUInt8),
                    str(labels_path.with_suffix(".tmp.nii")))
    os.replace(image_path.with_suffix(".tmp.nii"), image_path)
    os.replace(labels_path.with_suffix(".tmp.nii"), labels_path)
    return image_path, labels_path


def annotation_file(reference, values: list[int], k: int, cache: Path = CACHE) -> tuple[Path, dict]:
    """The simulated k-slice annotation of ``values`` (written once), and its drawn slices."""
    from SAMFewShotLib.bench import annotation_slices, simulate_annotation
    from SAMFewShotLib.volume_io import write_labels

    path = cache / f"drawn_{'-'.join(map(str, values))}_k{k}.nii"
    keep = np.isin(reference.array, values)
    subset = reference.with_array(np.where(keep, reference.array, 0).astype(reference.array.dtype))
    if not path.exists():
        write_labels(simulate_annotation(subset, k).labels, path)
    return path, annotation_slices(subset, k)


def run_propagate(image: Path, drawn: Path, engine: str, out: Path, report: Path) -> dict:
    """``samfewshot propagate`` in a child; its report plus wall, CPU seconds and peak RSS."""
    command = [sys.executable, "-m", "SAMFewShotLib", "propagate", str(image), str(drawn), "-o", str(out),
               "--engine", engine, "--report", str(report), "--progress", "none"]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {process.returncode}")
    result = json.loads(report.read_text())
    seconds = result["seconds"]
    result.update(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,  # the child and every process it waited for
        peak_rss_mib=usage.ru_maxrss / 1024.0,
        compute=seconds["total"] - seconds.get("read", 0.0) - seconds.get("write", 0.0),
    )
    return result


def score(out: Path, reference, value: int) -> dict:
    from SAMFewShotLib.metrics import evaluate
    from SAMFewShotLib.volume_io import read_labels

    predicted = read_labels(out)
    return evaluate(predicted.array == value, reference.array == value, reference.volume.spacing_zyx)


def row(engine: str, name: str, k: int, scores: dict, result: dict) -> dict:
    seconds = result["seconds"]
    return {
        "engine": engine,
        "structure": name,
        "k": k,
        "dice": round(scores["dice"], 4),
        "hd95": round(scores["hd95"], 2) if np.isfinite(scores["hd95"]) else None,
        **{stage: round(seconds.get(stage, 0.0), 2) for stage in STAGES},
        "compute": round(result["compute"], 2),
        "total": round(seconds["total"], 2),
        "wall": round(result["wall"], 2),
        "cpu": round(result["cpu"], 2),
        "peak_rss_mib": round(result["peak_rss_mib"], 1),
        "registrations": result["counters"].get("registrations"),
        "choice": {v: d.get("choice") for v, d in result.get("details", {}).items() if d.get("choice")},
    }


def print_row(r: dict) -> None:
    hd95 = "-" if r["hd95"] is None else f"{r['hd95']:.1f}"
    stages = " ".join(f"{s[:5]}={r[s]:.1f}" for s in STAGES)
    print(
        f"| {r['engine']} | {r['structure']} | {r['k']} | {r['dice']:.3f} | {hd95} | {r['compute']:.1f} | "
        f"{r['wall']:.1f} | {r['cpu']:.1f} | {r['peak_rss_mib']:.0f} | {stages} | {r['registrations']} |",
        flush=True,
    )


def markdown_table(rows: list[dict]) -> str:
    """Per engine and k: Dice per structure, mean Dice, mean HD95, mean compute / wall / CPU
    seconds and the largest peak RSS (one structure per call)."""
    names = list(dict.fromkeys(r["structure"] for r in rows))
    header = ["engine", "k", *names, "mean Dice", "mean HD95 mm", "compute s", "wall s", "CPU s", "peak RSS MiB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for engine in dict.fromkeys(r["engine"] for r in rows):
        for k in sorted({r["k"] for r in rows if r["engine"] == engine}):
            chosen = {r["structure"]: r for r in rows if r["engine"] == engine and r["k"] == k}
            hd = [r["hd95"] for r in chosen.values() if r["hd95"] is not None]
            cells = [engine, str(k)] + [f"{chosen[n]['dice']:.3f}" if n in chosen else "-" for n in names]
            means = {key: float(np.mean([r[key] for r in chosen.values()]))
                     for key in ("dice", "compute", "wall", "cpu")}
            cells += [f"**{means['dice']:.3f}**", f"{np.mean(hd):.1f}" if hd else "-"]
            cells += [f"{means['compute']:.1f}", f"{means['wall']:.1f}", f"{means['cpu']:.1f}"]
            cells += [f"{max(r['peak_rss_mib'] for r in chosen.values()):.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="register,auto,interpolate")
    parser.add_argument("--structures", default=",".join(STRUCTURES), help="names from " + ",".join(STRUCTURES))
    parser.add_argument("--k", default="1,3,10")
    parser.add_argument("--multi", action="store_true", help="all structures drawn in one annotation, one call")
    parser.add_argument("--json", default=None, help="write the rows as JSON here")
    parser.add_argument("--cache", default=str(CACHE))
    parser.add_argument("--table", default=None, metavar="JSON", help="only print the table of an earlier --json")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())))
        return 0

    from SAMFewShotLib.cli.arguments import parse_ints
    from SAMFewShotLib.volume_io import read_labels

    cache = Path(args.cache)
    image, labels = clinical_grid(cache)
    reference = read_labels(labels)
    names = [n.strip() for n in args.structures.split(",") if n.strip()]
    unknown = [n for n in names if n not in STRUCTURES]
    if unknown:
        parser.error(f"unknown structure {unknown[0]!r}; known: {', '.join(STRUCTURES)}")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    ks = parse_ints(args.k, "--k values") if not args.multi or args.k != "1,3,10" else [3]
    print(f"load before: {os.getloadavg()}", flush=True)
    print("| engine | structure | k | Dice | HD95 mm | compute s | wall s | CPU s | peak RSS MiB | stages s "
          "| registrations |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    work = cache / "runs"
    work.mkdir(exist_ok=True)
    for k in ks:
        groups = [names] if args.multi else [[n] for n in names]
        for group in groups:
            values = [STRUCTURES[n] for n in group]
            drawn, _ = annotation_file(reference, values, k, cache)
            for engine in engines:
                tag = f"{engine.replace(':', '-')}_{'-'.join(map(str, values))}_k{k}"
                out, report = work / f"{tag}.nii", work / f"{tag}.json"
                result = run_propagate(image, drawn, engine, out, report)
                predicted = read_labels(out)
                per = []
                for name, value in zip(group, values):
                    from SAMFewShotLib.metrics import evaluate

                    scores = evaluate(predicted.array == value, reference.array == value, reference.volume.spacing_zyx)
                    per.append(row(engine, name, k, scores, result))
                    if not args.multi:
                        print_row(per[-1])
                if args.multi:
                    for r in per:
                        print(f"|  {r['structure']} | Dice {r['dice']:.3f} | HD95 {r['hd95']} |")
                    summary = dict(per[0], structure="all " + str(len(group)),
                                   dice=float(np.mean([r["dice"] for r in per])))
                    print_row(summary)
                rows += per
    print(f"load after: {os.getloadavg()}", flush=True)
    if not args.multi:
        print(markdown_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
