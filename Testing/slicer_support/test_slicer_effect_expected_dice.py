"""The Propagate effect shows auto's expected Dice with its preview, as the module's preview does
(``report_summary.expected_dice_text``), and clears it with the preview. Runs the effect's file
with the stand-in Slicer modules of ``test_slicer_effect_flow`` and a finished result, no child."""

from __future__ import annotations

import types

from Testing.slicer_support.test_slicer_effect_flow import _Node, _ScriptedEffect, effect_module  # noqa: F401


def _effect(effect_module):  # noqa: F811 (the fixture's value)
    segmentationNode = _Node("Segmentation")
    editorNode = types.SimpleNamespace(
        GetSourceVolumeNode=lambda: None,
        GetSegmentationNode=lambda: segmentationNode,
        GetSelectedSegmentID=lambda: "Segment_1",
    )
    effect = effect_module.SegmentEditorEffect(_ScriptedEffect(editorNode))
    effect.setupOptionsFrame()
    effect.setMRMLDefaults()
    preview = types.SimpleNamespace(GetScene=lambda: object())
    effect.propagation.createPreview = lambda result, threshold: (preview, types.SimpleNamespace(low_slices=[]))
    effect.scene.removePreview = lambda node: None
    return effect


def _result(report):
    return types.SimpleNamespace(report=report, segmentName="liver", engine=report["engine"], seconds=12.0,
                                 volumeNode=None, axis=0)


def test_effect_shows_auto_s_expected_dice_with_the_preview(effect_module):  # noqa: F811
    effect = _effect(effect_module)
    assert effect.expectedDiceLabel.text == ""
    effect.showResult(_result({"engine": "auto", "expected_dice": {"1": 0.934}, "annotated_slices": {"1": [3, 9, 15]}}))
    assert effect.expectedDiceLabel.text == "Expected Dice of 'liver': 0.93 (estimated by auto from the drawn slices)"
    effect.onCancel()
    assert effect.expectedDiceLabel.text == ""


def test_effect_says_why_there_is_no_expected_dice(effect_module):  # noqa: F811
    effect = _effect(effect_module)
    effect.showResult(_result({"engine": "auto", "expected_dice": {}, "annotated_slices": {"1": [12]}}))
    assert "from one drawn slice" in effect.expectedDiceLabel.text
    effect.showResult(_result({"engine": "interpolate", "expected_dice": {}, "annotated_slices": {"1": [3, 9]}}))
    assert "not estimated by engine interpolate" in effect.expectedDiceLabel.text
