"""QC montage: three planes through the labels' centroid, physical aspect, colours overlaid."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from SAMFewShotLib.batch.montage import GAP, label_centroid, montage, write_montage
from SAMFewShotLib.volume import LabelVolume, Segment, Volume


def case(spacing=(1.0, 1.0, 1.0)):
    rng = np.random.default_rng(0)
    image = Volume(rng.normal(0, 1, (20, 30, 40)).astype(np.float32), spacing=spacing)
    array = np.zeros((20, 30, 40), np.uint8)
    array[4:10, 10:20, 20:30] = 1
    return image, LabelVolume(image.with_array(array), (Segment(1, "box", (1.0, 0.0, 0.0)),))


def test_the_centroid_is_the_mean_labelled_voxel_or_the_centre_when_empty():
    image, labels = case()
    assert label_centroid(labels) == (6, 14, 24)  # (4+9)/2 = 6.5 rounds to 6 (half to even)
    assert label_centroid(labels.with_array(np.zeros((20, 30, 40), np.uint8))) == (10, 15, 20)


def test_panels_have_their_physical_aspect_ratio():
    image, labels = case(spacing=(1.0, 2.0, 3.0))  # x 40 mm, y 60 mm, z 60 mm
    picture = montage(image, labels, height=60)
    widths = [round(60 * 40 / 60), round(60 * 40 / 60), round(60 * 60 / 60)]  # axial, coronal, sagittal
    assert picture.size == (sum(widths) + 2 * GAP, 60)


def test_the_label_colour_is_blended_over_the_image_at_the_centroid():
    image, labels = case()
    picture = np.asarray(montage(image, labels, height=30))  # axial panel at native size
    inside, outside = picture[14, 24], picture[2, 2]
    assert inside[0] > inside[1] + 60  # red segment
    assert abs(int(outside[0]) - int(outside[1])) <= 1  # grey


def test_write_montage_writes_a_png(tmp_path):
    image, labels = case()
    path = write_montage(image, labels, tmp_path / "m" / "case.png", height=40)
    assert Image.open(path).format == "PNG"
    assert [p.name for p in path.parent.iterdir()] == ["case.png"]


def test_labels_on_another_grid_are_refused():
    image, labels = case()
    with pytest.raises(ValueError, match="label map grid"):
        montage(image, LabelVolume(Volume(labels.array, spacing=(2.0, 1.0, 1.0))))
