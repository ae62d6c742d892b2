"""``samfewshot meta-train``: writes an init that loads for its checkpoint, reports its cost,
and refuses bad input with exit 2 and one line, writing nothing."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

import numpy as np

from SAMFewShotLib.cli.main import main
from SAMFewShotLib.meta.init_file import load_init
from SAMFewShotLib.volume import LabelVolume
from SAMFewShotLib.volume_io import write_labels, write_volume
from Testing.meta import meta_cases


@pytest.fixture(scope="module")
def labeled_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labeled")
    for seed in (20, 21):
        volume, truth = meta_cases.textured_case(seed, shape=(10, 32, 32), jitter=0.1)
        write_volume(volume, folder / f"case{seed}_image.nii.gz")
        write_labels(LabelVolume(volume.with_array(truth.astype(np.uint8) * 3)), folder / f"case{seed}_labels.nii.gz")
    checkpoint = meta_cases.small_sam_checkpoint(folder / "small.pth")
    return folder, checkpoint


def meta_train(folder, checkpoint, output, *extra) -> int:
    return main(
        ["meta-train", str(folder), "-o", str(output), "--checkpoint", str(checkpoint), "--iterations", "2",
         "--steps", "2", "--shots", "2", "--queries", "1", "--tasks-per-step", "2", "--progress", "none", *extra]
    )


def test_meta_train_writes_an_init_and_a_cost_report(labeled_dir, tmp_path, capsys):
    folder, checkpoint = labeled_dir
    output, report = tmp_path / "init.pt", tmp_path / "report.json"
    assert meta_train(folder, checkpoint, output, "--report", str(report), "--labels", "3") == 0
    init = load_init(output)
    assert init.config.steps == 2 and init.learning_rates.shape[0] == 2
    assert init.base_name == "small" and init.training["tasks"] == ["case20:3", "case21:3"]
    payload = json.loads(report.read_text())
    assert payload["iterations"] == 2 and payload["seconds"] > 0 and payload["peak_rss_mib"] > 100
    assert len(payload["query_losses"]) == 2 and payload["online_steps"] == 2
    assert "Meta-learned init written" in capsys.readouterr().out
    assert payload["held_out"] is None and payload["settings"]["tasks_per_step"] == 2


def test_leave_one_organ_out_is_recorded_and_an_absent_organ_refused(labeled_dir, tmp_path, capsys):
    folder, checkpoint = labeled_dir
    code = meta_train(folder, checkpoint, tmp_path / "never.pt", "--held-out", "4")
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Label 4" in err and "\n" not in err and not (tmp_path / "never.pt").exists()


@pytest.mark.parametrize(
    "setup, extra, match",
    [
        ("missing_labels", (), "has no labels file"),
        ("empty", (), "holds no labelled volume"),
        (None, ("--labels", "9"), "Label 9 is in none"),
        (None, ("--labels", "x"), "--labels must be"),
        ("no_folder", (), "needs a writable folder"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(labeled_dir, tmp_path, capsys, setup, extra, match):
    folder, checkpoint = labeled_dir
    output = tmp_path / "init.pt"
    if setup == "missing_labels":
        folder = tmp_path / "data"
        folder.mkdir()
        (folder / "a_image.nii.gz").write_bytes((labeled_dir[0] / "case20_image.nii.gz").read_bytes())
    elif setup == "empty":
        folder = tmp_path / "data"
        folder.mkdir()
    elif setup == "no_folder":
        output = tmp_path / "missing" / "init.pt"
    assert meta_train(folder, checkpoint, output, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("samfewshot: error:") and match in err and "\n" not in err
    assert not output.exists()
