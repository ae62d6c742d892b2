"""Tests of slicer_support/progress_lines.py: JSON progress lines, the tracker, the report."""

from __future__ import annotations

import io
import json

import pytest

from SAMFewShotLib.progress import JsonLinesProgress
from SAMFewShotLib.slicer_support.progress_lines import (
    ProgressEvent,
    ProgressTracker,
    format_elapsed,
    json_object_line,
    parse_json_output,
    parse_progress_line,
    read_report,
)


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_parse_progress_line():
    assert parse_progress_line('{"stage": "register: label 5", "done": 40, "total": 112}') == ProgressEvent(
        "register: label 5", 40, 112
    )
    assert parse_progress_line('  {"stage": "s", "done": 0, "total": 0}\r\n') == ProgressEvent("s", 0, 0)
    assert parse_progress_line('{"stage": "s", "done": 2.0, "total": 4, "extra": [1]}') == ProgressEvent("s", 2, 4)


def test_parse_progress_line_reads_what_the_cli_writes():
    stream = io.StringIO()
    JsonLinesProgress(stream)("auto: label 2", 3, 7)
    assert parse_progress_line(stream.getvalue()) == ProgressEvent("auto: label 2", 3, 7)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "Annotate these axial slices: 3, 9",
        "{",
        "{not json}",
        "[1, 2]",
        '"stage"',
        "null",
        '{"stage": "s", "done": 1}',
        '{"done": 1, "total": 2}',
        '{"stage": 3, "done": 1, "total": 2}',
        '{"stage": "s", "done": -1, "total": 2}',
        '{"stage": "s", "done": 1, "total": -2}',
        '{"stage": "s", "done": 1.5, "total": 2}',
        '{"stage": "s", "done": true, "total": 2}',
        '{"stage": "s", "done": "1", "total": 2}',
        '{"stage": "s", "done": NaN, "total": 2}',
        '{"stage": "s", "done": 1, "total": Infinity}',
        '{"stage": "s", "done": 1, "total": 2} trailing',
        '{"a": ' + "[" * 100000 + "}",
        "\x00\xff{}",
        None,
        b'{"stage": "s", "done": 1, "total": 2}',
    ],
)
def test_parse_progress_line_returns_none_for_anything_else(line):
    assert parse_progress_line(line) is None


def test_event_fraction():
    assert ProgressEvent("s", 40, 112).fraction == pytest.approx(40 / 112)
    assert ProgressEvent("s", 0, 0).fraction == 0.0
    assert ProgressEvent("s", 9, 4).fraction == 1.0


@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (12.7, "0:12"), (61, "1:01"), (3725, "1:02:05"), (-3, "0:00")])
def test_format_elapsed(seconds, text):
    assert format_elapsed(seconds) == text


def test_tracker_keeps_the_latest_event_per_stage_and_formats_the_status():
    clock = FakeClock()
    tracker = ProgressTracker(clock)
    assert tracker.current_stage is None and tracker.latest() is None and tracker.fraction() == 0.0
    clock.now += 1.2
    assert tracker.status_text() == "starting (0:01 elapsed)"
    tracker.update(ProgressEvent("register: label 5", 10, 112))
    tracker.update(ProgressEvent("register: label 1", 3, 30))
    tracker.update(ProgressEvent("register: label 5", 40, 112))
    clock.now += 10.9
    assert tracker.current_stage == "register: label 5"
    assert tracker.stages == ["register: label 1", "register: label 5"]
    assert tracker.latest("register: label 1") == ProgressEvent("register: label 1", 3, 30)
    assert tracker.fraction() == pytest.approx(40 / 112)
    assert tracker.fraction("register: label 1") == pytest.approx(0.1)
    assert tracker.fraction("never seen") == 0.0
    assert tracker.elapsed_seconds == pytest.approx(12.1)
    assert tracker.status_text() == "register: label 5 - 40/112 (0:12 elapsed)"
    tracker.update(ProgressEvent("download", 5, 0))
    assert tracker.status_text() == "download (0:12 elapsed)"
    tracker.restart()
    assert tracker.current_stage is None and tracker.stages == [] and tracker.elapsed_seconds == 0.0


def test_read_report(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"engine": "auto", "expected_dice": {"1": 0.9}}))
    assert read_report(path) == {"engine": "auto", "expected_dice": {"1": 0.9}}
    assert read_report(str(path))["engine"] == "auto"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ("", "not valid JSON"),
        ('{"engine": "auto"', "not valid JSON"),
        ("[1, 2]", "JSON object, not list"),
        (b"\xff\xfe\x00", "cannot be read"),
    ],
)
def test_read_report_rejects_missing_and_corrupt_files(tmp_path, content, message):
    path = tmp_path / "report.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        read_report(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_read_report_rejects_a_folder(tmp_path):
    with pytest.raises(ValueError, match="not a file"):
        read_report(tmp_path)


@pytest.mark.parametrize(
    "line, expected",
    [(' {"case": "a", "n": [1]} ', {"case": "a", "n": [1]}), ("[1, 2]", None), ("{not json}", None), ("plain", None),
     ("", None), (None, None), ("{" * 5000 + "}" * 5000, None)],
)  # fmt: skip
def test_json_object_line(line, expected):
    assert json_object_line(line) == expected


def test_parse_json_output():
    assert parse_json_output('{"name": "abdomen"}', "atlas info") == {"name": "abdomen"}
    given = {"checkpoints": []}
    assert parse_json_output(given, "weights list") is given
    with pytest.raises(ValueError, match="The atlas info is not JSON"):
        parse_json_output("abdomen (CT)", "atlas info")
    with pytest.raises(ValueError, match="The weights list must be a JSON object, not list"):
        parse_json_output("[1]", "weights list")
