"""Intensity normalisation recorded in an atlas bundle's manifest.

A normalisation is a small JSON-able dict, ``{"method": ...}`` plus its parameters:

- ``{"method": "none"}``: values as they are (float32).
- ``{"method": "clip", "low": L, "high": H}``: clip to [L, H] (e.g. CT Hounsfield units) and
  scale to [0, 1].
- ``{"method": "percentile", "low": pl, "high": ph}``: clip to the image's own pl-th and ph-th
  percentiles and scale to [0, 1] (MR).
- ``{"method": "zscore"}``: subtract the mean, divide by the standard deviation.

The registration engine registers with elastix's mutual information, which does not need
normalised intensities; the normalisation is there for networks (RRL-MedSAM) and is applied to
atlas and target alike.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

METHODS = ("none", "clip", "percentile", "zscore")
#: Default per modality: CT soft-tissue-to-bone range in HU, MR robust percentiles.
DEFAULTS = {
    "CT": {"method": "clip", "low": -1000.0, "high": 1000.0},
    "MR": {"method": "percentile", "low": 0.5, "high": 99.5},
}


def default_normalisation(modality: str) -> dict:
    """The default normalisation for ``modality`` ("CT", "MR"; others: percentile)."""
    return dict(DEFAULTS.get(modality.upper(), DEFAULTS["MR"]))


def check_normalisation(normalisation: dict) -> dict:
    """The normalisation as a clean dict; ValueError naming the bad entry."""
    if not isinstance(normalisation, dict):
        raise InputError(f"Normalisation must be a dict with a 'method', not {normalisation!r}")
    method = normalisation.get("method")
    if method not in METHODS:
        raise InputError(f"Normalisation method must be one of {', '.join(METHODS)}, not {method!r}")
    clean = {"method": method}
    if method in ("clip", "percentile"):
        try:
            low, high = float(normalisation["low"]), float(normalisation["high"])
        except (KeyError, TypeError, ValueError):
            raise InputError(
                f"Normalisation {method!r} needs numbers 'low' and 'high', not {normalisation!r}"
            ) from None
        if not low < high:
            raise InputError(f"Normalisation 'low' must be below 'high', not {low} >= {high}")
        if method == "percentile" and not (0.0 <= low and high <= 100.0):
            raise InputError(f"Percentiles must lie in [0, 100], not {low}, {high}")
        clean.update(low=low, high=high)
    return clean


def normalise(array: np.ndarray, normalisation: dict) -> np.ndarray:
    """``array`` (any shape, numeric) normalised as described above; float32, same shape."""
    spec = check_normalisation(normalisation)
    values = np.asarray(array, dtype=np.float32)
    method = spec["method"]
    if method == "none":
        return values.copy()
    if method == "zscore":
        std = float(values.std())
        return (values - float(values.mean())) / (std if std > 0 else 1.0)
    if method == "clip":
        low, high = spec["low"], spec["high"]
    else:
        low, high = (float(v) for v in np.percentile(values, [spec["low"], spec["high"]]))
    if high <= low:
        return np.zeros_like(values)
    return ((np.clip(values, low, high) - low) / (high - low)).astype(np.float32)
