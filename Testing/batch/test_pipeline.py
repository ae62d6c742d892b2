"""run_batch on the local process pool: outputs in each case's geometry, resume, --force,
failures isolated, inputs untouched."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from SAMFewShotLib.batch.inputs import expand_inputs
from SAMFewShotLib.batch.pipeline import run_batch
from SAMFewShotLib.volume_io import read_labels, read_volume, write_volume
from Testing.batch.batch_helpers import BRIGHT, ThresholdModel, write_cases


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """Four cases with different geometry, case 3 fails; the first run and its inputs' hashes."""
    root = tmp_path_factory.mktemp("batch")
    write_cases(root / "in", 4)
    before = digests(root / "in")
    cases = expand_inputs([str(root / "in")])
    lines = []
    summary = run_batch(
        cases, ThresholdModel(fail_tags=(3,)), root / "out", formats=("seg.nrrd", "nii.gz"), workers=2,
        on_result=lambda r: lines.append(r.json_line()),
    )
    return root, cases, summary, lines, before


def test_every_case_gets_exactly_one_result_in_case_order(first_run):
    _, cases, summary, lines, _ = first_run
    assert [r.case for r in summary.results] == ["case1", "case2", "case3", "case4"]
    assert sorted(line["case"] for line in lines) == ["case1", "case2", "case3", "case4"]
    assert [r.status for r in summary.results] == ["done", "done", "failed", "done"]


def test_a_failing_case_is_logged_and_does_not_stop_the_others(first_run):
    root, _, summary, lines, _ = first_run
    failed = next(line for line in lines if line["case"] == "case3")
    assert failed == {"case": "case3", "status": "failed", "seconds": failed["seconds"], "output": None,
                      "error": "test model refuses case tag 3"}
    assert "ValueError: test model refuses case tag 3" in (root / "out" / "logs" / "case3.log").read_text()
    assert not (root / "out" / "case3.seg.nrrd").exists() and not (root / "out" / "records" / "case3.json").exists()


def test_outputs_keep_each_cases_own_geometry_in_both_formats(first_run):
    root, cases, _, _, _ = first_run
    for case in cases:
        if case.case_id == "case3":
            continue
        image = read_volume(case.path)
        for suffix in (".seg.nrrd", ".nii.gz"):
            labels = read_labels(root / "out" / f"{case.case_id}{suffix}")
            assert image.same_grid(labels.volume), (case.case_id, suffix)
            np.testing.assert_array_equal(labels.array, (image.array > 100).astype(np.uint8))
    assert len({read_volume(c.path).grid_text() for c in cases}) == 4


def test_the_report_and_montages_are_written(first_run):
    root, _, summary, _, _ = first_run
    assert summary.csv == root / "out" / "qc.csv" and summary.html.is_file()
    text = summary.csv.read_text()
    assert "case2,done,2,never,0.000,0,empty" in text
    assert sorted(p.name for p in (root / "out" / "montages").iterdir()) == ["case1.png", "case2.png", "case4.png"]
    record = json.loads((root / "out" / "records" / "case2.json").read_text())
    assert record["outputs"] == ["case2.seg.nrrd", "case2.nii.gz"]
    assert record["labels"][0]["voxels"] == int(np.count_nonzero(read_volume(root / "in" / "case2.nii.gz").array == BRIGHT))


def test_inputs_are_untouched(first_run):
    root, _, _, _, before = first_run
    assert digests(root / "in") == before


def test_a_second_run_skips_done_cases_and_retries_the_failed_one(first_run, tmp_path):
    root, cases, _, _, _ = first_run
    out = root / "out"
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.seg.nrrd")}
    summary = run_batch(cases, ThresholdModel(), out, formats=("seg.nrrd", "nii.gz"), workers=1)
    assert [r.status for r in summary.results] == ["skipped", "skipped", "done", "skipped"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.seg.nrrd") if p.name != "case3.seg.nrrd"} == stamps
    assert not (out / "logs" / "case3.log").exists()
    skipped = summary.results[0]
    assert skipped.labels[0].voxels > 0 and skipped.compute_seconds is not None


def test_a_changed_input_or_model_or_force_recomputes(tmp_path):
    paths = write_cases(tmp_path / "in", 2)
    cases = expand_inputs([str(tmp_path / "in")])
    model = ThresholdModel()
    run_batch(cases, model, tmp_path / "out", workers=1)
    os.utime(paths[1], ns=(1, 1))
    assert [r.status for r in run_batch(cases, model, tmp_path / "out", workers=1).results] == ["skipped", "done"]
    other = ThresholdModel(threshold=50, digest="threshold-50")
    assert [r.status for r in run_batch(cases, other, tmp_path / "out", workers=1).results] == ["done", "done"]
    assert [r.status for r in run_batch(cases, other, tmp_path / "out", workers=1, force=True).results] == ["done", "done"]
    asked_more = run_batch(cases, other, tmp_path / "out", formats=("seg.nrrd", "nii.gz"), workers=1)
    assert [r.status for r in asked_more.results] == ["done", "done"]


def test_an_output_that_would_overwrite_an_input_is_refused(tmp_path):
    write_cases(tmp_path, 1)
    cases = expand_inputs([str(tmp_path / "case1.nii.gz")])
    with pytest.raises(ValueError, match="would overwrite an input"):
        run_batch(cases, ThresholdModel(), tmp_path, formats=("nii.gz",))


def test_an_output_folder_that_is_a_file_is_refused(tmp_path):
    write_cases(tmp_path, 1)
    write_volume(read_volume(tmp_path / "case1.nii.gz"), tmp_path / "x.nii.gz")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        run_batch(expand_inputs([str(tmp_path / "case1.nii.gz")]), ThresholdModel(), tmp_path / "x.nii.gz")
