"""3D atlas registration (elastix affine + B-spline) on small synthetic volumes."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from SAMFewShotLib.atlas.deformation import deform_case
from SAMFewShotLib.atlas.registration import check_parameters, register, register_atlas
from SAMFewShotLib.progress import Cancelled, CancelToken
from SAMFewShotLib.volume import LabelVolume, Volume
from Testing.atlas.atlas_phantom import FAST, mean_dice, phantom

pytestmark = pytest.mark.slow  # loads itk-elastix


def rotation_z(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def other_grid(shape_zyx, spacing, direction: np.ndarray, centre) -> Volume:
    """An empty volume of ``shape_zyx`` whose centre lies at the physical point ``centre``."""
    half = np.asarray(spacing) * (np.asarray(shape_zyx[::-1]) - 1) / 2.0
    origin = np.asarray(centre) - direction @ half
    return Volume(np.zeros(shape_zyx, np.float32), tuple(spacing), tuple(origin), tuple(direction.ravel()))


def resample_onto(volume: Volume, grid: Volume, nearest: bool) -> np.ndarray:
    """``volume`` resampled in physical space onto ``grid`` (z, y, x)."""
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    out = sitk.Resample(volume.to_sitk(), grid.to_sitk(), sitk.Transform(), interpolator, float(volume.array.min()))
    return sitk.GetArrayFromImage(out)


@pytest.fixture(scope="module")
def deformed():
    atlas_image, atlas_labels = phantom()
    target, truth = deform_case(atlas_image, atlas_labels, 6.0, control_spacing_mm=24.0, seed=5)
    calls = []
    result = register(atlas_image, atlas_labels, target, parameters=FAST,
                      progress=lambda stage, done, total: calls.append((stage, done, total)))
    return atlas_image, atlas_labels, target, truth, result, calls


def test_registration_recovers_a_known_deformation_better_than_identity(deformed):
    _, atlas_labels, _, truth, result, _ = deformed
    identity = mean_dice(atlas_labels.array, truth.array)
    registered = mean_dice(result.labels.array, truth.array)
    assert registered > identity + 0.04, (identity, registered)
    assert registered > 0.9


def test_result_lies_on_the_target_grid_with_the_atlas_segments_and_values(deformed):
    _, atlas_labels, target, _, result, calls = deformed
    assert result.labels.volume.same_grid(target) and result.image.same_grid(target)
    assert result.labels.segments == atlas_labels.segments
    assert set(np.unique(result.labels.array)) <= {0, 1, 2, 3}  # nearest neighbour: no blended values
    assert result.labels.array.dtype == np.uint8
    assert calls[-1] == ("atlas registration", 2, 2) and set(result.seconds) == {"register", "warp labels"}


def test_warped_atlas_image_matches_the_target_better_than_the_atlas(deformed):
    atlas_image, _, target, _, result, _ = deformed
    before = np.abs(atlas_image.array - target.array).mean()
    after = np.abs(result.image.array - target.array).mean()
    assert after < 0.8 * before


def test_geometry_is_kept_when_atlas_and_target_grids_differ():
    atlas_image, atlas_labels = phantom(seed=3)
    # target: another shape and anisotropic spacing, rotated 25 degrees and flipped along y and z
    direction = rotation_z(25.0) @ np.diag([1.0, -1.0, -1.0])
    centre = np.asarray(atlas_image.origin) + np.asarray(atlas_image.spacing) * (np.asarray(atlas_image.shape[::-1]) - 1) / 2
    grid = other_grid((34, 44, 38), (2.3, 1.7, 2.4), direction, centre + np.array([3.0, -2.0, 1.0]))
    target = grid.with_array(resample_onto(atlas_image, grid, nearest=False).astype(np.float32))
    truth = resample_onto(atlas_labels.volume, grid, nearest=True)
    labels = register_atlas(atlas_image, atlas_labels, target, parameters=FAST)
    assert labels.volume.same_grid(target)
    assert labels.segments == atlas_labels.segments
    assert mean_dice(labels.array, truth) > 0.85


def test_cancel_before_the_work_starts():
    atlas_image, atlas_labels = phantom((20, 20, 20))
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        register(atlas_image, atlas_labels, atlas_image, parameters=FAST, cancel=token)


def test_atlas_labels_must_lie_on_the_atlas_grid():
    atlas_image, atlas_labels = phantom((20, 20, 20))
    moved = LabelVolume(Volume(atlas_labels.array, spacing=(3.0, 3.0, 3.0)))
    with pytest.raises(ValueError, match="atlas labels grid"):
        register(atlas_image, moved, atlas_image, parameters=FAST)


@pytest.mark.parametrize(
    "parameters, message",
    [
        ({"grid": 3}, "Unknown registration parameter 'grid'"),
        ({"bspline_iterations": 0}, "bspline_iterations must be a positive integer"),
        ({"grid_spacing_mm": -5}, "grid_spacing_mm must be a positive number"),
        ({"metric": "Magic"}, "metric must be one of"),
        ({"threads": 0}, "threads must be a positive integer"),
    ],
)
def test_bad_parameters_are_refused(parameters, message):
    with pytest.raises(ValueError, match=message):
        check_parameters(parameters)


def test_defaults_fill_in_what_is_not_given():
    settings = check_parameters({"bspline_iterations": 7})
    assert settings["bspline_iterations"] == 7 and settings["metric"] == "AdvancedNormalizedCorrelation"
