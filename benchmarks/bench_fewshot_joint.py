"""Joint vs per-label decoder pass (Xie et al.) on two touching structures of the same intensity.

Phantom: 12 x 48 x 48 voxels (0.9 x 0.7 x 2 mm), two ellipsoids side by side that touch, both
~120 on a ~40 background (an intensity threshold cannot split them), each drawn on slices
2, 4, 6, 8, 10 as labels 1 and 2. A tiny random SAM (Testing/tiny_sam.py, as in the few-shot
tests; its random weights say nothing about a pretrained SAM) is trained with each pass
(learning rate 3e-3, ``--iterations``, one torch thread) and scored by the Dice of each label
on the 7 unannotated slices. A plain script, not a test:

    .venv/bin/python benchmarks/bench_fewshot_joint.py [--iterations 60] [--seed 3] [--passes joint,per-label]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: SAMFewShotLib, Testing

from SAMFewShotLib.annotation import SparseAnnotation  # noqa: E402
from SAMFewShotLib.fewshot import run_head, train_head  # noqa: E402
from SAMFewShotLib.fewshot.training import TrainingConfig  # noqa: E402
from SAMFewShotLib.sam.embedding_cache import EmbeddingCache  # noqa: E402
from SAMFewShotLib.sam.encoder import torch_threads  # noqa: E402
from SAMFewShotLib.volume import LabelVolume, Segment, Volume  # noqa: E402
from Testing import phantoms, tiny_sam  # noqa: E402

SHAPE = (12, 48, 48)
DRAWN = (2, 4, 6, 8, 10)


def touching_case(seed: int):
    """(image, annotation, {label value: truth mask}) of the two touching structures."""
    left = phantoms.ellipsoid((5.5, 24, 15), (6.5, 11, 10), SHAPE)
    right = phantoms.ellipsoid((5.5, 24, 34), (6.5, 11, 10), SHAPE) & ~left
    image = Volume(phantoms.render(left | right, seed=seed), spacing=(0.9, 0.7, 2.0))
    labels = np.zeros(SHAPE, np.uint8)
    for z in DRAWN:
        labels[z][left[z]] = 1
        labels[z][right[z]] = 2
    segments = (Segment(1, "left"), Segment(2, "right"))
    annotation = SparseAnnotation.from_labels(LabelVolume(image.with_array(labels), segments), axis=0)
    return image, annotation, {1: left, 2: right}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--seed", type=int, default=3, help="phantom texture and noise seed")
    parser.add_argument("--passes", default="joint,per-label")
    args = parser.parse_args(argv)
    print("load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    image, annotation, truth = touching_case(args.seed)
    rest = [z for z in range(SHAPE[0]) if z not in DRAWN]
    with tempfile.TemporaryDirectory() as folder, torch_threads(1):
        checkpoint = tiny_sam.save_tiny_checkpoint(Path(folder) / "tiny.pth", global_attn_indexes=())
        cache = EmbeddingCache(directory=Path(folder) / "embeddings")
        for name in args.passes.split(","):
            start, cpu = time.perf_counter(), time.process_time()
            config = TrainingConfig(iterations=args.iterations, learning_rate=3e-3, joint=name == "joint")
            fit = train_head(image, annotation, checkpoint=str(checkpoint), device="cpu", cache=cache, config=config)
            labels = run_head(fit.head, image, checkpoint=str(checkpoint), device="cpu", cache=cache).labels.array
            scores = [dice(labels[rest] == v, truth[v][rest]) for v in (1, 2)]
            print(f"{name:10} Dice left {scores[0]:.3f} right {scores[1]:.3f} mean {np.mean(scores):.3f}; "
                  f"{fit.training.iterations} iterations (best {fit.training.best_iteration}); "
                  f"wall {time.perf_counter() - start:.1f} s, cpu {time.process_time() - cpu:.1f} s")


if __name__ == "__main__":
    main()
