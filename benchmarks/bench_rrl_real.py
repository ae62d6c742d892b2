"""RRL-MedSAM quality on real CT with known deformations (not collected by pytest).

The abdominal CT of ``../shared/data/abdomen_ct`` is the atlas (seven organs of its reference
labels). ``--cases`` copies of it are warped by known smooth random fields (largest displacement
``--max-mm``, control points every 60 mm) and given Gaussian noise (``--noise`` HU), so their
true labels are the reference warped by the same fields. RRL-MedSAM trains on the atlas and the
first ``cases - 1`` copies (unlabelled: their labels are never shown to training), the last copy
is held out. Reported: Dice per organ of

- ``identity``: the atlas labels as they are (no registration);
- ``segmentation``: the trained bundle's segmentation decoder (``apply_rrl(output="segmentation")``);
- ``registration``: the atlas labels warped by the predicted displacement (``output="registration"``),

as the mean over the training copies and on the held-out copy, plus training wall and CPU
seconds (per iteration too), the load and the loss schedule (the registration Dice term's
weight at the first and last iteration: with the default warm-up of 100 it is 0 up to
iteration 100, full from 200, so a 300-iteration run trains 100 iterations with it). Random
initial weights, no SAM teacher (stage 1 off): this measures the network as trained here, not
the paper's full pipeline. ``--joint`` and ``--no-augment`` switch off the paper's alternating
updates and augmentation (the A/B of those deviations). ``--refine N`` adds two rows: the
registration output refined by N test-time steps (:mod:`SAMFewShotLib.atlas.rrl.refinement`, not
in the paper) from the network's displacement (``registration_refined``) and from a zero one
(``zero_refined``: the same optimisation without what the network learnt), and the seconds of a
refined apply. ``--save-bundle`` keeps the trained bundle; ``--bundle`` scores one trained before
on the same data and options instead of training. Usage::

    .venv/bin/python benchmarks/bench_rrl_real.py [--size 128] [--iterations 300] [--max-mm 25]
                 [--cases 6] [--threads 2] [--dice-warmup 100] [--learning-rate 1e-3] [--joint]
                 [--no-augment] [--json OUT] [--save-bundle BUNDLE.zip]
                 [--bundle BUNDLE.zip] [--refine N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from SAMFewShotLib.atlas.bundle import load_bundle  # noqa: E402
from SAMFewShotLib.atlas.deformation import deform_case  # noqa: E402
from SAMFewShotLib.atlas.rrl import apply as rrl_apply  # noqa: E402
from SAMFewShotLib.atlas.rrl import training  # noqa: E402
from SAMFewShotLib.atlas.rrl.apply import apply_rrl  # noqa: E402
from SAMFewShotLib.atlas.rrl.training import TrainSettings, dice_ramp, train_rrl_bundle  # noqa: E402
from SAMFewShotLib.metrics import dice  # noqa: E402
from SAMFewShotLib.volume import LabelVolume  # noqa: E402
from SAMFewShotLib.volume_io import read_labels, read_volume  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "abdomen_ct"
ORGANS = {5: "liver", 1: "spleen", 3: "kidney_left", 2: "kidney_right", 52: "aorta", 21: "urinary_bladder",
          6: "stomach"}
METHODS = ("identity", "segmentation", "registration")


def scores(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {name: round(dice(labels == value, truth == value), 3) for value, name in ORGANS.items()}


def mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {name: round(float(np.mean([r[name] for r in rows])), 3) for name in ORGANS.values()}


@contextlib.contextmanager
def zero_displacement():
    """Within: every RRL network ``apply_rrl`` loads predicts a zero displacement (its flow head
    zeroed), so that the refined registration output is test-time optimisation from the identity,
    without what the network learnt."""
    original = rrl_apply.load_network

    def load_zeroed(path):
        model, values = original(path)
        torch.nn.init.zeros_(model.registration.flow.weight)
        torch.nn.init.zeros_(model.registration.flow.bias)
        return model, values

    rrl_apply.load_network = load_zeroed
    try:
        yield
    finally:
        rrl_apply.load_network = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA), help="folder with image.nii.gz and reference_labels.nii.gz")
    parser.add_argument("--size", type=int, default=128, help="cube edge (the paper's 128)")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--max-mm", type=float, default=25.0, help="largest displacement of the known fields, mm")
    parser.add_argument("--cases", type=int, default=6, help="deformed copies; the last one is held out")
    parser.add_argument("--noise", type=float, default=10.0, help="Gaussian noise added to the copies, HU")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dice-warmup", type=int, default=TrainSettings.dice_warmup)
    parser.add_argument("--learning-rate", type=float, default=TrainSettings.learning_rate)
    parser.add_argument("--joint", action="store_true", help="one joint step per iteration (not alternating)")
    parser.add_argument("--no-augment", action="store_true", help="no TorchIO augmentation")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--save-bundle", default=None, help="also copy the trained bundle here")
    parser.add_argument("--bundle", default=None, help="evaluate this bundle (trained on this data), no training")
    parser.add_argument("--refine", type=int, default=0, metavar="N",
                        help="also score the registration output refined by N test-time steps, from the network's "
                             "displacement and from a zero one")
    args = parser.parse_args()
    if args.cases < 2:
        parser.error(f"--cases must be >= 2 (training copies + one held out), not {args.cases}")
    folder = Path(args.data)
    if not (folder / "image.nii.gz").is_file():
        sys.exit(f"no data: {folder / 'image.nii.gz'} does not exist (see ../shared/data/README)")
    torch.set_num_threads(args.threads)
    load_at_start = round(os.getloadavg()[0], 2)
    print("command:", " ".join([sys.executable, *sys.argv]))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")

    image = read_volume(folder / "image.nii.gz")
    reference = read_labels(folder / "reference_labels.nii.gz")
    kept = np.where(np.isin(reference.array, list(ORGANS)), reference.array, 0).astype(np.uint8)
    atlas_labels = LabelVolume(reference.volume.with_array(kept))
    rng = np.random.default_rng(0)
    cases = []
    for seed in range(1, args.cases + 1):
        target, truth = deform_case(image, atlas_labels, args.max_mm, control_spacing_mm=60.0, seed=seed)
        noisy = (target.array + rng.normal(0.0, args.noise, target.shape)).astype(np.float32)
        cases.append((target.with_array(noisy), truth))

    settings = TrainSettings(
        checkpoint_every=10**6, dice_warmup=args.dice_warmup, alternate=not args.joint, augment=not args.no_augment,
        learning_rate=args.learning_rate,
    )
    ramp = [dice_ramp(i, settings.dice_warmup) for i in range(args.iterations)]
    schedule = {
        "dice_warmup": settings.dice_warmup, "iterations_with_dice_term": sum(r > 0 for r in ramp),
        "iterations_at_full_dice_weight": sum(r >= 1 for r in ramp), "alternate": settings.alternate,
        "augment": settings.augment, "learning_rate": settings.learning_rate,
    }
    print("schedule:", schedule)
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        cpu_start = time.process_time()

        sums: dict[str, float] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if done % 50 == 0:
                means = " ".join(f"{k} {v / 50:.3f}" for k, v in sums.items())
                print(f"{stage} {done}/{total} {time.perf_counter() - start:.0f} s {means}", flush=True)
                sums.clear()

        step = training.Trainer.step

        def logged_step(trainer):  # the losses' means over each 50 iterations join the progress lines
            losses = step(trainer)
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value
            return losses

        training.Trainer.step = logged_step  # type: ignore[method-assign]

        if args.bundle:  # evaluate a bundle trained before (same data and options), no training
            path = Path(args.bundle)
        else:
            path = train_rrl_bundle(
                image, atlas_labels, [c[0] for c in cases[:-1]], Path(work) / "rrl.zip", size=args.size,
                iterations=args.iterations, work_dir=Path(work) / "work", device="cpu",
                settings=settings, progress=progress,
            )
        training_seconds = time.perf_counter() - start
        training_cpu = time.process_time() - cpu_start
        if args.save_bundle:
            shutil.copyfile(path, args.save_bundle)
        bundle = load_bundle(path)
        methods = METHODS + (("registration_refined", "zero_refined") if args.refine else ())
        results: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
        refine_seconds = []
        for target, truth in cases:
            results["identity"].append(scores(atlas_labels.array, truth.array))
            for output in ("segmentation", "registration"):
                labels = apply_rrl(bundle, target, device="cpu", output=output)
                results[output].append(scores(labels.array, truth.array))
            if args.refine:
                started = time.perf_counter()
                labels = apply_rrl(bundle, target, device="cpu", output="registration", refine_iterations=args.refine)
                refine_seconds.append(time.perf_counter() - started)
                results["registration_refined"].append(scores(labels.array, truth.array))
                with zero_displacement():
                    labels = apply_rrl(
                        bundle, target, device="cpu", output="registration", refine_iterations=args.refine
                    )
                results["zero_refined"].append(scores(labels.array, truth.array))

    summary = {
        "command": " ".join(sys.argv),
        "load_at_start": load_at_start, "load_at_end": round(os.getloadavg()[0], 2),
        "schedule": schedule,
        "training_seconds": round(training_seconds, 1),
        "training_cpu_seconds": round(training_cpu, 1),
        "seconds_per_iteration": bundle.parameters.get("seconds_per_iteration"),
        "refine_iterations": args.refine,
        "seconds_per_refined_apply": round(float(np.mean(refine_seconds)), 1) if refine_seconds else None,
        "training_copies": {m: mean(results[m][:-1]) for m in methods},
        "held_out": {m: results[m][-1] for m in methods},
    }
    print(
        f"\ntraining {summary['training_seconds']} s wall, {summary['training_cpu_seconds']} CPU-s, "
        f"{summary['seconds_per_iteration']} s per iteration; load now {os.getloadavg()[0]:.2f}"
    )
    header = ["method", "set", *ORGANS.values(), "mean"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for where in ("training_copies", "held_out"):
        for method in methods:
            row = summary[where][method]
            cells = [method, where.replace("_", " "), *(f"{row[n]:.3f}" for n in ORGANS.values()),
                     f"**{np.mean(list(row.values())):.3f}**"]
            print("| " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
