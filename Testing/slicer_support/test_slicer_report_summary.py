"""Tests of slicer_support/report_summary.py: expected Dice and slice confidence for the preview."""

from __future__ import annotations

import pytest

from SAMFewShotLib.slicer_support.report_summary import expected_dice_text, summarize_report


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


# The expected Dice line shown with the result ----------------------------------------------------
def test_expected_dice_text_shows_auto_s_estimate():
    report = {"engine": "auto", "expected_dice": {"1": 0.934}, "annotated_slices": {"1": [3, 9, 15]}}
    assert expected_dice_text(report, "liver") == (
        "Expected Dice of 'liver': 0.93 (estimated by auto from the drawn slices)"
    )


def test_expected_dice_text_after_one_drawn_slice_asks_for_more():
    report = {"engine": "auto:tvl1", "expected_dice": {}, "annotated_slices": {"1": [12]}}
    text = expected_dice_text(report, "spleen")
    assert text == ("Expected Dice of 'spleen': not estimated from one drawn slice: draw 3+ slices "
                    "(auto checks each against the others)")


def test_expected_dice_text_for_an_engine_without_an_estimate_names_auto():
    report = {"engine": "register:dis", "annotated_slices": {"1": [3, 9, 15]}}
    assert expected_dice_text(report, "aorta") == (
        "Expected Dice of 'aorta': not estimated by engine register:dis (the auto engine estimates it)"
    )
    assert "not estimated by engine ?" in expected_dice_text({}, "aorta")


def test_expected_dice_text_of_another_label():
    report = {"engine": "auto", "expected_dice": {"1": 0.5, "4": 0.875}}
    assert ": 0.88 (" in expected_dice_text(report, "kidney", label_value=4)
