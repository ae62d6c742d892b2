"""Tests of slice preprocessing for SAM: windows, slice orientation, square-pixel geometry."""

import numpy as np
import pytest

pytest.importorskip("torch")

import torch
from torch.nn import functional as F

from SAMFewShotLib.sam.preprocess import (
    CT_WINDOWS,
    Preprocessing,
    SliceGeometry,
    model_input,
    preprocess_slice,
    resample_2d,
    slice_geometry,
    slice_rgb,
    volume_slice,
    volume_slice_geometry,
)
from SAMFewShotLib.volume import Volume
from Testing.phantoms import ellipsoid, render
from Testing.tiny_sam import build_tiny_sam


def ct_volume(shape=(6, 40, 52), spacing=(0.8, 0.8, 2.5)) -> Volume:
    rng = np.random.default_rng(0)
    return Volume(rng.integers(-1024, 1500, size=shape).astype(np.int16), spacing=spacing)


def test_ct_preset_resolves_level_and_width():
    prep = Preprocessing.ct("soft-tissue")
    level, width = CT_WINDOWS["soft-tissue"]
    assert (prep.low, prep.high) == (level - width / 2, level + width / 2) == (-160.0, 240.0)


def test_unknown_window_names_the_value():
    with pytest.raises(ValueError, match="'spleen'"):
        Preprocessing.ct("spleen")
    with pytest.raises(ValueError, match="'spleen'"):
        Preprocessing.for_volume(ct_volume(), "spleen")


def test_window_must_have_low_below_high():
    with pytest.raises(ValueError, match="low < high"):
        Preprocessing("custom", 10, 10)
    with pytest.raises(ValueError, match="width"):
        Preprocessing.from_window(0, -5)


def test_percentile_window_of_the_volume():
    volume = Volume(np.arange(1000, dtype=np.float32).reshape(10, 10, 10))
    prep = Preprocessing.from_percentiles(volume)
    assert prep.window == "percentile-0.5-99.5"
    assert prep.low == pytest.approx(np.percentile(volume.array, 0.5))
    assert prep.high == pytest.approx(np.percentile(volume.array, 99.5))


def test_auto_window_is_soft_tissue_for_ct_and_percentiles_for_mr():
    assert Preprocessing.for_volume(ct_volume()).window == "soft-tissue"
    mr = Volume(np.random.default_rng(1).uniform(0, 800, (4, 20, 20)).astype(np.float32))
    assert Preprocessing.for_volume(mr).window.startswith("percentile")


def test_to_uint8_maps_low_to_0_high_to_255_and_clips():
    prep = Preprocessing("custom", -100, 100)
    values = np.array([-500, -100, 0, 100, 900])
    assert prep.to_uint8(values).tolist() == [0, 0, 128, 255, 255]


def test_key_changes_with_every_field_and_is_stable():
    base = Preprocessing("custom", -100, 100, True)
    assert base.key() == Preprocessing("custom", -100.0, 100.0, True).key()
    others = [Preprocessing("other", -100, 100), Preprocessing("custom", -99, 100), Preprocessing("custom", -100, 101),
              Preprocessing("custom", -100, 100, False)]
    assert len({base.key()} | {p.key() for p in others}) == 5


@pytest.mark.parametrize("axis, shape", [(0, (40, 52)), (1, (6, 52)), (2, (6, 40))])
def test_slices_are_rows_cols_of_the_canonical_orientation(axis, shape):
    volume = ct_volume()
    values = volume_slice(volume, axis, 3)
    assert values.shape == shape
    np.testing.assert_array_equal(values, np.moveaxis(volume.array, axis, 0)[3])


def test_slice_index_outside_the_volume_is_refused():
    with pytest.raises(ValueError, match="Slice 6 is outside 0..5"):
        volume_slice(ct_volume(), 0, 6)


def test_square_pixels_give_the_identity_geometry():
    geometry = volume_slice_geometry(ct_volume(), 0, Preprocessing.ct("bone"))
    assert geometry.is_identity and geometry.slice_shape == (40, 52)
    points = np.array([[3.25, 7.5]])
    np.testing.assert_array_equal(geometry.points_to_model(points), points)
    logits = torch.ones(1, 1, 40, 52)
    assert geometry.logits_to_slice(logits) is logits


def test_anisotropic_pixels_are_resampled_to_the_finer_spacing():
    # coronal slices of a (z 2.5 mm, y 0.8, x 0.8) volume: rows z 2.5 mm, cols x 0.8 mm
    volume = ct_volume()
    geometry = volume_slice_geometry(volume, 1, Preprocessing.ct("bone"))
    assert geometry.slice_shape == (6, 52)
    assert geometry.model_shape == (19, 52)  # round(6 * 2.5 / 0.8) = 19
    assert volume_slice_geometry(volume, 1, Preprocessing.ct("bone", square_pixels=False)).is_identity


def test_point_mapping_round_trips_and_keeps_the_extent():
    geometry = slice_geometry((10, 20), (3.0, 1.0))
    assert geometry.model_shape == (30, 20)
    points = np.array([[0.0, 0.0], [19.0, 9.0], [4.5, 2.25]])
    model = geometry.points_to_model(points)
    # slice pixel centre row 0 spans model rows 0..2, its centre is model row 1
    np.testing.assert_allclose(model[0], [0.0, 1.0])
    np.testing.assert_allclose(model[1], [19.0, 28.0])
    np.testing.assert_allclose(geometry.points_to_slice(model), points)
    np.testing.assert_allclose(geometry.boxes_to_model(np.array([0.0, 0.0, 19.0, 9.0])), [0, 1, 19, 28])


def test_linear_resampling_matches_bilinear_interpolate():
    rng = np.random.default_rng(2)
    image = rng.normal(size=(2, 13, 17))
    for shape in [(29, 17), (13, 40), (7, 9), (31, 5)]:
        expected = F.interpolate(torch.as_tensor(image)[None], shape, mode="bilinear", align_corners=False)[0]
        np.testing.assert_allclose(resample_2d(image, shape, linear=True), expected.numpy(), atol=1e-12)


def test_nearest_resampling_keeps_labels_and_round_trips_upsampling():
    labels = np.random.default_rng(3).integers(0, 4, size=(8, 11)).astype(np.uint8)
    geometry = SliceGeometry((8, 11), (24, 11))
    model = geometry.image_to_model(labels, linear=False)
    assert model.dtype == np.uint8 and set(np.unique(model)) <= set(np.unique(labels))
    np.testing.assert_array_equal(geometry.mask_to_slice(model), labels)


def test_logits_to_slice_inverts_a_linear_ramp():
    geometry = slice_geometry((10, 12), (2.0, 1.0))  # model (20, 12)
    rows = torch.arange(20, dtype=torch.float32)[:, None].expand(20, 12)
    back = geometry.logits_to_slice(rows[None, None])[0, 0]
    # slice row i sits at model coordinate 2 i + 0.5: the linear ramp's value there
    np.testing.assert_allclose(back[:, 0].numpy(), 2 * np.arange(10) + 0.5, atol=1e-5)


def test_slice_rgb_is_the_windowed_slice_replicated():
    volume = ct_volume()
    prep = Preprocessing.ct("soft-tissue")
    rgb, geometry = slice_rgb(volume, 0, 2, prep)
    assert rgb.shape == (40, 52, 3) and rgb.dtype == np.uint8 and geometry.is_identity
    expected = prep.to_uint8(volume.array[2])
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], expected)


def test_preprocess_slice_follows_set_image_sizes():
    sam = build_tiny_sam()
    truth = ellipsoid((3, 50, 60), (2, 30, 40), (6, 101, 122))
    volume = Volume(render(truth, seed=0))
    prepared = preprocess_slice(sam, volume, 0, 3, Preprocessing.from_percentiles(volume))
    assert prepared.original_size == (101, 122)
    assert prepared.input_size == (848, 1024) and prepared.pixels.shape == (3, 848, 1024)
    assert prepared.pixels.dtype == torch.uint8
    batch = model_input(sam, [prepared, prepared])
    assert batch.shape == (2, 3, 1024, 1024) and batch.dtype == torch.float32
    assert torch.all(batch[:, :, 848:, :] == 0)  # padding after normalisation
