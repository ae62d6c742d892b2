"""SFR study models on real CT with known deformations (not collected by pytest).

A small study is built from ``../shared/data/abdomen_ct``: the CT cropped to 96^3 voxels (3 mm)
around seven organs, and 7 copies warped by known smooth random deformations (largest
displacement ``--max-mm``, control points every 60 mm) plus Gaussian noise: copy 0 is the
labelled volume, copies 1-5 the unlabelled study, copy 6 is held out. Compared on the held-out
copy (Dice and HD95 in mm, mean over the organs) and on the 5 study copies (Dice):

- no registration: the labelled volume's labels as they are;
- elastix atlas: the labelled volume registered onto each copy (affine + B-spline);
- supervised-only: the 3D network trained on the labelled volume alone;
- Mean Teacher: + consistency on the unlabelled copies, no pseudo-labels;
- SFR (atlas): + the elastix atlas pseudo-labels of the 5 copies;
- SFR+ (atlas): + only the most confident ``--select`` fraction, unconfident voxels ignored.

Training time counts the pseudo-labels (elastix) for SFR and SFR+ (made once, shared); apply
time is one held-out volume (network: resample + sliding window; atlas: one registration).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_sfr.py [--iterations 200] [--spacing 6] [--patch 32] [--json OUT]

``--sam-cost N`` instead measures the cost of the SAM pseudo-label source: a randomly initialised
full-size ViT-B SAM (cost only, random weights say nothing about quality) encodes the labelled
volume's mosaics, then its few-shot decoder is fine-tuned on them for N steps.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from SAMFewShotLib.atlas.apply import apply_bundle
from SAMFewShotLib.atlas.bundle import load_bundle
from SAMFewShotLib.atlas.deformation import deform_case
from SAMFewShotLib.metrics import dice, hausdorff95
from SAMFewShotLib.sfr.network import NetworkConfig
from SAMFewShotLib.sfr.pipeline import train_study_model
from SAMFewShotLib.sfr.pseudo_labels import AtlasSource, PseudoLabel
from SAMFewShotLib.sfr.retraining import RetrainSettings
from SAMFewShotLib.volume import LabelVolume, Volume
from SAMFewShotLib.volume_io import read_labels, read_volume

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "abdomen_ct"
ORGANS = {5: "liver", 1: "spleen", 3: "kidney_left", 2: "kidney_right", 52: "aorta", 21: "urinary_bladder",
          6: "stomach"}
EDGE = 96
#: elastix settings of the atlas source and baseline: the project's defaults (all cores; an explicit
#: ``threads: 2`` made itk.elastix_registration_method segfault on this machine, 2026-12-03)
REGISTRATION: dict = {}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def crop(volume: Volume, box: tuple[slice, slice, slice]) -> Volume:
    """``volume`` cropped to ``box`` (z, y, x slices), origin moved to the box's first voxel."""
    array = volume.array[box]
    first = np.array([box[2].start, box[1].start, box[0].start], dtype=float)
    origin = np.asarray(volume.origin) + volume.direction_matrix @ (first * np.asarray(volume.spacing))
    return Volume(np.ascontiguousarray(array), volume.spacing, tuple(origin), volume.direction)


def build_study(folder: Path, max_mm: float, noise: float, copies: int = 7):
    image = read_volume(folder / "image.nii.gz")
    reference = read_labels(folder / "reference_labels.nii.gz")
    kept = np.where(np.isin(reference.array, list(ORGANS)), reference.array, 0).astype(np.uint8)
    centre = np.round(np.mean(np.nonzero(kept), axis=1)).astype(int)
    box = tuple(slice(int(np.clip(c - EDGE // 2, 0, n - EDGE)), int(np.clip(c - EDGE // 2, 0, n - EDGE)) + EDGE)
                for c, n in zip(centre, image.shape))
    box = tuple(slice(s.start, min(s.stop, n)) for s, n in zip(box, image.shape))
    image, labels = crop(image, box), LabelVolume(crop(reference.volume.with_array(kept), box))
    rng = np.random.default_rng(0)
    cases = []
    for seed in range(1, copies + 1):
        target, truth = deform_case(image, labels, max_mm, control_spacing_mm=60.0, seed=seed)
        noisy = (target.array + rng.normal(0.0, noise, target.shape)).astype(np.float32)
        cases.append((target.with_array(noisy), truth))
    return cases


def scores(labels: np.ndarray, truth: LabelVolume) -> dict:
    dices = [dice(labels == v, truth.array == v) for v in ORGANS]
    hd = [hausdorff95(labels == v, truth.array == v, truth.volume.spacing_zyx) for v in ORGANS]
    hd = [h for h in hd if np.isfinite(h)]
    return {"dice": float(np.mean(dices)), "hd95": float(np.mean(hd)) if hd else float("nan"),
            "per_organ": {ORGANS[v]: round(d, 3) for v, d in zip(ORGANS, dices)}}


class CachedAtlasSource:
    """The atlas source, each pseudo-label made once and shared by SFR and SFR+; with ``path``
    the pseudo-labels are also kept in an ``.npz`` file across runs (``--cache``: repeated
    experiments skip elastix; their training times then exclude the pseudo-labels' cost, which
    the file records)."""

    name = "atlas"

    def __init__(self, path: str | None = None) -> None:
        self.source, self.cache, self.seconds = AtlasSource(REGISTRATION), {}, 0.0
        self.path = Path(path) if path else None
        self.stored: dict = dict(np.load(self.path)) if self.path is not None and self.path.is_file() else {}

    def __call__(self, labelled_image, labelled_labels, image, **kwargs):
        key = hashlib.sha256(np.ascontiguousarray(image.array).tobytes()).hexdigest()[:16]
        if key not in self.cache and f"{key}_labels" in self.stored:
            self.cache[key] = PseudoLabel(
                LabelVolume(image.with_array(self.stored[f"{key}_labels"]), labelled_labels.segments),
                self.stored[f"{key}_confidence"], float(self.stored[f"{key}_volume_confidence"]), self.name,
                float(self.stored[f"{key}_seconds"]))
        if key not in self.cache:
            start = time.perf_counter()
            self.cache[key] = self.source(labelled_image, labelled_labels, image, **kwargs)
            self.seconds += time.perf_counter() - start
            if self.path is not None:
                pseudo = self.cache[key]
                self.stored.update({f"{key}_labels": pseudo.labels.array, f"{key}_confidence": pseudo.confidence,
                                    f"{key}_volume_confidence": pseudo.volume_confidence,
                                    f"{key}_seconds": pseudo.seconds})
                np.savez_compressed(self.path, **self.stored)
        return self.cache[key]


def sam_cost(labelled: Volume, labels: LabelVolume, iterations: int) -> None:
    """Print encoding and decoder fine-tuning seconds (wall, CPU) of the SAM source with a random ViT-B."""
    from segment_anything import sam_model_registry

    from SAMFewShotLib.sam.preprocess import Preprocessing
    from SAMFewShotLib.sfr.mosaic_finetuning import SamSource, encode_mosaics
    from SAMFewShotLib.sfr.stitching import default_grid, plan_mosaics

    torch.manual_seed(0)
    sam = sam_model_registry["vit_b"](checkpoint=None).eval()
    layouts = plan_mosaics(labelled, 0, default_grid(labelled, 0))
    wall, cpu = time.perf_counter(), cpu_seconds()
    encode_mosaics(sam, labelled, layouts, Preprocessing.for_volume(labelled))
    print(f"encode {len(layouts)} mosaics ({layouts[0].grid}x{layouts[0].grid} slices): "
          f"{time.perf_counter() - wall:.1f} s wall, {cpu_seconds() - cpu:.1f} s CPU", flush=True)
    source = SamSource(sam, iterations=iterations, device="cpu")
    wall, cpu = time.perf_counter(), cpu_seconds()
    source.fit(labelled, labels)  # encodes again, then trains
    total_wall, total_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    print(f"encode + fine-tune {iterations} steps: {total_wall:.1f} s wall, {total_cpu:.1f} s CPU; "
          f"training alone {source.training.seconds:.1f} s wall ({source.training.seconds / iterations:.2f} s/step), "
          f"load {os.getloadavg()[0]:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--spacing", type=float, default=6.0, help="working spacing of the network, mm")
    parser.add_argument("--select", type=float, default=0.6, help="SFR+ kept fraction")
    parser.add_argument("--max-mm", type=float, default=25.0)
    parser.add_argument("--noise", type=float, default=10.0, help="Gaussian noise, HU")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="network initialisation and patch draws (RetrainSettings)")
    parser.add_argument("--balanced", action="store_true", help="class-balanced patch sampling (MONAI)")
    parser.add_argument("--elastic", action="store_true", help="random elastic deformation of the patches (MONAI)")
    parser.add_argument("--lr-schedule", default="constant", choices=("constant", "poly"))
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    parser.add_argument("--soft", action="store_true", help="pseudo-label voxels weighted by their confidence")
    parser.add_argument("--selection", default="agreement", choices=("agreement", "confidence"),
                        help="how SFR+ ranks the pseudo-labels")
    parser.add_argument("--agreement-at", type=float, default=0.5)
    parser.add_argument("--channels", default="8,16,32,64", help="U-Net widths")
    parser.add_argument("--out", default=None, help="keep the trained bundles in this folder")
    parser.add_argument("--methods", default="none,atlas,supervised,mean_teacher,sfr,sfr_plus")
    parser.add_argument("--json", default=None)
    parser.add_argument("--cache", default=None, metavar="NPZ",
                        help="keep the elastix pseudo-labels (and the held-out atlas) in this file across runs")
    parser.add_argument("--sam-cost", type=int, default=0, metavar="STEPS",
                        help="only measure the SAM source's cost (random ViT-B) with this many decoder steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    print("command:", " ".join([sys.executable, *sys.argv]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load at start {os.getloadavg()}", flush=True)
    cases = build_study(Path(args.data), args.max_mm, args.noise)
    (image, labels), study, (held_out, held_truth) = cases[0], cases[1:6], cases[6]
    unlabelled = [c[0] for c in study]
    if args.sam_cost:
        sam_cost(image, labels, args.sam_cost)
        return
    print(f"study: {len(cases)} copies of {image.shape} at {image.spacing} mm", flush=True)
    rows: dict[str, dict] = {}
    source = CachedAtlasSource(args.cache)

    def row(name, held, study_dices, train_s, train_cpu, apply_s, apply_cpu):
        rows[name] = {"held_out": held, "study_dice": float(np.mean(study_dices)) if study_dices else None,
                      "train_s": train_s, "train_cpu_s": train_cpu, "apply_s": apply_s, "apply_cpu_s": apply_cpu}
        print(name, json.dumps(rows[name]), f"load {os.getloadavg()[0]:.2f}", flush=True)

    if "none" in methods:
        row("no registration", scores(labels.array, held_truth), [scores(labels.array, t)["dice"] for _, t in study],
            0.0, 0.0, 0.0, 0.0)
    if "atlas" in methods or "sfr" in methods or "sfr_plus" in methods:
        wall, cpu = time.perf_counter(), cpu_seconds()
        pseudo = [source(image, labels, u) for u in unlabelled]
        pseudo_wall, pseudo_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        wall, cpu = time.perf_counter(), cpu_seconds()
        held_atlas = source(image, labels, held_out)
        atlas_apply, atlas_apply_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        if args.cache:  # possibly read back: the recorded wall seconds, CPU unknown
            pseudo_wall, pseudo_cpu = sum(p.seconds for p in pseudo), float("nan")
            atlas_apply, atlas_apply_cpu = held_atlas.seconds, float("nan")
        row("elastix atlas", scores(held_atlas.labels.array, held_truth),
            [scores(p.labels.array, t)["dice"] for p, (_, t) in zip(pseudo, study)], 0.0, 0.0,
            atlas_apply, atlas_apply_cpu)
        rows["elastix atlas"]["pseudo_label_s"] = pseudo_wall
        rows["elastix atlas"]["pseudo_label_cpu_s"] = pseudo_cpu
        rows["elastix atlas"]["volume_confidences"] = [p.volume_confidence for p in pseudo]
    else:
        pseudo_wall = pseudo_cpu = 0.0
    runs = {"supervised": (None, None, "supervised"), "mean_teacher": (None, None, "mean_teacher"),
            "sfr": (source, None, "mean_teacher"), "sfr_plus": (source, args.select, "mean_teacher")}
    names = {"supervised": "supervised-only", "mean_teacher": "Mean Teacher", "sfr": "SFR (atlas pseudo-labels)",
             "sfr_plus": f"SFR+ (atlas, keep {args.select:g})"}
    with tempfile.TemporaryDirectory() as temporary:
        work = args.out or temporary
        for key in ("sfr", "sfr_plus", "supervised", "mean_teacher"):
            if key not in methods:
                continue
            pseudo_source, select, method = runs[key]
            wall, cpu = time.perf_counter(), cpu_seconds()
            start = time.perf_counter()

            def progress(stage, done, total, key=key, start=start):
                if stage.startswith("sfr: re-training") and done % 25 == 0:
                    print(f"  {key} {stage} {done}/{total} {time.perf_counter() - start:.0f} s", flush=True)

            report = train_study_model(
                image, labels, unlabelled, Path(work) / f"{key}.zip", pseudo=pseudo_source, select=select,
                selection=args.selection, soft_weights=args.soft and pseudo_source is not None,
                spacing_mm=(args.spacing,) * 3, settings=RetrainSettings(iterations=args.iterations, patch=args.patch,
                method=method, consistency_rampup=args.iterations // 2, checkpoint_every=10**6,
                balanced_sampling=args.balanced, elastic=args.elastic, lr_schedule=args.lr_schedule,
                learning_rate=args.lr, agreement_at=args.agreement_at, seed=args.seed),
                config=NetworkConfig(channels=tuple(int(c) for c in args.channels.split(","))), device="cpu",
                progress=progress,
            )
            train_s, train_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            if pseudo_source is not None:  # the shared pseudo-labels count for each method using them
                train_s, train_cpu = train_s + pseudo_wall, train_cpu + pseudo_cpu
            with load_bundle(report.bundle) as bundle:
                wall, cpu = time.perf_counter(), cpu_seconds()
                held = apply_bundle(bundle, held_out, device="cpu").labels.array
                apply_s, apply_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
                study_dices = [scores(apply_bundle(bundle, u, device="cpu").labels.array, t)["dice"] for u, t in study]
            row(names[key], scores(held, held_truth), study_dices, train_s, train_cpu, apply_s, apply_cpu)
            rows[names[key]]["kept"] = report.kept
            rows[names[key]]["agreement"] = report.agreement
    print(f"\nload at end {os.getloadavg()}")
    print("| method | held-out Dice | held-out HD95 (mm) | study Dice (5 copies) | training s (CPU s) "
          "| apply s (CPU s) |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        study_dice = "-" if r["study_dice"] is None else f"{r['study_dice']:.3f}"
        print(f"| {name} | {r['held_out']['dice']:.3f} | {r['held_out']['hd95']:.1f} | {study_dice} | "
              f"{r['train_s']:.0f} ({r['train_cpu_s']:.0f}) | {r['apply_s']:.2f} ({r['apply_cpu_s']:.2f}) |")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
