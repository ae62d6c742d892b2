"""Tests of bench.py's own functions: argument parsing, run_bench's checks, the table and the JSON.

(slice_positions / simulate_annotation are tested in test_demo.py; the command in test_cli.py.)
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from SAMFewShotLib.bench import BenchRecord, BenchResult, run_bench
from SAMFewShotLib.cli.arguments import parse_ints, parse_labels
from SAMFewShotLib.volume import LabelVolume, Segment, Volume

SHAPE = (20, 24, 26)  # (z, y, x)
SPACING = (0.8, 0.9, 2.5)  # (x, y, z) mm
ORIGIN = (3.0, -4.0, 5.0)


def phantom() -> tuple[Volume, LabelVolume]:
    """Two boxes: label 2 ("liver") spans z 4..15, label 5 (unnamed) z 8..11."""
    labels = np.zeros(SHAPE, np.uint8)
    labels[4:16, 3:12, 3:12] = 2
    labels[8:12, 14:20, 14:22] = 5
    rng = np.random.default_rng(0)
    image = (40 + 80 * (labels > 0) + rng.normal(0, 3, SHAPE)).astype(np.float32)
    volume = Volume(image, SPACING, ORIGIN)
    return volume, LabelVolume(volume.with_array(labels), (Segment(2, "liver", (1.0, 0.0, 0.0)),))


# Parsing -----------------------------------------------------------------------------------------
def test_parse_ints():
    assert parse_ints("1, 3,5,", "--k values") == [1, 3, 5]


@pytest.mark.parametrize("text, bad", [("1,x", "'x'"), ("3,0", "0"), ("-2", "-2"), ("2.5", "'2.5'"), (" , ", "' , '")])
def test_parse_ints_names_the_bad_value(text, bad):
    with pytest.raises(ValueError, match="--k values") as error:
        parse_ints(text, "--k values")
    assert bad in str(error.value)


def test_parse_labels_takes_names_from_the_text_or_the_reference():
    _, reference = phantom()
    assert parse_labels("5=spleen,2", reference) == {5: "spleen", 2: "liver"}
    assert parse_labels("5", reference) == {5: "label 5"}


@pytest.mark.parametrize("text", ["liver", "2=liver,x=y", ""])
def test_parse_labels_refuses_bad_text(text):
    _, reference = phantom()
    with pytest.raises(ValueError):
        parse_labels(text, reference)


# run_bench: checks before any engine runs --------------------------------------------------------
def test_run_bench_refuses_an_absent_label():
    image, reference = phantom()
    with pytest.raises(ValueError, match=r"Label 7 is not in the reference \(it holds \[2, 5\]\)"):
        run_bench(image, reference, {7: "x"}, [1], ["register"])


def test_run_bench_refuses_k_larger_than_a_structure():
    image, reference = phantom()
    with pytest.raises(ValueError, match=r"label 5.*k = 5 .*8\.\.11 \(4 slices\)"):
        run_bench(image, reference, {2: "liver", 5: "small"}, [3, 5], ["register"])


def test_run_bench_refuses_another_grid():
    image, reference = phantom()
    moved = Volume(image.array, SPACING, (3.0, -4.0, 6.0))
    with pytest.raises(ValueError, match="reference grid .* differs from the image grid"):
        run_bench(moved, reference, {2: "liver"}, [1], ["register"])


def test_run_bench_refuses_unknown_engines():
    image, reference = phantom()
    with pytest.raises(ValueError, match="'bogus'"):
        run_bench(image, reference, {2: "liver"}, [1], ["register", "bogus"])


# run_bench: a real run ---------------------------------------------------------------------------
def test_run_bench_scores_every_engine_label_and_k():
    image, reference = phantom()
    calls = []
    result = run_bench(
        image, reference, {2: "liver", 5: "small"}, [1, 3], ["register"],
        progress=lambda stage, done, total: calls.append((stage, done, total)),
    )
    assert [(r.label, r.k) for r in result.records] == [(2, 1), (2, 3), (5, 1), (5, 3)]
    assert calls == [("bench", i, 4) for i in range(1, 5)]
    for record in result.records:
        assert record.engine == "register" and 0.0 <= record.dice <= 1.0 and record.seconds > 0
    assert [r.slices for r in result.records] == [[10], [6, 10, 13], [10], [9, 10, 11]]
    # 8 + 3 (2i + 1) / 6 = 8.5, 9.5, 10.5 round half up to 9, 10, 11: k = 3 gives 3 slices.
    liver_3 = result.records[1]
    assert liver_3.slices == [6, 10, 13] and liver_3.name == "liver"  # 4 + 11 (2i + 1) / 6, rounded
    assert liver_3.dice > 0.9  # a box: registration keeps it


# BenchResult -------------------------------------------------------------------------------------
def record(engine: str, label: int, name: str, k: int, dice: float, hd95: float, seconds: float) -> BenchRecord:
    return BenchRecord(engine, label, name, k, list(range(k)), dice, dice, hd95, hd95 / 2, seconds)


def test_summary_table_and_json():
    result = BenchResult(
        records=[
            record("interpolate", 2, "liver", 1, 0.5, 4.0, 1.0),
            record("interpolate", 5, "small", 1, 0.7, math.inf, 3.0),
            record("register", 2, "liver", 1, 0.9, 2.0, 0.5),
            record("register", 5, "small", 1, 0.8, 1.0, 0.25),
        ],
        image="image.nii.gz",
        reference="reference.nii.gz",
    )
    summary = result.summary()
    assert [(row["engine"], row["k"]) for row in summary] == [("interpolate", 1), ("register", 1)]
    assert summary[0]["mean_dice"] == pytest.approx(0.6) and summary[0]["mean_hd95"] == 4.0  # inf left out
    assert summary[0]["seconds_per_structure"] == pytest.approx(2.0)
    assert summary[1]["dice"] == {"liver": 0.9, "small": 0.8}

    lines = result.table().splitlines()
    assert lines[0] == "| engine | k | liver | small | mean Dice | mean HD95 mm | s / structure |"
    assert lines[1] == "|" + "---|" * 7
    assert lines[2] == "| interpolate | 1 | 0.500 | 0.700 | **0.600** | 4.0 | 2.0 |"
    assert lines[3] == "| register | 1 | 0.900 | 0.800 | **0.850** | 1.5 | 0.4 |"

    data = json.loads(json.dumps(result.as_json(), allow_nan=False))  # strict JSON: no inf
    assert data["image"] == "image.nii.gz" and data["reference"] == "reference.nii.gz"
    assert data["records"][1]["hd95"] is None and data["records"][1]["assd"] is None
    assert data["records"][0]["hd95"] == 4.0 and len(data["summary"]) == 2


def test_table_marks_a_missing_structure():
    result = BenchResult(records=[record("register", 2, "liver", 3, 0.9, 2.0, 0.5),
                                  record("register", 5, "small", 1, 0.8, 1.0, 0.5)])
    lines = result.table().splitlines()
    assert lines[2] == "| register | 1 | - | 0.800 | **0.800** | 1.0 | 0.5 |"
    assert lines[3] == "| register | 3 | 0.900 | - | **0.900** | 2.0 | 0.5 |"


# Expected Dice against the true Dice -------------------------------------------------------------
def auto_record(name: str, k: int, dice: float, expected: float | None) -> BenchRecord:
    out = record("auto", 1 if name == "liver" else 2, name, k, dice, 1.0, 1.0)
    out.expected_dice = expected
    return out


def test_expected_dice_error_mean_worst_and_the_structures_without_an_estimate():
    result = BenchResult(records=[
        auto_record("liver", 1, 0.90, None),
        auto_record("kidney", 1, 0.80, None),
        auto_record("liver", 3, 0.95, 0.97),  # +0.02
        auto_record("kidney", 3, 0.90, 0.84),  # -0.06: the worst
        record("register", 1, "liver", 3, 0.9, 2.0, 0.5),  # reports no expected Dice: not listed
    ])
    errors = result.expected_dice_error()
    assert list(errors) == ["auto"]
    auto = errors["auto"]
    assert auto["estimated"] == 2 and auto["not_estimated"] == 2 and auto["not_estimated_k"] == [1]
    assert auto["mean_absolute_error"] == pytest.approx(0.04)
    assert auto["mean_error"] == pytest.approx(-0.02)
    assert auto["worst"] == {"name": "kidney", "k": 3, "expected": 0.84, "dice": 0.90, "error": pytest.approx(-0.06)}
    assert json.loads(json.dumps(result.as_json()))["expected_dice_error"]["auto"]["estimated"] == 2


def test_expected_dice_table_puts_the_estimate_beside_the_true_dice():
    result = BenchResult(records=[
        auto_record("liver", 1, 0.90, None),
        auto_record("kidney", 1, 0.80, None),
        auto_record("liver", 3, 0.95, 0.97),
        auto_record("kidney", 3, 0.90, 0.84),
    ])
    lines = result.expected_dice_table().splitlines()
    assert lines[0] == "| engine | k | liver true / expected | kidney true / expected | mean abs error |"
    assert lines[2] == "| auto | 1 | 0.900 / - | 0.800 / - | not estimated |"
    assert lines[3] == "| auto | 3 | 0.950 / 0.970 | 0.900 / 0.840 | 0.040 |"
    assert lines[-1] == (
        "auto expected Dice: mean absolute error 0.040 over 2 estimates (mean error -0.020), worst kidney at "
        "k = 3 (expected 0.840, true 0.900); not estimated: 2 (k = 1)"
    )


def test_no_expected_dice_table_when_no_engine_estimates():
    result = BenchResult(records=[record("register", 2, "liver", 3, 0.9, 2.0, 0.5)])
    assert result.expected_dice_table() == "" and result.expected_dice_error() == {}
