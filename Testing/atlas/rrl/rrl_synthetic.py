"""Synthetic atlas / target volumes for the RRL-MedSAM tests (tiny, seeded, explicit geometry).

Each volume holds two ellipsoids (label 1 "core", bright; label 2 "side" structure, grey) in
a noisy background; targets move and stretch the structures by a few voxels. With
``distractors`` two unlabelled slabs with exactly the labels' intensities (a bright one along
the high-x face, a grey one along the low-y face, larger than the structures) move with them,
so that no intensity threshold segments the labels: only where a structure lies tells it from
its distractor.
"""

from __future__ import annotations

import numpy as np

from SAMFewShotLib.volume import LabelVolume, Segment, Volume

SPACING = (1.5, 1.5, 2.0)
ORIGIN = (-20.0, 10.0, 5.0)
DIRECTION = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
SEGMENTS = (Segment(1, "core", (0.9, 0.2, 0.2)), Segment(2, "side", (0.2, 0.4, 0.9)))


def _ellipsoid(shape, centre, radii) -> np.ndarray:
    z, y, x = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    return (
        ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2 <= 1
    )


def phantom(
    shift=(0.0, 0.0, 0.0), stretch=1.0, size: int = 32, seed: int = 0, shape: tuple[int, int, int] | None = None,
    spacing=SPACING, direction=DIRECTION, distractors: bool = False,
) -> tuple[Volume, LabelVolume]:
    """(image, labels) of size^3 voxels (or ``shape``, z y x); ``shift`` (voxels, z y x) and
    ``stretch`` deform the structures (and the distractor slabs with ``distractors``)."""
    rng = np.random.default_rng(seed)
    shape = shape or (size,) * 3
    size = min(shape)
    c = np.array(shape) / 2.0 + np.array(shift)
    core = _ellipsoid(shape, c + [0, -size * 0.1, -size * 0.08], np.array([0.25, 0.22, 0.24]) * size * stretch)
    side = _ellipsoid(shape, c + [0, size * 0.18, size * 0.15], np.array([0.2, 0.15, 0.14]) * size * stretch) & ~core
    labels = np.zeros(shape, np.uint8)
    labels[core] = 1
    labels[side] = 2
    image = 100.0 + 20.0 * rng.standard_normal(shape)
    image[core] += 500.0
    image[side] += 250.0
    if distractors:
        z, y, x = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
        bright = np.abs(x - (c[2] + 0.4 * size)) <= 0.09 * size * stretch
        grey = (np.abs(y - (c[1] - 0.4 * size)) <= 0.06 * size * stretch) & ~bright
        image[bright & ~core & ~side] += 500.0
        image[grey & ~core & ~side] += 250.0
    geometry = dict(spacing=spacing, origin=ORIGIN, direction=direction)
    return (
        Volume(image.astype(np.float32), **geometry),
        LabelVolume(Volume(labels, **geometry), SEGMENTS),
    )


def targets(count: int = 3, size: int = 32, distractors: bool = False) -> list[tuple[Volume, LabelVolume]]:
    """``count`` deformed (image, reference labels) pairs, seeded."""
    rng = np.random.default_rng(123)
    out = []
    for i in range(count):
        shift = rng.uniform(-4.0, 4.0, 3) * size / 32
        stretch = rng.uniform(0.8, 1.2)
        out.append(phantom(tuple(shift), stretch, size, seed=i + 1, distractors=distractors))
    return out
