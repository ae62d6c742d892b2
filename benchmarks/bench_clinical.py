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

The SAM path end to end (issue 19: MobileSAM, a 150-slice structure on a 512 x 512 CT): a thin-slice
grid where the liver spans 150 axial slices, a random full-size MobileSAM checkpoint written once
(cost does not depend on the weights' values; never read Dice from it), each run with an empty
embedding cache (the one-off ONNX export is made by a first, untimed run and reported):

    PYTHONPATH=$PWD python benchmarks/bench_clinical.py --structures liver --k 3 --engines sam \
        --grid 512,512,390 --spacing 0.715,0.715,0.86 --checkpoint random:vit_t \
        --propagate-args "--sam-slices all"

"compute" = the report's total minus read and write (the issue's definition).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
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


def clinical_grid(
    cache: Path = CACHE, size: tuple[int, ...] = CLINICAL_SIZE, spacing: tuple[float, ...] = CLINICAL_SPACING
) -> tuple[Path, Path]:
    """(image, labels) resampled to ``size`` voxels (x, y, z) of ``spacing`` mm (x, y, z) about the
    shared CT's centre, as uncompressed NIfTI in ``cache`` (built once per grid)."""
    import SimpleITK as sitk

    cache.mkdir(parents=True, exist_ok=True)
    tag = "" if (tuple(size), tuple(spacing)) == (CLINICAL_SIZE, CLINICAL_SPACING) else (
        "_" + "x".join(map(str, size)) + "_" + "x".join(f"{v:g}" for v in spacing))
    image_path, labels_path = cache / f"clinical_image{tag}.nii", cache / f"clinical_labels{tag}.nii"
    if image_path.exists() and labels_path.exists():
        return image_path, labels_path
    image = sitk.ReadImage(str(DATA / "image.nii.gz"))
    labels = sitk.ReadImage(str(DATA / "reference_labels.nii.gz"))
    # Same physical extent centre: keep the origin and direction, set the clinical size/spacing.
    old_extent = np.array(image.GetSize()) * np.array(image.GetSpacing())
    new_extent = np.array(size) * np.array(spacing)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    origin = np.array(image.GetOrigin()) + direction @ ((old_extent - new_extent) / 2.0)
    origin += direction @ ((np.array(spacing) - np.array(image.GetSpacing())) / 2.0)

    def resample(volume, interpolator, pixel):
        f = sitk.ResampleImageFilter()
        f.SetSize([int(s) for s in size])
        f.SetOutputSpacing(tuple(float(v) for v in spacing))
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


def annotation_file(reference, values: list[int], k: int, cache: Path = CACHE, tag: str = "") -> tuple[Path, dict]:
    """The simulated k-slice annotation of ``values`` (written once per grid ``tag``), and its drawn slices."""
    from SAMFewShotLib.bench import annotation_slices, simulate_annotation
    from SAMFewShotLib.volume_io import write_labels

    path = cache / f"drawn_{'-'.join(map(str, values))}_k{k}{tag}.nii"
    keep = np.isin(reference.array, values)
    subset = reference.with_array(np.where(keep, reference.array, 0).astype(reference.array.dtype))
    if not path.exists():
        write_labels(simulate_annotation(subset, k).labels, path)
    return path, annotation_slices(subset, k)


def random_checkpoint(model_type: str, cache: Path) -> Path:
    """A full-size checkpoint of ``model_type`` (vit_b, vit_t, efficientvit_l0, ...) with random
    weights (seed 0), written once into ``cache``: cost does not depend on the weights' values."""
    path = cache / f"random_{model_type}.pth"
    if not path.exists():
        import torch

        from SAMFewShotLib.sam.architecture import official_architecture
        from SAMFewShotLib.sam.model_building import build_sam

        torch.manual_seed(0)
        torch.save(build_sam(official_architecture(model_type)).state_dict(), path.with_suffix(".tmp"))
        os.replace(path.with_suffix(".tmp"), path)
    return path


def empty_embedding_cache(home: Path) -> None:
    """Delete the cached SAM embeddings under ``home`` (keeps the ONNX exports in ``weights`` and
    this machine's encoder measurements ``embeddings/encoder_seconds.json``)."""
    import shutil

    folder = home / "embeddings"
    for entry in folder.iterdir() if folder.exists() else []:
        if entry.name != "encoder_seconds.json":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def run_propagate(
    image: Path, drawn: Path, engine: str, out: Path, report: Path, extra: list[str] = (), home: Path | None = None
) -> dict:
    """``samfewshot propagate`` (plus ``extra`` arguments, with ``$SAMFEWSHOT_HOME`` = ``home`` when
    given) in a child; its report plus wall, CPU seconds and peak RSS."""
    command = [sys.executable, "-m", "SAMFewShotLib", "propagate", str(image), str(drawn), "-o", str(out),
               "--engine", engine, "--report", str(report), "--progress", "none", *extra]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if home is not None:
        env["SAMFEWSHOT_HOME"] = str(home)
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
        "stages": {stage: round(value, 2) for stage, value in seconds.items() if stage != "total"},
        "slices_encoded": result["counters"].get("budget_slices_to_encode"),
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
    stages = " ".join(f"{s[:7]}={v:.1f}" for s, v in r["stages"].items())
    if r.get("slices_encoded") is not None:
        stages += f" encoded={r['slices_encoded']}"
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
    parser.add_argument("--grid", default=",".join(map(str, CLINICAL_SIZE)), help="voxels x,y,z")
    parser.add_argument("--spacing", default=",".join(map(str, CLINICAL_SPACING)), help="mm x,y,z")
    parser.add_argument("--checkpoint", default=None, metavar="PATH|random:TYPE",
                        help="SAM engines: a checkpoint, or random:vit_t (etc.), a full-size random one written once")
    parser.add_argument("--propagate-args", default="", metavar="ARGS", help="more propagate arguments, one string")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())))
        return 0

    from SAMFewShotLib.cli.arguments import parse_ints
    from SAMFewShotLib.volume_io import read_labels

    cache = Path(args.cache)
    size = tuple(int(v) for v in args.grid.split(","))
    spacing = tuple(float(v) for v in args.spacing.split(","))
    image, labels = clinical_grid(cache, size, spacing)
    tag = image.stem.removeprefix("clinical_image")
    extra = shlex.split(args.propagate_args)
    home = None
    if args.checkpoint:
        checkpoint = args.checkpoint
        if checkpoint.startswith("random:"):
            checkpoint = str(random_checkpoint(checkpoint.split(":", 1)[1], cache))
            extra += ["--model-type", args.checkpoint.split(":", 1)[1]]
        extra += ["--checkpoint", checkpoint]
        home = cache / "home"  # ONNX exports and embeddings of these runs, kept apart from the user's
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
            drawn, drawn_slices = annotation_file(reference, values, k, cache, tag)
            extent = [int(np.flatnonzero((reference.array == v).any(axis=(1, 2))).size) for v in values]
            print(f"structures {group}: {extent} axial slices on {size} voxels of {spacing} mm", flush=True)
            for engine in engines:
                name = f"{engine.replace(':', '-')}_{'-'.join(map(str, values))}_k{k}{tag}"
                out, report = work / f"{name}.nii", work / f"{name}.json"
                if home is not None:
                    if not (home / "weights" / "onnx").exists():  # the one-off export, untimed
                        first = run_propagate(image, drawn, engine, out, report, extra, home)
                        print(f"first run (ONNX export, encoder measurement): wall {first['wall']:.1f} s, "
                              f"CPU {first['cpu']:.1f} s", flush=True)
                    empty_embedding_cache(home)
                result = run_propagate(image, drawn, engine, out, report, extra, home)
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
