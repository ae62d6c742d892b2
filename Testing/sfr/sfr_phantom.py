"""A tiny study for SFR tests: a ball (the structure) and a same-intensity cube (the distractor)
in noise, position and size varying per volume; a threshold finds both, only shape tells them apart."""

from __future__ import annotations

import numpy as np

from SAMFewShotLib.volume import LabelVolume, Segment, Volume

SHAPE = (24, 24, 24)
SPACING = (2.0, 2.0, 2.0)


def make_case(seed: int, shape=SHAPE) -> tuple[Volume, LabelVolume]:
    """(image, labels): ball of radius 3-5.5 voxels (label 1) and a 7-voxel cube, both intensity
    1, in Gaussian noise (sd 0.25); float32, 2 mm voxels."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    centre = np.array([12, 12, 7]) + rng.integers(-2, 3, size=3)
    radius = rng.uniform(3.0, 5.5)
    ball = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2
    corner = np.array([8, 8, 14]) + rng.integers(-2, 3, size=3)
    cube = np.zeros(shape, dtype=bool)
    cube[corner[0]:corner[0] + 7, corner[1]:corner[1] + 7, corner[2]:corner[2] + 7] = True
    cube &= ~ball
    image = (ball | cube).astype(np.float32) + rng.normal(0.0, 0.25, shape).astype(np.float32)
    volume = Volume(image, spacing=SPACING)
    labels = LabelVolume(volume.with_array(ball.astype(np.uint8)), (Segment(1, "ball", (1.0, 0.0, 0.0)),))
    return volume, labels


class PerturbedTruthSource:
    """A test pseudo-label source: the true labels shifted by up to 2 voxels and grown or shrunk
    by one voxel (Dice about 0.6-0.8), confidence from the boundary distance."""

    name = "perturbed"

    def __init__(self, truths: dict, seed: int = 0) -> None:
        self.truths, self.rng = truths, np.random.default_rng(seed)

    def __call__(self, labelled_image, labelled_labels, image, *, progress=None, cancel=None):
        from scipy import ndimage

        from SAMFewShotLib.sfr.pseudo_labels import PseudoLabel, boundary_confidence

        truth = self.truths[id(image)].array > 0
        shifted = np.roll(truth, tuple(self.rng.integers(-2, 3, size=3)), axis=(0, 1, 2))
        grown = ndimage.binary_dilation(shifted) if self.rng.random() < 0.5 else ndimage.binary_erosion(shifted)
        labels = LabelVolume(image.with_array(grown.astype(np.uint8)), labelled_labels.segments)
        confidence = boundary_confidence(labels.array, image.spacing_zyx)
        return PseudoLabel(labels, confidence, float(self.rng.random()), self.name)
