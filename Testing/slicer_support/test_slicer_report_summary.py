"""Tests of slicer_support/report_summary.py: expected Dice and slice confidence for the preview."""

from __future__ import annotations

import pytest

from SAMFewShotLib.slicer_support.report_summary import summarize_report


def test_summary_of_label_1_lists_slices_with_evidence_lowest_first():
    report = {"expected_dice": {"1": 0.93}, "slice_confidence": {"1": [0.0, 0.9, 1.0, None, 0.4, 0.0]}, "axis": 0}
    dice, slices = summarize_report(report)
    assert dice == pytest.approx(0.93)
    assert slices == [(4, 0.4), (1, 0.9), (2, 1.0)]


def test_summary_of_another_label_and_ties():
    report = {"expected_dice": {"1": 0.5}, "slice_confidence": {"7": [0.5, 0.2, 0.5]}}
    assert summarize_report(report, label_value=7) == (None, [(1, 0.2), (0, 0.5), (2, 0.5)])


def test_summary_of_an_empty_report():
    assert summarize_report({}) == (None, [])
    assert summarize_report({"expected_dice": None, "slice_confidence": None}) == (None, [])
