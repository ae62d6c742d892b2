"""The few-shot tests' case: one learnable phantom, a tiny SAM, one trained head (fixtures in conftest.py).

Phantom (12 x 48 x 48 voxels, 0.9 x 0.7 x 2 mm, so slices are resampled to square pixels for
SAM): a textured ellipsoid (label 1, ~120) at the left, two distractor ellipsoids at the right
that are as bright (~120 after the offset) and as tall, on a ~40 background. An intensity
threshold cannot tell them apart; where they sit can. Label 1 is drawn on slices 2, 4, 6, 8, 10.

The tiny SAM has random weights, so its decoder starts far from useful: the tests train it
with a higher learning rate (3e-3) than the paper's 1e-4 for pretrained SAM, 30 iterations.
Torch runs on one thread (:data:`THREADS`). Embeddings live in a session disk cache under ``home/embeddings`` (``SAMFEWSHOT_HOME=home``
for command-line runs), so every slice is encoded once per session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from SAMFewShotLib.annotation import SparseAnnotation
from SAMFewShotLib.sam.embedding_cache import EmbeddingCache
from SAMFewShotLib.volume import LabelVolume, Segment, Volume
from Testing import phantoms, tiny_sam

SHAPE = (12, 48, 48)  # (z, y, x)
DRAWN = (2, 4, 6, 8, 10)
#: The tiny SAM's encoder has windowed attention only: a global block over the 64 x 64 grid costs
#: ~0.6 s per slice on one core, 20 times the rest of the encoder.
TINY_GLOBAL_ATTENTION: tuple[int, ...] = ()
#: Training settings for the tiny random SAM (see the module doc).
TINY_TRAINING = dict(iterations=30, learning_rate=3e-3)
#: torch CPU threads in these tests: on a machine whose cores are busy with other work, two
#: threads of small operations wait on each other (training here took 100 s with 2 threads
#: under load, 11 s with 1).
THREADS = 1


@dataclass
class Case:
    image: Volume
    annotation: SparseAnnotation
    truth: np.ndarray  # (z, y, x) bool, the structure
    checkpoint: Path
    home: Path  # SAMFEWSHOT_HOME of command-line runs
    cache: EmbeddingCache


def learnable_phantom() -> tuple[Volume, np.ndarray]:
    """The image and the structure's truth mask (see the module doc)."""
    target = phantoms.ellipsoid((5.5, 22, 14), (6.5, 10, 8), SHAPE)
    distractors = phantoms.ellipsoid((5.5, 11, 36), (6.5, 7, 7), SHAPE) | phantoms.ellipsoid(
        (5.5, 36, 35), (6.5, 7, 8), SHAPE
    )
    array = phantoms.render(target, seed=3, distractor=distractors)
    array[distractors & ~target] += 40.0
    image = Volume(array, spacing=(0.9, 0.7, 2.0), origin=(-12.0, 30.5, 4.0))
    return image, target


def make_case(folder: Path) -> Case:
    """The phantom annotated on :data:`DRAWN`, a tiny checkpoint and an embedding cache under ``folder``."""
    image, truth = learnable_phantom()
    labels = np.zeros(SHAPE, np.uint8)
    for z in DRAWN:
        labels[z][truth[z]] = 1
    segments = (Segment(1, "target", (0.9, 0.3, 0.2)),)
    annotation = SparseAnnotation.from_labels(LabelVolume(image.with_array(labels), segments), axis=0)
    home = folder / "home"
    checkpoint = tiny_sam.save_tiny_checkpoint(folder / "tiny.pth", global_attn_indexes=TINY_GLOBAL_ATTENTION)
    return Case(image, annotation, truth, checkpoint, home, EmbeddingCache(directory=home / "embeddings"))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def unannotated(case: Case) -> list[int]:
    return [z for z in range(SHAPE[0]) if z not in DRAWN]
