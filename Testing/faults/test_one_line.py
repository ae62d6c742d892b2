"""Item 4: one line, always -- third-party warnings captured, each failure named by its cause,
non-regular files (FIFO, device) refused up front."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from SAMFewShotLib.errors import InputError
from SAMFewShotLib.volume_io import read_volume
from Testing.faults.fault_helpers import run_cli, tiny_case, use_copy_engine


@pytest.fixture
def copy_engine(monkeypatch):
    use_copy_engine(monkeypatch)


def test_an_empty_folder_as_image_is_one_line(tmp_path, capfd, copy_engine):
    _, labels = tiny_case(tmp_path)
    (tmp_path / "empty").mkdir()
    code, err, _ = run_cli(
        ["propagate", tmp_path / "empty", labels, "-o", tmp_path / "o.nii.gz", "--progress", "none"], capfd
    )
    assert code == 2 and len(err) == 1 and "no DICOM series" in err[0], err


def test_a_folder_of_non_dicom_files_is_one_line(tmp_path, capfd, copy_engine):
    _, labels = tiny_case(tmp_path)
    folder = tmp_path / "junk"
    folder.mkdir()
    for i in range(3):
        (folder / f"file{i}.dcm").write_bytes(np.random.default_rng(i).bytes(300))
    code, err, _ = run_cli(["propagate", folder, labels, "-o", tmp_path / "o.nii.gz", "--progress", "none"], capfd)
    assert code == 2 and len(err) == 1, err


def test_random_bytes_as_checkpoint_are_not_a_pytorch_checkpoint(tmp_path):
    pytest.importorskip("torch")
    from SAMFewShotLib.sam.model_loading import load_sam

    path = tmp_path / "random.pth"
    path.write_bytes(bytes([0x42, 0x17]) + np.random.default_rng(5).bytes(4000))
    with pytest.raises(ValueError, match="random.pth is not a readable checkpoint: it is not a PyTorch file"):
        load_sam(path)


class _Code:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_a_legacy_pickle_with_code_is_refused_in_one_line_and_never_runs(tmp_path, capfd):
    torch = pytest.importorskip("torch")
    image, labels = tiny_case(tmp_path)
    path = tmp_path / "evil.pth"
    torch.save({"a": _Code()}, path, _use_new_zipfile_serialization=False)
    capfd.readouterr()
    args = ["propagate", image, labels, "-o", tmp_path / "o.nii.gz", "--engine", "sam", "--checkpoint", path,
            "--device", "cpu", "--progress", "none"]
    code, err, out = run_cli(args, capfd)
    assert code == 2 and len(err) == 1 and "pickled Python objects" in err[0], err
    assert "pickled code ran" not in out


def test_python_warnings_of_a_successful_command_are_folded_into_one_line(tmp_path, capfd, monkeypatch):
    image, labels = tiny_case(tmp_path)

    class Noisy:
        name = "noisy"

        def propagate(self, image, annotation, **kwargs):
            for i in range(3):
                warnings.warn(f"library complaint {i}\nwith a second line", UserWarning, stacklevel=1)
            from Testing.faults.fault_helpers import CopyEngine

            return CopyEngine().propagate(image, annotation)

    import SAMFewShotLib.engines as engines

    monkeypatch.setattr(engines, "make_engine", lambda spec, **options: Noisy())
    code, err, _ = run_cli(["propagate", image, labels, "-o", tmp_path / "o.nii.gz", "--progress", "none"], capfd)
    assert code == 0 and len(err) == 1, err
    assert err[0].startswith("samfewshot: warning: library complaint 0 | library complaint 1 | library complaint 2")


def test_batch_output_equal_to_an_input_file_says_so(tmp_path, capfd):
    image, _ = tiny_case(tmp_path)
    code, err, _ = run_cli(["batch", image, "--model", image, "-o", image], capfd)
    assert code == 2 and len(err) == 1 and f"-o {image} is the input file {image}" in err[0], err


def test_a_device_as_image_is_refused(tmp_path):
    with pytest.raises(InputError, match="character device"):
        read_volume("/dev/zero")


def test_a_fifo_as_input_is_refused_at_once_and_does_not_hang(tmp_path):
    image, labels = tiny_case(tmp_path)
    fifo = tmp_path / "image.nii.gz.fifo"
    os.mkfifo(fifo)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    for args in (["propagate", fifo, labels], ["propagate", image, fifo]):
        done = subprocess.run(
            [sys.executable, "-m", "SAMFewShotLib", *map(str, args), "-o", str(tmp_path / "o.nii.gz"),
             "--engine", "interpolate", "--progress", "none"],
            capture_output=True, text=True, timeout=120, env=env,
        )
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1 and "FIFO" in lines[0], done.stderr
