"""The Batch panel's "Train a study model" logic run without Slicer (stand-in slicer/qt/vtk, the
export steps replaced by file writes, as in test_slicer_module_logic.py) with the real
``samfewshot sfr train`` child: a bundle that ``atlas apply`` accepts; cancel keeps the
checkpoint; resume continues it."""

from __future__ import annotations

import os
import sys
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")  # the sfr extra

from SAMFewShotLib.atlas.bundle import load_bundle
from Testing.slicer_support.test_slicer_module_logic import (  # noqa: F401  (module is a fixture)
    TIMEOUT,
    _ball_case,
    _ball_segmentation,
    _FakeNode,
    _logic_on_files,
    module,
)


def test_study_model_refuses_bad_inputs_before_starting(module, tmp_path):  # noqa: F811
    image_path, ball, drawn = _ball_case(tmp_path)
    logic = _logic_on_files(module, image_path, {"Segment_1": drawn})
    labelled, segmentation = _FakeNode("labelled"), _ball_segmentation()
    cases = {
        "where to write": ("", labelled, segmentation, [_FakeNode("a")]),
        "folder does not exist": (str(tmp_path / "absent" / "m.zip"), labelled, segmentation, [_FakeNode("a")]),
        "labelled volume and its segmentation": (str(tmp_path / "m.zip"), labelled, None, [_FakeNode("a")]),
        "at least one unlabelled": (str(tmp_path / "m.zip"), labelled, segmentation, [labelled]),
        "harden": (str(tmp_path / "m.zip"), labelled, segmentation, [_FakeNode("v", transform=_FakeNode("T"))]),
    }
    for message, arguments in cases.items():
        with pytest.raises(ValueError, match=message):
            logic.batch.startStudyModel(*arguments)
    assert not list(tmp_path.glob("SAMFewShot-*")), "a refused start left its temporary folder"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM cancel of the child is POSIX")
def test_study_model_trains_cancels_and_resumes_with_the_real_child(module, tmp_path):  # noqa: F811
    """The labelled ball and two unlabelled volumes (copies, labels copied as pseudo-labels): a
    long training is cancelled once it trains (checkpoint kept, Resume offered), then resumed to
    completion; the bundle is an sfr atlas bundle with the ball's segment."""
    image_path, ball, drawn = _ball_case(tmp_path)
    logic = _logic_on_files(module, image_path, {"Segment_1": ball.astype("uint8")})
    bundle = str(tmp_path / "study model.zip")
    labelled = _FakeNode("labelled")
    volumes = [labelled, _FakeNode("CT 1"), _FakeNode("CT 2")]
    assert not logic.batch.canResumeStudyModel(bundle)

    job = logic.batch.startStudyModel(bundle, labelled, _ball_segmentation(), volumes, pseudo="none",
                                      iterations=100000)
    assert job.kind == "sfr train" and "--resume" not in job.argv
    assert sorted(os.listdir(os.path.join(job.folder, "unlabelled"))) == ["CT_1.nrrd", "CT_2.nrrd"]
    deadline = time.monotonic() + TIMEOUT
    while not any(e.stage.startswith("sfr: re-training") and e.done >= 2 for e in logic.jobs.pollJob(job)):
        assert job.running, job.runner.error_message()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # Slicer's Cancel (ChildJobs.cancelJob) gives the child ProcessRunner's 2 s grace before SIGKILL; on this
    # loaded machine the step under way may take longer, so the SIGTERM gets its time here first
    job.runner.cancel(grace_seconds=120.0, timeout=120.0)
    logic.jobs.cancelJob(job)
    assert logic.batch.canResumeStudyModel(bundle) and not os.path.exists(bundle)
    with pytest.raises(RuntimeError, match="already finished or cancelled"):
        logic.batch.finishStudyModel(job)

    job = logic.batch.startStudyModel(bundle, labelled, _ball_segmentation(), volumes, pseudo="none", iterations=2,
                                      resume=True)
    assert "--resume" in job.argv
    assert logic.jobs.waitForJob(job, TIMEOUT) == 0, job.runner.error_message()
    assert logic.batch.finishStudyModel(job) == bundle
    with load_bundle(bundle) as loaded:
        assert loaded.engine == "sfr" and [label.name for label in loaded.labels] == ["ball"]
        assert loaded.parameters["iterations"] >= 2
