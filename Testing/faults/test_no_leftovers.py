"""Item 5: no patient data left behind -- every temporary file of a command lives in one folder
that the parent removes on every exit path, also when workers leave by ``os._exit`` or the batch
is cancelled."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import SAMFewShotLib.cli.main as cli
from SAMFewShotLib.batch import models
from Testing.batch.batch_helpers import write_cases
from Testing.faults.fault_helpers import LeakyModel


@pytest.fixture
def private_tmpdir(tmp_path, monkeypatch):
    folder = tmp_path / "private_tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def leftovers(folder) -> list[str]:
    """What is left in ``folder``, except multiprocessing's own socket folder of this test
    process (``pymp-*``: no data, made once per process and removed by multiprocessing at exit)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("pymp-"))


def test_batch_workers_leaving_by_os_exit_leave_nothing_in_tmpdir(tmp_path, private_tmpdir, monkeypatch, capsys):
    monkeypatch.setattr(models, "load_model", lambda model, **options: LeakyModel(crash_tags=(2,)))
    write_cases(tmp_path / "in", 3)
    code = cli.main(["batch", str(tmp_path / "in"), "--model", "m", "-o", str(tmp_path / "out"), "--workers", "2",
                     "--progress", "none"])
    assert code == 3  # case 2's worker died twice
    assert leftovers(private_tmpdir) == []


def test_a_failing_command_leaves_nothing_in_tmpdir(tmp_path, private_tmpdir, monkeypatch, capsys):
    monkeypatch.setattr(models, "load_model", lambda model, **options: LeakyModel())
    write_cases(tmp_path / "in", 1)
    seen = []

    def failing_run_batch(*args, **kwargs):
        folder = tempfile.mkdtemp(prefix="samfewshot-atlas-")
        seen.append(folder)
        raise KeyboardInterrupt  # Ctrl-C while an extraction exists

    import SAMFewShotLib.batch.pipeline as pipeline

    monkeypatch.setattr(pipeline, "run_batch", failing_run_batch)
    code = cli.main(["batch", str(tmp_path / "in"), "--model", "m", "-o", str(tmp_path / "out"), "--progress", "none"])
    assert code == 130 and seen and not os.path.exists(seen[0])
    assert leftovers(private_tmpdir) == []


@pytest.mark.slow
def test_samfewshot_batch_with_an_atlas_bundle_leaves_tmpdir_empty(tmp_path):
    """The command as users run it: a zip bundle extracted in each worker, elastix transforms."""
    from SAMFewShotLib.atlas.bundle import write_bundle
    from SAMFewShotLib.volume import LabelVolume, Segment
    from Testing.batch.test_batch_models import QUICK_REGISTRATION, phantom

    atlas, truth = phantom(tmp_path, "atlas", (12, 20, 20), (7, 11, 13), 0, spacing=(1.0, 1.0, 2.0))
    labels = LabelVolume(atlas.with_array(truth.astype(np.uint8)), (Segment(1, "organ"),))
    bundle = write_bundle(
        tmp_path / "organ.zip", name="organ", atlases=[(atlas, labels)], parameters=QUICK_REGISTRATION
    )
    (tmp_path / "in").mkdir()
    phantom(tmp_path / "in", "a", (12, 19, 21), (7, 12, 12), 3, spacing=(1.1, 0.9, 2.0))
    private = tmp_path / "private_tmp"
    private.mkdir()
    env = dict(os.environ, TMPDIR=str(private),
               PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    done = subprocess.run(
        [sys.executable, "-m", "SAMFewShotLib", "batch", str(tmp_path / "in"), "--model", str(bundle),
         "-o", str(tmp_path / "out"), "--workers", "1", "--progress", "none"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "a.seg.nrrd").is_file()
    assert sorted(p.name for p in private.iterdir()) == []
