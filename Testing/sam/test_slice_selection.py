"""``--sam-slices uncertain``: SAM refines only slices of low coarse confidence or fast area
change, keeps the coarse mask elsewhere, and encodes fewer slices (tiny random SAM: mechanics)."""

from __future__ import annotations

import numpy as np
import pytest

from SAMFewShotLib.errors import InputError
from SAMFewShotLib.sam.slice_selection import area_change, check_sam_slices, uncertain_slices


def growing_mask():
    """(6, 20, 20): empty, then areas 16, 16, 17, 64, then empty."""
    coarse = np.zeros((6, 20, 20), bool)
    coarse[1, 2:6, 2:6] = coarse[2, 2:6, 2:6] = True
    coarse[3, 2:6, 2:6] = True
    coarse[3, 6, 2] = True
    coarse[4, 2:10, 2:10] = True
    return coarse


def test_area_change_is_relative_to_the_larger_neighbour():
    change = area_change(growing_mask())
    assert change[0] == pytest.approx(1.0) and change[2] == pytest.approx(1 / 17)
    assert change[3] == pytest.approx((64 - 17) / 64) and change[5] == pytest.approx(1.0)


def test_uncertain_slices_low_confidence_or_fast_area_change():
    confidence = np.array([1.0, 1.0, 0.3, 0.95, 0.95, 1.0])
    chosen = uncertain_slices(growing_mask(), confidence, [1, 2, 3, 4])
    assert chosen == [1, 2, 3, 4]  # 1: next to an empty slice, 2: low confidence, 3-4: area jump
    confidence[2] = 0.99
    assert uncertain_slices(growing_mask(), confidence, [2]) == []


def test_bad_values_are_named():
    with pytest.raises(InputError, match="'some'"):
        check_sam_slices("some")
    with pytest.raises(ValueError, match="shape"):
        uncertain_slices(growing_mask(), np.ones(3), [1])


def test_engine_encodes_only_uncertain_slices_and_keeps_the_coarse_mask_elsewhere(tmp_path):
    pytest.importorskip("torch")
    from SAMFewShotLib.annotation import SparseAnnotation
    from SAMFewShotLib.engines import make_engine
    from SAMFewShotLib.sam.embedding_cache import EmbeddingCache
    from SAMFewShotLib.volume import LabelVolume, Volume
    from Testing import phantoms, tiny_sam

    shape = (12, 36, 44)
    checkpoint = tiny_sam.save_tiny_checkpoint(tmp_path / "tiny.pth")
    ball = phantoms.ellipsoid((6, 18, 20), (5, 10, 12), shape)
    image = Volume(phantoms.render(ball, 0), spacing=(0.9, 0.9, 2.0))
    labels = np.zeros(shape, np.uint8)
    for z in (3, 8):
        labels[z][ball[z]] = 1
    annotation = SparseAnnotation.from_labels(LabelVolume(image.with_array(labels)), axis=0)

    coarse = make_engine("register").propagate(image, annotation)
    mask = coarse.labels.array == 1
    candidates = [int(z) for z in np.flatnonzero(mask.any(axis=(1, 2))) if z not in (3, 8)]
    chosen = uncertain_slices(mask, coarse.slice_confidence[1], candidates)
    kept = sorted(set(candidates) - set(chosen))
    assert chosen and kept  # the phantom has both kinds

    cache = EmbeddingCache(directory=tmp_path / "embeddings")
    some = make_engine("sam", checkpoint=str(checkpoint), cache=cache, sam_slices="uncertain").propagate(
        image, annotation
    )
    assert some.counters["slices_encoded"] == len(chosen) and some.counters["slices_kept_coarse"] == len(kept)
    np.testing.assert_array_equal(some.labels.array[kept] == 1, mask[kept])
    everything = make_engine("sam", checkpoint=str(checkpoint), cache=cache).propagate(image, annotation)
    assert everything.counters["slices_encoded"] == len(kept)  # the uncertain ones are cached already


def test_cli_refuses_sam_slices_for_an_engine_without_sam(tmp_path, capsys):
    from SAMFewShotLib.cli.main import main

    code = main(["propagate", str(tmp_path / "image.nrrd"), str(tmp_path / "drawn.nrrd"), "-o",
                 str(tmp_path / "out.nrrd"), "--engine", "register", "--sam-slices", "uncertain", "--progress", "none"])
    assert code == 2
    assert "--sam-slices" in capsys.readouterr().err
