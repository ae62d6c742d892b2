"""``samfewshot atlas train``: arguments, exit codes, the written bundle."""

import json

import pytest

from Testing.atlas.rrl.rrl_synthetic import phantom, targets

pytest.importorskip("torch")

from SAMFewShotLib.atlas.bundle import load_bundle
from SAMFewShotLib.cli.main import main
from SAMFewShotLib.volume_io import read_labels, read_volume, write_labels, write_volume


@pytest.fixture
def inputs(tmp_path):
    image, labels = phantom()
    write_volume(image, tmp_path / "atlas.nii.gz")
    write_labels(labels, tmp_path / "atlas.seg.nrrd")
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for i, (target, _) in enumerate(targets(2)):
        write_volume(target, folder / f"case{i}.nrrd")
    (folder / "notes.txt").write_text("not an image")
    return tmp_path


def _args(root, *extra):
    return ["atlas", "train", str(root / "atlas.nii.gz"), str(root / "atlas.seg.nrrd"), str(root / "unlabelled"),
            "-o", str(root / "out.zip"), "--size", "32", "--iterations", "2", *extra]


def test_train_writes_a_bundle_with_json_progress(inputs, capsys):
    assert main(_args(inputs, "--progress", "json", "--name", "phantom")) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert {"stage": "RRL-MedSAM training", "done": 2, "total": 2} in lines
    assert {"stage": "Reading unlabelled images", "done": 2, "total": 2} in lines
    bundle = load_bundle(inputs / "out.zip")
    assert (bundle.name, bundle.engine, bundle.parameters["iterations"]) == ("phantom", "rrl_medsam", 2)
    assert [label.name for label in bundle.labels] == ["core", "side"]
    assert (inputs / "out.zip.work" / "checkpoint.pt").is_file()
    # resume to more iterations
    assert main(_args(inputs, "--progress", "none", "--resume", "--iterations", "3")) == 0
    assert load_bundle(inputs / "out.zip").parameters["iterations"] == 3
    # apply, both outputs: labels on the target's own grid, the report says which output ran
    target = next((inputs / "unlabelled").glob("case0.nrrd"))
    for output in ("segmentation", "registration"):
        result, report = inputs / f"{output}.nii.gz", inputs / f"{output}.json"
        argv = ["atlas", "apply", str(target), str(inputs / "out.zip"), "-o", str(result), "--rrl-output", output,
                "--report", str(report), "--progress", "none"]
        assert main(argv) == 0
        assert read_labels(result).volume.same_grid(read_volume(target))
        assert json.loads(report.read_text())["details"]["rrl_output"] == output


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a, root: a + ["--size", "40"], "multiple of 32"),
        (lambda a, root: a + ["--iterations", "0"], "iterations"),
        (lambda a, root: a[:4] + [str(root / "missing")] + a[5:], "unlabelled images folder"),
        (lambda a, root: a[:5] + ["-o", str(root / "atlas.nii.gz")] + a[7:], "is the input"),
        (lambda a, root: a + ["--resume", "--work-dir", str(root / "nowhere")], "no checkpoint"),
    ],
)
def test_bad_input_exits_2_with_one_line(inputs, capsys, change, message):
    assert main(change(_args(inputs, "--progress", "none"), inputs)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("samfewshot: error:") and message in err[0], err
    assert not (inputs / "out.zip").exists()
