"""Where one RRL-MedSAM training iteration spends its CPU time (not collected by pytest).

Builds the training data of ``bench_rrl_real.py`` (the abdominal CT of ``../shared/data/abdomen_ct``
as the atlas with seven organs, ``--cases`` copies warped by known fields as unlabelled images)
and runs ``Trainer.step`` (the default alternating, augmented iteration) ``--steps`` times after
one warm-up step, reporting CPU seconds per iteration in all and per part: TorchIO augmentation,
the medical step's forward and losses, the general branch's logits (its encoder + decoder,
twice: the medical step's prompt without gradients, the general step with), all backward
passes, the two mutual EMAs, and the encoders' forward passes (all four, already counted inside
the medical and general rows). CPU seconds (``time.process_time``), so that the figures say what
the work costs on a shared machine too (the wall time is printed as well). Usage::

    .venv/bin/python benchmarks/bench_rrl_step.py [--size 128] [--steps 3] [--threads 1] [--cases 2]
                 [--bundle TRAINED.zip] [--denormals flush|keep|both]

``--bundle`` starts from a trained network (late in a run the backward pass makes denormal
numbers, which are slow on x86 CPUs); ``--denormals both`` times the step with them kept and
flushed to zero (training flushes them, :func:`SAMFewShotLib.atlas.rrl.training.flushed_denormals`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from SAMFewShotLib.atlas.deformation import deform_case  # noqa: E402
from SAMFewShotLib.atlas.normalisation import default_normalisation  # noqa: E402
from SAMFewShotLib.atlas.rrl import training  # noqa: E402
from SAMFewShotLib.atlas.rrl.data import prepare_training_data  # noqa: E402
from SAMFewShotLib.atlas.rrl.model import RRLConfig  # noqa: E402
from SAMFewShotLib.volume import LabelVolume  # noqa: E402
from SAMFewShotLib.volume_io import read_labels, read_volume  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "abdomen_ct"
ORGANS = (5, 1, 3, 2, 52, 21, 6)  # bench_rrl_real.py's seven organs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cases", type=int, default=2, help="unlabelled deformed copies")
    parser.add_argument("--bundle", default=None,
                        help="start from this trained rrl_medsam bundle's weights (same --size and organs)")
    parser.add_argument("--denormals", default="flush", choices=("flush", "keep", "both"),
                        help="flush denormal numbers to zero as training does (default), keep them, or time both")
    args = parser.parse_args()
    folder = Path(args.data)
    if not (folder / "image.nii.gz").is_file():
        sys.exit(f"no data: {folder / 'image.nii.gz'} does not exist")
    torch.set_num_threads(args.threads)
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    print("command:", " ".join([sys.executable, *sys.argv]))
    image = read_volume(folder / "image.nii.gz")
    reference = read_labels(folder / "reference_labels.nii.gz")
    labels = LabelVolume(reference.volume.with_array(np.where(np.isin(reference.array, ORGANS), reference.array, 0)
                                                    .astype(np.uint8)))
    cases = [deform_case(image, labels, 25.0, control_spacing_mm=60.0, seed=s)[0] for s in range(1, args.cases + 1)]
    data = prepare_training_data(image, labels, cases, args.size, default_normalisation("CT"))
    config = RRLConfig(size=args.size, n_classes=len(data.label_values) + 1)
    trainer = training.Trainer(data, config, training.TrainSettings(), torch.device("cpu"))
    if args.bundle:  # late-training weights (the Dice term at full weight from iteration 200)
        from SAMFewShotLib.atlas.bundle import load_bundle
        from SAMFewShotLib.atlas.rrl.network_file import NETWORK_MEMBER, load_network

        trained, _ = load_network(load_bundle(args.bundle).weights_path(NETWORK_MEMBER))
        trainer.model.load_state_dict(trained.state_dict())
        trainer.iteration = 500
    trainer.model.train()

    seconds: dict[str, float] = defaultdict(float)

    def timed(name, function):
        def wrapper(*a, **k):
            start = time.process_time()
            try:
                return function(*a, **k)
            finally:
                seconds[name] += time.process_time() - start
        return wrapper

    # instrument by wrapping (module globals the step looks up, the model's methods, backward)
    training.augment_pair = timed("augmentation (TorchIO)", training.augment_pair)  # type: ignore[assignment]
    training.mutual_ema_ = timed("mutual EMA (x2)", training.mutual_ema_)  # type: ignore[assignment]
    training.medical_losses = timed("medical forward + losses", training.medical_losses)  # type: ignore[assignment]
    model = trainer.model
    model.pyramid = timed("(encoders, inside the above)", model.pyramid)  # type: ignore[method-assign]
    model.general_logits = timed("general logits (x2)", model.general_logits)  # type: ignore[method-assign]
    backward = torch.Tensor.backward
    torch.Tensor.backward = timed("backward (x2)", backward)  # type: ignore[method-assign]
    modes = {"flush": (True,), "keep": (False,), "both": (False, True)}[args.denormals]
    try:
        for flush in modes:
            torch.set_flush_denormal(flush)
            trainer.step()  # warm-up
            seconds.clear()
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(args.steps):
                trainer.step()
            cpu, wall = (time.process_time() - cpu) / args.steps, (time.perf_counter() - wall) / args.steps
            print(f"size {args.size}, {torch.get_num_threads()} thread(s), {len(data.label_values) + 1} classes, "
                  f"{'random' if not args.bundle else 'trained'} weights, denormals "
                  f"{'flushed' if flush else 'kept'}: {cpu:.2f} CPU-s per iteration ({wall:.2f} s wall), "
                  f"load {os.getloadavg()[0]:.1f}")
            for name, value in seconds.items():  # the encoders' passes are inside the medical and general rows
                print(f"  {name:28s} {value / args.steps:.2f}")
    finally:
        torch.Tensor.backward = backward  # type: ignore[method-assign]
        torch.set_flush_denormal(False)


if __name__ == "__main__":
    main()
