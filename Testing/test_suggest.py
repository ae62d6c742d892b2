"""Support-slice suggestion: K-center greedy + k-centroid refinement on slice features."""

import numpy as np
import pytest

from SAMFewShotLib.cli.arguments import parse_range
from SAMFewShotLib.suggest import (
    intensity_features,
    pooled_embeddings,
    select_support_slices,
    suggest_slices,
)


def clustered_features(sizes=(6, 10, 4), dim=8, seed=0) -> tuple[np.ndarray, list[int]]:
    """Rows in well-separated directions, one cluster per size; returns features and cluster ids."""
    rng = np.random.default_rng(seed)
    rows, ids = [], []
    for cluster, size in enumerate(sizes):
        direction = np.zeros(dim)
        direction[cluster] = 1.0
        rows.append(direction + 0.05 * rng.standard_normal((size, dim)))
        ids += [cluster] * size
    return np.concatenate(rows), ids


def test_one_slice_per_cluster():
    features, ids = clustered_features()
    chosen = select_support_slices(features, 3)
    assert sorted(ids[i] for i in chosen) == [0, 1, 2]


def test_one_slice_is_the_most_typical_of_the_largest_cluster():
    features, ids = clustered_features()
    (chosen,) = select_support_slices(features, 1)
    assert ids[chosen] == 1  # the largest cluster holds the slices most similar to all others


def test_all_slices_when_k_is_n():
    features, _ = clustered_features((2, 2, 1))
    assert select_support_slices(features, 5) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("k", [0, 21])
def test_k_outside_the_candidates_is_refused(k):
    features, _ = clustered_features()
    with pytest.raises(ValueError, match=str(k)):
        select_support_slices(features, k)


def test_range_parsing():
    assert parse_range("3:7", 10) == range(3, 8)
    assert parse_range(None, 4) == range(4)
    for bad in ("7:3", "3-7", "0:10"):
        with pytest.raises(ValueError, match="range"):
            parse_range(bad, 10)


def test_pooled_embeddings_shape_and_values():
    embeddings = np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8)
    pooled = pooled_embeddings(embeddings, grid=4)
    assert pooled.shape == (2, 3 * 16)
    assert pooled[0, 0] == embeddings[0, 0, :2, :2].mean()


def test_without_a_model_intensity_features_are_used_and_said():
    rng = np.random.default_rng(1)
    stack = np.concatenate([np.full((5, 20, 20), v) for v in (0.0, 100.0, 300.0)]) + rng.normal(0, 1, (15, 20, 20))
    suggestion = suggest_slices(stack, 3, range(15))
    assert "intensity" in suggestion.features
    assert sorted(s // 5 for s in suggestion.slices) == [0, 1, 2]
    assert intensity_features(stack).shape == (15, 16 * 16 + 32)


# Command line -------------------------------------------------------------------------------------
def _image(tmp_path):
    import SimpleITK as sitk

    rng = np.random.default_rng(2)
    array = np.concatenate([np.full((6, 24, 20), v, np.float32) for v in (0.0, 50.0, 200.0)])
    image = sitk.GetImageFromArray(array + rng.normal(0, 1, array.shape).astype(np.float32))
    image.SetSpacing((0.8, 0.8, 2.5))
    path = tmp_path / "image.nrrd"
    sitk.WriteImage(image, str(path))
    return path


def test_cli_suggests_slices_and_writes_json(tmp_path, capsys):
    import json

    from SAMFewShotLib.cli.main import main

    out = tmp_path / "suggestion.json"
    assert main(["suggest", str(_image(tmp_path)), "--k", "3", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert sorted(s // 6 for s in result["slices"]) == [0, 1, 2] and "intensity" in result["features"]
    assert "Annotate these axial slices" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [(["--k", "19"], "19"), (["--range", "5:40"], "5:40")])
def test_cli_refuses_bad_k_and_range(tmp_path, capsys, args, message):
    from SAMFewShotLib.cli.main import main

    assert main(["suggest", str(_image(tmp_path)), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
