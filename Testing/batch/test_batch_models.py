"""End to end through the real models: a reference image + sparse annotation (propagated once,
registered to every case with elastix), an atlas bundle (.zip) and a few-shot head (.sfs, tiny
random SAM)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import SAMFewShotLib.cli.main as cli
from SAMFewShotLib.batch.inputs import expand_inputs
from SAMFewShotLib.batch.models import load_model
from SAMFewShotLib.batch.pipeline import run_batch
from SAMFewShotLib.metrics import dice
from SAMFewShotLib.volume import LabelVolume, Segment, Volume
from SAMFewShotLib.volume_io import read_labels, read_volume, write_labels, write_volume
from Testing.phantoms import ellipsoid, render

SHAPE = (24, 40, 40)


def phantom(tmp_path, name, center, radii, seed, **geometry):
    truth = ellipsoid(center, radii, SHAPE)
    image = Volume(render(truth, seed), **geometry)
    write_volume(image, tmp_path / f"{name}.nii.gz")
    return image, truth


def run_json(args, capsys) -> tuple[int, list[dict]]:
    code = cli.main(["batch", *map(str, args), "--progress", "json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return code, [line for line in lines if "case" in line]


#: Registration settings small enough for a 24 x 40 x 40 test volume (a few seconds per case).
QUICK_REGISTRATION = {"affine_resolutions": 2, "affine_iterations": 60, "bspline_resolutions": 1,
                      "bspline_iterations": 60, "spatial_samples": 1024}


@pytest.mark.slow
def test_a_reference_annotation_is_propagated_once_and_registered_to_each_case(tmp_path):
    reference, truth = phantom(tmp_path, "reference", (12, 20, 20), (7, 11, 13), 0, spacing=(1.0, 1.0, 2.0))
    drawn = np.zeros(SHAPE, np.uint8)
    for z in (8, 12, 16):
        drawn[z][truth[z]] = 1
    write_labels(LabelVolume(reference.with_array(drawn), (Segment(1, "organ", (1.0, 0.5, 0.0)),)), tmp_path / "drawn.seg.nrrd")
    (tmp_path / "in").mkdir()
    cases = {
        "shifted": phantom(tmp_path / "in", "shifted", (11, 18, 22), (7, 11, 13), 1, spacing=(1.0, 1.0, 2.0), origin=(5.0, -3.0, 10.0)),
        "larger": phantom(tmp_path / "in", "larger", (12, 21, 19), (8, 13, 14), 2, spacing=(0.9, 0.9, 2.2)),
    }
    out = tmp_path / "out"
    model = load_model(str(tmp_path / "reference.nii.gz"), out_dir=out, annotation=str(tmp_path / "drawn.seg.nrrd"),
                       engine="register", registration=QUICK_REGISTRATION)
    summary = run_batch(expand_inputs([str(tmp_path / "in")]), model, out, workers=1)
    assert [r.status for r in summary.results] == ["done", "done"], summary.results
    for name, (image, case_truth) in cases.items():
        labels = read_labels(out / f"{name}.seg.nrrd")
        assert image.same_grid(labels.volume)
        assert labels.segment(1).name == "organ"
        assert dice(labels.array == 1, case_truth) > 0.85, name
    propagated = list((out / "reference").glob("reference_*.seg.nrrd"))
    assert len(propagated) == 1 and dice(read_labels(propagated[0]).array == 1, truth) > 0.85
    again = load_model(str(tmp_path / "reference.nii.gz"), out_dir=out, annotation=str(tmp_path / "drawn.seg.nrrd"),
                       engine="register", registration=QUICK_REGISTRATION)
    assert again.digest == model.digest
    assert [r.status for r in run_batch(expand_inputs([str(tmp_path / "in")]), again, out).results] == ["skipped"] * 2


@pytest.mark.slow
def test_an_atlas_bundle_segments_every_case_through_the_command_line(tmp_path, capsys):
    from SAMFewShotLib.atlas.bundle import write_bundle

    atlas, truth = phantom(tmp_path, "atlas", (12, 20, 20), (7, 11, 13), 0, spacing=(1.0, 1.0, 2.0))
    atlas_labels = LabelVolume(atlas.with_array(truth.astype(np.uint8)), (Segment(1, "organ", (0.2, 0.4, 1.0)),))
    bundle = write_bundle(tmp_path / "organ.zip", name="organ", atlases=[(atlas, atlas_labels)], parameters=QUICK_REGISTRATION)
    (tmp_path / "in").mkdir()
    cases = {
        "a": phantom(tmp_path / "in", "a", (12, 19, 21), (7, 12, 12), 3, spacing=(1.1, 0.9, 2.0), origin=(-4.0, 2.0, 0.0)),
        "b": phantom(tmp_path / "in", "b", (11, 21, 20), (6, 11, 14), 4, spacing=(1.0, 1.0, 2.5)),
    }
    args = [tmp_path / "in", "--model", bundle, "-o", tmp_path / "out", "--workers", "1"]
    code, lines = run_json(args, capsys)
    assert code == 0, lines
    assert sorted((line["case"], line["status"]) for line in lines) == [("a", "done"), ("b", "done")]
    for name, (image, case_truth) in cases.items():
        labels = read_labels(tmp_path / "out" / f"{name}.seg.nrrd")
        assert image.same_grid(labels.volume)
        assert labels.segment(1).name == "organ" and labels.segment(1).color == pytest.approx((0.2, 0.4, 1.0))
        assert dice(labels.array == 1, case_truth) > 0.85, name
    code, lines = run_json(args, capsys)
    assert code == 0 and [line["status"] for line in lines] == ["skipped", "skipped"]


def test_a_few_shot_head_segments_every_case(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    from SAMFewShotLib.annotation import SparseAnnotation
    from SAMFewShotLib.fewshot import save_head, train_head
    from SAMFewShotLib.fewshot.training import TrainingConfig
    from Testing.tiny_sam import save_tiny_checkpoint

    torch.manual_seed(0)
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pth")
    shape = (2, 24, 24)
    truth = ellipsoid((1, 12, 12), (2, 7, 7), shape)
    image = Volume(render(truth, 0), spacing=(1.0, 1.0, 3.0))
    drawn = np.zeros(shape, np.uint8)
    drawn[0][truth[0]] = 1
    labels = LabelVolume(image.with_array(drawn), (Segment(1, "organ"),))
    fit = train_head(image, SparseAnnotation.from_labels(labels, axis=0), checkpoint=str(checkpoint), device="cpu",
                     config=TrainingConfig(iterations=2))
    save_head(fit.head, tmp_path / "organ.sfs")
    (tmp_path / "in").mkdir()
    for n, spacing in enumerate(((1.0, 1.0, 3.0), (0.7, 0.8, 2.0))):
        write_volume(Volume(render(truth, n + 1), spacing=spacing, origin=(n, 2.0 * n, 0.0)), tmp_path / "in" / f"c{n}.nii.gz")
    code, lines = run_json([tmp_path / "in", "--model", tmp_path / "organ.sfs", "--checkpoint", checkpoint,
                            "-o", tmp_path / "out", "--workers", "1", "--device", "cpu"], capsys)
    assert code == 0, lines
    assert [line["status"] for line in lines] == ["done", "done"]
    second = read_labels(tmp_path / "out" / "c1.seg.nrrd")
    np.testing.assert_allclose(second.volume.spacing, (0.7, 0.8, 2.0), rtol=1e-6)
    np.testing.assert_allclose(second.volume.origin, (1.0, 2.0, 0.0), atol=1e-6)
    assert [s.name for s in second.segments] == ["organ"]

    # in one worker process SAM is loaded once for all cases, and the results do not change
    from SAMFewShotLib.batch import models
    from SAMFewShotLib.fewshot import apply as fewshot_apply

    loads = []
    real_load = fewshot_apply.load_base_model
    monkeypatch.setattr(fewshot_apply, "load_base_model", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    monkeypatch.setattr(models, "_LOADED", {})
    model = models.HeadModel(path=str(tmp_path / "organ.sfs"), checkpoint=str(checkpoint), digest="d", device="cpu")
    cases = [read_volume(tmp_path / "in" / f"c{n}.nii.gz") for n in (0, 1)]
    results = [model.segment(case) for case in cases]
    assert len(loads) == 1
    np.testing.assert_array_equal(results[1].array, second.array)
