"""The encoder budget: slices to encode, cached, expected seconds from this machine's recorded
measurement; the ``--progress json`` event; the report's counters; the ``--max-encode`` message."""

from __future__ import annotations

import io
import json

import pytest

pytest.importorskip("torch")

from SAMFewShotLib.progress import JsonLinesProgress
from SAMFewShotLib.sam.embedding_cache import EmbeddingCache
from SAMFewShotLib.sam.encoder import EncodeBudgetExceeded, encode_slices
from SAMFewShotLib.sam.encoder_budget import (
    EVENT,
    FILE_NAME,
    EncodeBudget,
    EncoderTimings,
    format_seconds,
)
from SAMFewShotLib.sam.preprocess import Preprocessing
from Testing.sam.test_sam_engine import case  # noqa: F401 - the fixture
from Testing.tiny_sam import build_tiny_sam


def test_first_run_records_and_the_next_run_estimates(case, tmp_path):  # noqa: F811
    image = case[0]
    sam = build_tiny_sam(seed=2)
    prep = Preprocessing.from_percentiles(image)
    cache = EmbeddingCache(tmp_path / "embeddings")
    first = encode_slices(sam, "tiny", image, 0, [2, 3], prep, cache)
    assert first.budget is not None and (first.budget.to_encode, first.budget.cached) == (2, 0)
    assert first.budget.seconds_per_slice is None and first.budget.expected_seconds is None
    stored = json.loads((tmp_path / "embeddings" / FILE_NAME).read_text())
    (record,) = stored["encoders"].values()
    assert record["slices"] == 2 and record["seconds_per_slice"] > 0

    stream = io.StringIO()
    second = encode_slices(sam, "tiny", image, 0, [2, 3, 4, 5], prep, cache, progress=JsonLinesProgress(stream))
    assert (second.budget.to_encode, second.budget.cached) == (2, 2)
    assert second.budget.expected_seconds == pytest.approx(2 * record["seconds_per_slice"])
    events = [json.loads(line) for line in stream.getvalue().splitlines() if "event" in json.loads(line)]
    assert [e["event"] for e in events] == [EVENT]
    assert events[0]["slices_to_encode"] == 2 and events[0]["slices_cached"] == 2
    assert events[0]["expected_seconds"] == pytest.approx(second.budget.expected_seconds)


def test_a_memory_only_cache_keeps_no_measurement(case, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SAMFEWSHOT_HOME", str(tmp_path))
    image = case[0]
    encoded = encode_slices(build_tiny_sam(seed=2), "tiny", image, 0, [2], Preprocessing.from_percentiles(image))
    assert encoded.budget.store is None and encoded.budget.seconds_per_slice is None
    assert not list(tmp_path.rglob(FILE_NAME))


def test_max_encode_message_names_the_expected_time(case, tmp_path):  # noqa: F811
    image = case[0]
    sam = build_tiny_sam(seed=2)
    prep = Preprocessing.from_percentiles(image)
    cache = EmbeddingCache(tmp_path / "embeddings")
    timings = EncoderTimings(tmp_path / "timings.json")
    encode_slices(sam, "tiny", image, 0, [1], prep, cache, timings=timings)
    expected = "3 slices to encode \\(0 cached\\) exceed --max-encode 2 \\(expected"
    with pytest.raises(EncodeBudgetExceeded, match=expected):
        encode_slices(sam, "tiny", image, 0, [2, 3, 4], prep, cache, timings=timings, max_encode=2)


def test_damaged_measurements_cost_only_the_estimate(tmp_path):
    path = tmp_path / FILE_NAME
    path.write_text("{not json")
    timings = EncoderTimings(path)
    assert timings.seconds_per_slice("k") is None
    timings.record("k", 6.0, 3)
    assert timings.seconds_per_slice("k") == pytest.approx(2.0)
    EncoderTimings(None).record("k", 1.0, 1)  # no path: nothing kept, no error


@pytest.mark.parametrize(
    "budget, text",
    [
        (EncodeBudget(0, 5, "k"), "0 slices to encode (5 cached), no encoder time"),
        (EncodeBudget(3, 0, "k"), "no estimate yet"),
        (EncodeBudget(120, 30, "k", 3.0), "120 slices to encode (30 cached), expected 6 min 0 s (3.00 s per slice"),
    ],
)
def test_budget_message(budget, text):
    assert text in budget.message()


def test_format_seconds():
    assert [format_seconds(s) for s in (12.4, 365, 3725)] == ["12 s", "6 min 5 s", "1 h 2 min"]


def test_cli_report_and_progress_json_state_the_budget(case, tmp_path, capsys, monkeypatch):  # noqa: F811
    from SAMFewShotLib.cli.main import main
    from SAMFewShotLib.volume_io import write_labels, write_volume

    monkeypatch.setenv("SAMFEWSHOT_HOME", str(tmp_path / "home"))
    image, annotation, checkpoint, _, _ = case
    write_volume(image, tmp_path / "image.nrrd")
    write_labels(annotation.labels, tmp_path / "drawn.nrrd")
    command = ["propagate", str(tmp_path / "image.nrrd"), str(tmp_path / "drawn.nrrd"), "-o", str(tmp_path / "o.nrrd"),
               "--engine", "sam:interpolate", "--checkpoint", str(checkpoint), "--encoder-runtime", "torch",
               "--progress", "json", "--report", str(tmp_path / "report.json")]
    assert main(command) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"event"')]
    assert [e["event"] for e in events] == [EVENT] and events[0]["slices_to_encode"] > 0
    counters = json.loads((tmp_path / "report.json").read_text())["counters"]
    assert counters["budget_slices_to_encode"] == events[0]["slices_to_encode"] == counters["slices_encoded"]
    assert counters["budget_expected_seconds"] is None  # the first run on this machine measures
    assert (tmp_path / "home" / "embeddings" / FILE_NAME).is_file()
    assert main(command) == 0  # again: everything cached, nothing to encode
    counters = json.loads((tmp_path / "report.json").read_text())["counters"]
    assert counters["budget_slices_to_encode"] == 0 and counters["budget_slices_cached"] > 0


def test_the_slicer_question_uses_this_machines_fastest_cpu_measurement(tmp_path, monkeypatch):
    import subprocess
    import sys

    from SAMFewShotLib.sam.encoder_budget import cpu_run_question, measured_seconds_per_slice, timings_path

    monkeypatch.setenv("SAMFEWSHOT_HOME", str(tmp_path))
    assert measured_seconds_per_slice("vit_t") is None
    timings = EncoderTimings(timings_path(tmp_path / "embeddings"))
    timings.record("vit_t/fp32/cpu/2threads", 12.0, 4)
    timings.record("vit_t/onnx-fp32/cpu/2threads", 8.0, 4)
    timings.record("vit_t/fp32/cuda/2threads", 0.1, 4)
    timings.record("vit_b/fp32/cpu/2threads", 40.0, 4)
    assert measured_seconds_per_slice("vit_t") == pytest.approx(2.0)
    question = cpu_run_question("vit_t", 60, 2.0)
    assert "2 min 0 s" in question and "measured here" in question
    assert cpu_run_question("vit_t", 10, 2.0) is None  # 20 s: just run it
    # the Slicer side reads the measurement without importing torch
    code = "import sys; import SAMFewShotLib.sam.encoder_budget as b; b.measured_seconds_per_slice('vit_b'); " \
           "sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_budget_recorder_sums_the_budgets_of_several_encode_calls(case, tmp_path):  # noqa: F811
    from SAMFewShotLib.sam.encoder_budget import BudgetRecorder

    image = case[0]
    sam = build_tiny_sam(seed=2)
    prep = Preprocessing.from_percentiles(image)
    cache = EmbeddingCache(tmp_path / "embeddings")
    stream = io.StringIO()
    recorder = BudgetRecorder(JsonLinesProgress(stream))
    assert recorder.counters() == {}
    encode_slices(sam, "tiny", image, 0, [2, 3], prep, cache, progress=recorder)  # first run: measures
    encode_slices(sam, "tiny", image, 0, [3, 4], prep, cache, progress=recorder)  # 1 cached, 1 estimated
    counters = recorder.counters()
    assert (counters["budget_slices_to_encode"], counters["budget_slices_cached"]) == (3, 1)
    assert counters["budget_encode_calls"] == 2
    assert counters["budget_expected_seconds"] is None  # the first call had no measurement yet
    assert counters["budget_seconds_per_slice"] > 0 and counters["budget_encoder"].endswith("threads")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert sum(1 for line in lines if line.get("event") == EVENT) == 2  # events still reach the display
    assert any("stage" in line for line in lines)


def test_pass_budget_counters_use_this_machines_measurement(tmp_path):
    from SAMFewShotLib.sam.encoder_budget import pass_budget_counters

    path = tmp_path / FILE_NAME
    assert pass_budget_counters("vit_b", 12, path)["budget_expected_seconds"] is None
    EncoderTimings(path).record("vit_b/fp32/cpu/2threads", 30.0, 3)
    counters = pass_budget_counters("vit_b", 12, path)
    assert counters["budget_slices_to_encode"] == 12 and counters["budget_slices_cached"] == 0
    assert counters["budget_expected_seconds"] == pytest.approx(120.0)
