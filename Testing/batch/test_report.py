"""qc.csv and qc.html: one row per case and label, flags, failures, montages."""

from __future__ import annotations

import csv

from SAMFewShotLib.batch.case_task import CaseResult
from SAMFewShotLib.batch.qc import LabelStats
from SAMFewShotLib.batch.report import CSV_COLUMNS, write_report


def results(folder):
    liver = LabelStats(1, "liver", 1000, 1.5, 1)
    spleen = LabelStats(2, "spleen <b>", 0, 0.0, 0)
    return [
        CaseResult(
            "a",
            "done",
            2.0,
            (str(folder / "a.seg.nrrd"),),
            None,
            (liver, spleen),
            str(folder / "montages" / "a.png"),
            1.25,
        ),
        CaseResult("b", "failed", 0.5, error="b.nii.gz: has 3 non-finite voxels"),
    ]


def test_the_csv_has_a_row_per_case_and_label_with_relative_paths_and_flags(tmp_path):
    csv_path, _ = write_report(tmp_path, results(tmp_path), {("a", 2): ["empty"]})
    rows = list(csv.DictReader(csv_path.open()))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["case"], r["status"], r["label"], r["flags"]) for r in rows] == [
        ("a", "done", "1", ""), ("a", "done", "2", "empty"), ("b", "failed", "", "")
    ]
    assert rows[0]["volume_ml"] == "1.500" and rows[0]["seconds"] == "1.25"
    assert rows[0]["output"] == "a.seg.nrrd" and rows[0]["montage"] == "montages/a.png"
    assert rows[2]["error"] == "b.nii.gz: has 3 non-finite voxels"


def test_the_html_page_shows_montages_flags_and_errors_escaped(tmp_path):
    _, html_path = write_report(tmp_path, results(tmp_path), {("a", 2): ["empty"]})
    page = html_path.read_text()
    assert "<img src='montages/a.png'" in page
    assert "spleen &lt;b&gt;" in page and "spleen <b>" not in page
    assert "<td class='flag'>empty</td>" in page
    assert "b.nii.gz: has 3 non-finite voxels" in page
    assert "2 cases: 1 done, 0 skipped (already done), 1 failed; 1 with flags" in page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qc.csv", "qc.html"]
