"""Tests of slicer_support/batch_cases.py: the per-case lines of ``samfewshot batch --progress
json``, the status table of the Batch panel, and the case names of exported scene volumes."""

from __future__ import annotations

import json

import pytest

from SAMFewShotLib.batch.case_task import CaseResult
from SAMFewShotLib.slicer_support.batch_cases import PENDING, CaseStatus, CaseTable, parse_case_line, unique_case_names


def line(**fields) -> str:
    payload = {"case": "ct_1", "status": "done", "seconds": 12.5, "output": "/out/ct_1.seg.nrrd", "error": None}
    payload.update(fields)
    return json.dumps(payload)


def test_parse_case_line():
    assert parse_case_line(line()) == CaseStatus("ct_1", "done", 12.5, "/out/ct_1.seg.nrrd", None)
    failed = parse_case_line(line(status="failed", output=None, error="ValueError: not 3D"))
    assert (failed.status, failed.output, failed.error, failed.loadable) == (
        "failed",
        None,
        "ValueError: not 3D",
        False,
    )


def test_parse_case_line_reads_what_the_batch_writes():
    """The line the batch command prints for a case (CaseResult.json_line) is read back."""
    result = CaseResult(case="ct_2", status="skipped", seconds=0.01, outputs=["/out/ct_2.seg.nrrd"], error=None)
    status = parse_case_line(json.dumps(result.json_line()))
    assert status == CaseStatus("ct_2", "skipped", 0.01, "/out/ct_2.seg.nrrd", None) and status.loadable


@pytest.mark.parametrize(
    "text",
    ['{"stage": "batch", "done": 1, "total": 4}', "12 cases: 11 done", "", "{not json}", "[1]", line(case=""),
     line(case=3), line(status="running"), 7],
)  # fmt: skip
def test_parse_case_line_ignores_other_lines(text):
    assert parse_case_line(text) is None


@pytest.mark.parametrize("seconds", [None, -1, "3", float("nan"), True])
def test_parse_case_line_reads_bad_seconds_as_zero(seconds):
    assert parse_case_line(line(seconds=seconds)).seconds == 0.0  # json writes and reads NaN


def test_cells():
    assert CaseStatus("a", "done", 3.14159, "/o/a.seg.nrrd").cells() == ("a", "done", "3.1", "/o/a.seg.nrrd")
    assert CaseStatus("b", "failed", 2.0, None, "boom").cells() == ("b", "failed", "2.0", "boom")
    assert CaseStatus("c", PENDING).cells() == ("c", PENDING, "", "")


def test_case_table_keeps_order_and_latest_status():
    table = CaseTable(["ct_1", "ct_2"])
    assert [row.status for row in table.rows] == [PENDING, PENDING]
    changed = table.update(
        [line(case="ct_2", status="failed", output=None, error="x"), '{"stage": "batch"}', line(case="mr_9")]
    )
    assert [status.case for status in changed] == ["ct_2", "mr_9"]
    assert [(row.case, row.status) for row in table.rows] == [("ct_1", PENDING), ("ct_2", "failed"), ("mr_9", "done")]
    assert table.row_index("mr_9") == 2
    assert table.counts() == {"done": 1, "failed": 1, "skipped": 0, PENDING: 1}
    assert table.summary() == "1 done, 1 failed, 0 skipped, 1 pending"
    assert [row.case for row in table.loadable()] == ["mr_9"]
    table.update([line(case="ct_2")])  # a later line for the same case replaces it
    assert table.rows[1].status == "done" and table.row_index("ct_2") == 1
    with pytest.raises(ValueError, match="'nope'"):
        table.row_index("nope")


def test_unique_case_names():
    names = unique_case_names(["CT chest", "CT_chest", "ct chest", "MR/T1 (post)", "", "...", "a.b"])
    assert names == ["CT_chest", "CT_chest_2", "ct_chest_3", "MR_T1_post", "volume", "volume_2", "a.b"]
    assert len({n.lower() for n in names}) == len(names)
