"""Warping volumes with dense displacement fields (voxels, channels dz, dy, dx)."""

import pytest

pytest.importorskip("torch")

import torch

from SAMFewShotLib.atlas.rrl.spatial_transformer import SpatialTransformer, identity_grid, resize_flow, warp


def _volume():
    torch.manual_seed(0)
    return torch.rand(1, 2, 6, 7, 8)


def test_zero_flow_is_the_identity():
    volume = _volume()
    torch.testing.assert_close(warp(volume, torch.zeros(1, 3, 6, 7, 8)), volume, rtol=0, atol=1e-6)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_integer_displacement_samples_the_shifted_voxel(axis):
    volume = _volume()
    flow = torch.zeros(1, 3, 6, 7, 8)
    flow[:, axis] = 1.0  # warped(p) = moving(p + 1 along axis)
    warped = warp(volume, flow, mode="nearest")
    inside = [slice(None)] * 5
    inside[2 + axis] = slice(0, -1)
    source = [slice(None)] * 5
    source[2 + axis] = slice(1, None)
    torch.testing.assert_close(warped[tuple(inside)], volume[tuple(source)], rtol=0, atol=1e-6)


def test_module_matches_function_and_bad_flow_is_refused():
    volume = _volume()
    flow = 0.3 * torch.randn(1, 3, 6, 7, 8)
    torch.testing.assert_close(SpatialTransformer()(volume, flow), warp(volume, flow))
    with pytest.raises(ValueError, match="flow"):
        warp(volume, torch.zeros(1, 3, 6, 7, 9))


def test_resized_flow_keeps_physical_displacement():
    coarse = torch.zeros(1, 3, 5, 5, 5)
    coarse[:, 2] = 1.0  # one coarse voxel along x
    fine = resize_flow(coarse, (9, 9, 9))
    torch.testing.assert_close(fine[:, 2], torch.full((1, 9, 9, 9), 2.0))
    torch.testing.assert_close(fine[:, :2], torch.zeros(1, 2, 9, 9, 9))


def test_identity_grid_holds_voxel_coordinates():
    grid = identity_grid((2, 3, 4))
    assert grid.shape == (1, 3, 2, 3, 4)
    assert grid[0, :, 1, 2, 3].tolist() == [1.0, 2.0, 3.0]
