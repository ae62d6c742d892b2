"""``--sam-slices all`` against ``uncertain`` on the shared abdominal CT: Dice and encoder work.

For each structure, k evenly spaced reference slices are drawn (``bench.simulate_annotation``),
the ``register`` coarse mask is computed, and the ``sam`` engine refines either every covered
slice or only the uncertain ones. The SAM model is a tiny one with RANDOM weights
(Testing/tiny_sam.py): this measures the mechanics (slices encoded, encoder calls, seconds, how
much of the coarse mask is kept), NOT segmentation quality; SAM's Dice here says nothing about
what real weights would give (random SAM output mostly degrades the coarse mask, so the run that
keeps more of it scores higher). Quality needs real weights (samfewshot weights import ...).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_sam_slices.py [--structures liver,spleen] [--k 3]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from SAMFewShotLib.bench import simulate_annotation  # noqa: E402
from SAMFewShotLib.engines import make_engine  # noqa: E402
from SAMFewShotLib.metrics import dice  # noqa: E402
from SAMFewShotLib.sam.embedding_cache import EmbeddingCache  # noqa: E402
from SAMFewShotLib.volume_io import read_labels, read_volume  # noqa: E402
from Testing.tiny_sam import save_tiny_checkpoint  # noqa: E402

DATA = Path("/work/shared/data/abdomen_ct")
STRUCTURES = {"liver": 5, "spleen": 1, "kidney_left": 3, "stomach": 6}


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", default="liver,spleen", help=f"comma list of {', '.join(STRUCTURES)}")
    parser.add_argument("--k", type=int, default=3, help="drawn slices per structure")
    parser.add_argument("--modes", default="all,uncertain", help="--sam-slices values to run")
    parser.add_argument("--data", default=str(DATA))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    print("command:", " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(f"{load()}; tiny random-weight SAM: mechanics only, quality needs real weights")
    image = read_volume(str(Path(args.data) / "image.nii.gz"))
    reference = read_labels(str(Path(args.data) / "reference_labels.nii.gz"))
    print(f"{'structure':12} {'mode':10} {'Dice':>6} {'coarse Dice':>11} {'encoded':>8} {'calls':>6} "
          f"{'kept coarse':>11} {'wall s':>7} {'CPU s':>6}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = save_tiny_checkpoint(Path(folder) / "tiny.pth")
        for name in args.structures.split(","):
            value = STRUCTURES[name]
            truth = reference.array == value
            single = reference.with_array(truth.astype(np.uint8))
            annotation = simulate_annotation(single, args.k, axis=0)
            coarse = make_engine("register").propagate(image, annotation)
            coarse_dice = dice(coarse.labels.array == 1, truth)
            for mode in args.modes.split(","):
                cache = EmbeddingCache(directory=Path(folder) / f"embeddings-{name}-{mode}")  # nothing shared
                engine = make_engine("sam", checkpoint=str(checkpoint), cache=cache, sam_slices=mode)
                wall, cpu = time.perf_counter(), time.process_time()
                prediction = engine.propagate(image, annotation)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                c = prediction.counters
                print(f"{name:12} {mode:10} {dice(prediction.labels.array == 1, truth):6.3f} {coarse_dice:11.3f} "
                      f"{c['slices_encoded']:8d} {c['encoder_calls']:6d} {c['slices_kept_coarse']:11d} "
                      f"{wall:7.1f} {cpu:6.1f}", flush=True)
    print(load())


if __name__ == "__main__":
    main()
