"""Engine ``sam`` with a tiny random-weight SAM: the mechanics of SAM-MPA refinement.

Random weights say nothing about segmentation quality, so these tests check what the engine
does, not how well it segments: which slices it encodes, the cache, the prompts it decodes, the
geometry and the annotated slices of its output, its counters.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from SAMFewShotLib.annotation import SparseAnnotation
from SAMFewShotLib.engines import make_engine
from SAMFewShotLib.sam.embedding_cache import EmbeddingCache
from SAMFewShotLib.volume import LabelVolume, Volume
from Testing import phantoms, tiny_sam

SHAPE = (10, 36, 44)  # (z, y, x)
DRAWN = [2, 7]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sam_engine")
    checkpoint = tiny_sam.save_tiny_checkpoint(folder / "tiny.pth")
    ball = phantoms.ellipsoid((5, 18, 14), (4, 9, 8), SHAPE)
    blob = phantoms.ellipsoid((4, 18, 33), (3, 7, 6), SHAPE)
    image = Volume(
        phantoms.render(ball | blob, 0), spacing=(0.9, 0.9, 2.0), origin=(3.0, -2.0, 7.0),
        direction=(0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0),
    )
    labels = np.zeros(SHAPE, np.uint8)
    for z in DRAWN:
        labels[z][ball[z]] = 1
    for z in (2, 5):
        labels[z][blob[z]] = 2
    annotation = SparseAnnotation.from_labels(LabelVolume(image.with_array(labels)), axis=0)
    cache = EmbeddingCache(directory=folder / "embeddings")
    return image, annotation, checkpoint, cache, folder


def run(case, **options):
    image, annotation, checkpoint, cache, _ = case
    return make_engine("sam", checkpoint=str(checkpoint), cache=cache, **options).propagate(image, annotation)


def needed_slices(prediction_of_coarse, annotation) -> set[int]:
    covered = set()
    for value in annotation.label_values:
        present = np.flatnonzero((prediction_of_coarse.labels.array == value).any(axis=(1, 2)))
        covered |= {int(z) for z in present} - set(annotation.annotated_slices(value))
    return covered


def test_first_run_encodes_only_the_slices_the_coarse_mask_covers(case):
    image, annotation, *_ = case
    coarse = make_engine("register").propagate(image, annotation)
    first = run(case)
    assert first.counters["slices_encoded"] == len(needed_slices(coarse, annotation)) > 0
    assert first.counters["encoder_calls"] >= 1 and first.counters["cache_hits"] == 0


def test_second_run_makes_no_encoder_call(case):
    again = run(case)
    assert again.counters["encoder_calls"] == 0 and again.counters["slices_encoded"] == 0
    assert again.counters["cache_hits"] > 0


def test_a_fresh_cache_object_reads_the_disk_cache(case):
    image, annotation, checkpoint, _, folder = case
    fresh = EmbeddingCache(directory=folder / "embeddings")
    prediction = make_engine("sam", checkpoint=str(checkpoint), cache=fresh).propagate(image, annotation)
    assert prediction.counters["encoder_calls"] == 0


def test_output_keeps_the_grid_and_the_drawn_slices(case):
    image, annotation, *_ = case
    prediction = run(case)
    assert prediction.labels.volume.same_grid(image)
    for value in annotation.label_values:
        for z in annotation.annotated_slices(value):
            np.testing.assert_array_equal(prediction.labels.array[z] == value, annotation.labels.array[z] == value)


def test_refinement_rounds_add_decoder_calls(case):
    none, two = run(case, refine=0), run(case, refine=2)
    assert two.counters["decoder_calls"] == 3 * none.counters["decoder_calls"] > 0


def test_interpolation_can_give_the_coarse_mask(case):
    image, annotation, checkpoint, cache, _ = case
    prediction = make_engine("sam:interpolate", checkpoint=str(checkpoint), cache=cache).propagate(image, annotation)
    assert prediction.counters["coarse_engine"] == "interpolate"
    # Fill between slices covers only slices between the drawn ones: nothing to refine outside.
    outside = [z for z in range(SHAPE[0]) if not DRAWN[0] <= z <= DRAWN[-1]]
    assert not (prediction.labels.array[outside] == 1).any()


@pytest.mark.parametrize(
    "options, message",
    [({"checkpoint": None}, "--checkpoint"), ({"refine": -1}, "-1"), ({"device": "tpu"}, "tpu")],
)
def test_bad_options_are_refused(case, options, message):
    settings = {"checkpoint": str(case[2]), **options}
    with pytest.raises(ValueError, match=message):
        make_engine("sam", **settings)


def test_a_second_structure_encodes_only_the_slices_not_encoded_yet(case, tmp_path):
    image, annotation, checkpoint, _, _ = case
    cache = EmbeddingCache(directory=tmp_path / "embeddings")
    labels = annotation.labels.array

    def only(value):
        single = np.where(labels == value, labels, 0).astype(labels.dtype)
        return SparseAnnotation.from_labels(annotation.labels.with_array(single), axis=0)

    first, second = only(1), only(2)
    engine = make_engine("sam", checkpoint=str(checkpoint), cache=cache)
    engine.propagate(image, first)
    run_second = engine.propagate(image, second)
    coarse_first = needed_slices(make_engine("register").propagate(image, first), first)
    coarse_second = needed_slices(make_engine("register").propagate(image, second), second)
    assert run_second.counters["slices_encoded"] == len(coarse_second - coarse_first)
    assert run_second.counters["cache_hits"] == len(coarse_second & coarse_first) > 0


def test_suggest_on_sam_embeddings(case, capsys):
    from SAMFewShotLib.cli.main import main
    from SAMFewShotLib.volume_io import write_volume

    image, _, checkpoint, _, folder = case
    path = folder / "image.nrrd"
    write_volume(image, path)
    assert main(["suggest", str(path), "--k", "2", "--range", "3:6", "--checkpoint", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "pooled SAM image embeddings" in out


def test_cli_runs_the_sam_engine_and_reports_its_counters(case, tmp_path):
    import json
    import os
    import subprocess
    import sys

    from SAMFewShotLib.volume_io import write_labels, write_volume

    image, annotation, checkpoint, _, _ = case
    write_volume(image, tmp_path / "image.nrrd")
    write_labels(annotation.labels, tmp_path / "drawn.nrrd")
    env = dict(os.environ, SAMFEWSHOT_HOME=str(tmp_path / "home"))
    command = [sys.executable, "-m", "SAMFewShotLib", "propagate", str(tmp_path / "image.nrrd"),
               str(tmp_path / "drawn.nrrd"), "--engine", "sam", "--checkpoint", str(checkpoint),
               "--progress", "none"]
    first = subprocess.run([*command, "-o", str(tmp_path / "a.nrrd"), "--report", str(tmp_path / "a.json")],
                           capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([*command, "-o", str(tmp_path / "b.nrrd"), "--report", str(tmp_path / "b.json")],
                            capture_output=True, text=True, env=env)
    assert second.returncode == 0, second.stderr
    a, b = (json.loads((tmp_path / name).read_text()) for name in ("a.json", "b.json"))
    assert a["counters"]["slices_encoded"] > 0 and a["counters"]["encoder_calls"] > 0
    assert b["counters"]["encoder_calls"] == 0 and b["counters"]["cache_hits"] == a["counters"]["slices_encoded"]
    assert {"encode", "decode", "coarse", "load model", "total"} <= set(a["seconds"])


@pytest.mark.parametrize("problem", ["missing", "truncated"])
def test_cli_refuses_a_bad_checkpoint_in_one_line(case, tmp_path, problem):
    import subprocess
    import sys

    from SAMFewShotLib.volume_io import write_labels, write_volume

    image, annotation, checkpoint, _, _ = case
    write_volume(image, tmp_path / "image.nrrd")
    write_labels(annotation.labels, tmp_path / "drawn.nrrd")
    bad = tmp_path / "bad.pth"
    if problem == "truncated":
        data = checkpoint.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    result = subprocess.run(
        [sys.executable, "-m", "SAMFewShotLib", "propagate", str(tmp_path / "image.nrrd"), str(tmp_path / "drawn.nrrd"),
         "-o", str(tmp_path / "out.nrrd"), "--engine", "sam", "--checkpoint", str(bad), "--progress", "none"],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.pth" in lines[0]
    assert not (tmp_path / "out.nrrd").exists()
