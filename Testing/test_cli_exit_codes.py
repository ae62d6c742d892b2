"""The exit-code contract of ``samfewshot`` (cli/main.py): InputError and OSError exit 2 with one
line; any other exception is a bug: exit 1 with one line, the traceback under --debug and in the
--report JSON. Run in-process on a tiny image with the interpolate engine made to fail."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from SAMFewShotLib.cli.main import main
from SAMFewShotLib.engines.interpolate import InterpolateEngine
from SAMFewShotLib.errors import InputError


@pytest.fixture
def case(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(8, 12, 12)).astype(np.float32)
    labels = np.zeros((8, 12, 12), np.uint8)
    labels[[2, 5], 3:8, 3:8] = 1
    paths = {"image": tmp_path / "image.nii.gz", "annotation": tmp_path / "annotation.nii.gz"}
    sitk.WriteImage(sitk.GetImageFromArray(image), str(paths["image"]))
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(paths["annotation"]))
    return dict(paths, out=tmp_path / "seg.nii.gz", report=tmp_path / "report.json")


def _propagate(case, *before):
    return main([*before, "propagate", str(case["image"]), str(case["annotation"]), "-o", str(case["out"]),
                 "--engine", "interpolate", "--report", str(case["report"]), "--progress", "none"])


def _fail_with(monkeypatch, error: Exception) -> None:
    def propagate(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(InterpolateEngine, "propagate", propagate)


@pytest.mark.parametrize("error", [RuntimeError("boom in the engine"), ValueError("boom in the engine")])
def test_an_internal_error_exits_1_with_one_line_and_the_traceback_in_the_report(case, monkeypatch, capsys, error):
    _fail_with(monkeypatch, error)
    assert _propagate(case) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("samfewshot: internal error:") and "boom in the engine" in lines[0]
    assert "--debug" in lines[0]
    report = json.loads(case["report"].read_text())
    assert "Traceback" in report["traceback"] and "boom in the engine" in report["traceback"]
    assert not case["out"].exists()


def test_debug_prints_the_traceback(case, monkeypatch, capsys):
    _fail_with(monkeypatch, RuntimeError("boom in the engine"))
    assert _propagate(case, "--debug") == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in propagate" in err
    assert err.strip().splitlines()[-1].startswith("samfewshot: internal error: RuntimeError: boom in the engine")


@pytest.mark.parametrize("error", [InputError("label 7 is not drawn"), FileNotFoundError("no such file: x.nii")])
def test_input_and_os_errors_exit_2_with_one_line_and_no_report(case, monkeypatch, capsys, error):
    _fail_with(monkeypatch, error)
    assert _propagate(case) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"samfewshot: error: {error}"]
    assert not case["report"].exists() and not case["out"].exists()


def test_the_engine_really_runs_without_the_patch(case):
    assert _propagate(case) == 0 and case["out"].exists()


def test_a_diverged_training_exits_1_with_its_own_line_not_an_internal_error(case, monkeypatch, capsys):
    from SAMFewShotLib.errors import require_finite_loss

    def propagate(self, *args, **kwargs):
        require_finite_loss(float("nan"), 7, "SFR re-training")

    monkeypatch.setattr(InterpolateEngine, "propagate", propagate)
    assert _propagate(case) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "samfewshot: SFR re-training diverged at iteration 7 (loss nan): no bundle was written; train again with "
        "a lower learning rate or fewer iterations"
    ]
    assert not case["out"].exists()
