"""Tests of slicer_support/selection.py: the segment-selector race (segment before segmentation)."""

from SAMFewShotLib.slicer_support.selection import consistent_segment_id


def test_a_segment_id_of_another_segmentation_is_never_stored():
    new_segmentation = ["Segment_7", "Segment_8"]
    assert consistent_segment_id(new_segmentation, "Segment_1") == "Segment_7"  # the old segmentation's ID
    assert consistent_segment_id(new_segmentation, "Segment_8") == "Segment_8"
    assert consistent_segment_id([], "Segment_1") == ""
    assert consistent_segment_id(new_segmentation, None) == "Segment_7"
