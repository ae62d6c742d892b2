"""Tests of SAMFewShotLib.propagation.slice_registration: warp, the registrars, make_registrar.

Convention under test: a registrar returns ``d`` (2, rows, cols) in pixels, (row, col) order,
with ``moving(x + d(x)) ~ fixed(x)``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from SAMFewShotLib.propagation.slice_registration import (
    DisOpticalFlowRegistrar,
    ElastixBSplineRegistrar,
    ElastixPaperRegistrar,
    OpticalFlowRegistrar,
    make_registrar,
    warp,
)

SHAPE = (48, 48)  # (rows, cols)
#: Known translation (rows, cols) in pixels: moving(x + SHIFT) = fixed(x).
SHIFT = np.array([1.5, -2.0])


def blobby_slice(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image, object mask): a textured bright ellipse on a textured darker background, in [0, 1]."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: SHAPE[0], : SHAPE[1]]
    inside = ((rows - 24) / 12) ** 2 + ((cols - 24) / 10) ** 2 <= 1

    def texture() -> np.ndarray:
        t = ndimage.gaussian_filter(rng.standard_normal(SHAPE), 1.5)
        return t / t.std()

    image = 0.2 + 0.05 * texture()
    image[inside] = (0.7 + 0.1 * texture())[inside]
    image = np.clip(ndimage.gaussian_filter(image, 0.7), 0.0, 1.0)
    return image.astype(np.float32), inside


def translated_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fixed, moving, object mask of fixed) with moving(x + SHIFT) = fixed(x)."""
    fixed, inside = blobby_slice()
    # ndimage.shift: out(y) = in(y - shift), so moving(x + SHIFT) = fixed(x).
    moving = ndimage.shift(fixed, SHIFT, order=3, mode="nearest").astype(np.float32)
    return fixed, moving, inside


# warp --------------------------------------------------------------------------------------------
def test_warp_with_a_zero_field_is_the_identity():
    image, _ = blobby_slice()
    out = warp(image, np.zeros((2, *SHAPE), np.float32))
    np.testing.assert_allclose(out, image, atol=1e-6)


def test_warp_with_an_integer_shift_moves_a_square_exactly():
    square = np.zeros(SHAPE, np.float32)
    square[10:20, 12:22] = 1.0
    displacement = np.zeros((2, *SHAPE), np.float32)
    displacement[0], displacement[1] = 3.0, -2.0
    # out(x) = square(x + d): the square moves by -d, to rows 7:17, cols 14:24.
    expected = np.zeros(SHAPE, np.float32)
    expected[7:17, 14:24] = 1.0
    np.testing.assert_array_equal(warp(square, displacement), expected)


# registrars --------------------------------------------------------------------------------------
@pytest.mark.parametrize("registrar", [DisOpticalFlowRegistrar, OpticalFlowRegistrar])
def test_optical_flow_recovers_a_known_translation(registrar):
    fixed, moving, inside = translated_pair()
    displacement = registrar().register(fixed, moving, (1.0, 1.0))
    assert displacement.shape == (2, *SHAPE) and displacement.dtype == np.float32
    mean = np.array([displacement[0][inside].mean(), displacement[1][inside].mean()])
    np.testing.assert_allclose(mean, SHIFT, atol=0.5)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # itk's SWIG wrappers, not ours
def test_elastix_bspline_recovers_a_known_translation_slow(tmp_path, monkeypatch):
    """SLOW: loads itk-elastix (~10-25 s), so the one elastix test. Anisotropic pixels also check
    the mm-to-pixel conversion, and an empty working directory that it leaves no file behind."""
    monkeypatch.chdir(tmp_path)
    fixed, moving, inside = translated_pair()
    displacement = ElastixBSplineRegistrar().register(fixed, moving, (0.8, 1.2))
    assert displacement.shape == (2, *SHAPE) and displacement.dtype == np.float32
    mean = np.array([displacement[0][inside].mean(), displacement[1][inside].mean()])
    np.testing.assert_allclose(mean, SHIFT, atol=0.5)
    assert not list(tmp_path.iterdir())  # transformix output stays out of the working directory


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # itk's SWIG wrappers, not ours
def test_elastix_paper_preset_is_elastix_default_bspline_map_at_three_resolutions_slow():
    """SLOW (imports itk). SAM-MPA's setting: elastix's own defaults, 3 resolutions; the tuned
    registrar differs from it in resolutions, grid, iterations and metric."""
    paper = ElastixPaperRegistrar().parameter_map()
    assert paper["NumberOfResolutions"] == ["3"]
    assert paper["Transform"] == ["BSplineTransform"]
    assert paper["MaximumNumberOfIterations"] == ["256"]
    assert paper["Metric"] == ["AdvancedMattesMutualInformation", "TransformBendingEnergyPenalty"]
    assert float(paper["FinalGridSpacingInPhysicalUnits"][0]) == 10.0
    assert paper["WriteResultImage"] == ["false"]
    tuned = ElastixBSplineRegistrar().parameter_map()
    assert tuned["NumberOfResolutions"] == ["2"] and tuned["MaximumNumberOfIterations"] == ["100"]
    assert tuned["Metric"] == ["AdvancedMeanSquares"]


# make_registrar ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, kind",
    [
        ("dis", DisOpticalFlowRegistrar),
        ("tvl1", OpticalFlowRegistrar),
        ("elastix", ElastixBSplineRegistrar),
        ("elastix-mpa", ElastixPaperRegistrar),
    ],
)
def test_make_registrar_builds_the_named_registrar(name, kind):
    registrar = make_registrar(name)
    assert isinstance(registrar, kind) and registrar.name == name


def test_make_registrar_rejects_an_unknown_name():
    with pytest.raises(ValueError, match="'demons'"):
        make_registrar("demons")
