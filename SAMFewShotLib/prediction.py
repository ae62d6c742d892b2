"""What an engine returns: :class:`Prediction` on the image grid, built from one
:class:`LabelProbability` per label in the canonical orientation (annotated axis first).

Core layer: the engines (``engines/``) make these; the domain packages (``fewshot/``,
``atlas/``, ...) that produce per-label probabilities import them from here, never from
``engines/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .volume import LabelVolume


@dataclass
class LabelProbability:
    """One label's propagated probability, in the canonical orientation (annotated axis first).

    Attributes:
        probability: float32 in [0, 1] over ``box`` of the canonical volume (n_slices, rows,
            cols); > 0.5 is inside, everything outside ``box`` is 0.
        slice_confidence: (n_slices,) float32 in [0, 1]: how much the engine trusts each slice
            (1 on annotated slices, 0 where it predicts nothing with no evidence).
        expected_dice: the engine's own estimate of the Dice it reaches, when it has one.
        box: (slices, rows, cols) slices of the canonical volume that ``probability`` covers;
            None = the whole volume. Keeps memory proportional to the structure, not the image.
    """

    probability: np.ndarray
    slice_confidence: np.ndarray
    expected_dice: float | None = None
    details: dict = field(default_factory=dict)
    box: tuple[slice, slice, slice] | None = None

    def full(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The probability on the whole canonical volume of ``shape`` (a new array)."""
        out = np.zeros(shape, np.float32)
        out[self.box or (slice(None),) * 3] = self.probability
        return out

    def slice_at(self, z: int, shape: tuple[int, int, int]) -> np.ndarray:
        """(rows, cols) probability of canonical slice ``z``."""
        out = np.zeros(shape[1:], np.float32)
        box = self.box or (slice(None),) * 3
        start, stop, _ = box[0].indices(shape[0])
        if start <= z < stop:
            out[box[1], box[2]] = self.probability[z - start]
        return out


@dataclass
class Prediction:
    """An engine's result on the image grid.

    Attributes:
        labels: the label map, same grid and segment table as the annotation.
        slice_confidence: per label value, (n_slices,) confidence along the annotated axis.
        expected_dice: per label value, the expected Dice where the engine estimates it (auto).
        seconds: wall time per stage.
        counters: engine counters (registrations, cache hits, ...).
        axis: the numpy axis (0 = z, 1 = y, 2 = x) the slices run along.
    """

    labels: LabelVolume
    slice_confidence: dict[int, np.ndarray]
    expected_dice: dict[int, float]
    seconds: dict[str, float]
    counters: dict[str, int | float | str]
    axis: int
    details: dict = field(default_factory=dict)
