"""``samfewshot fewshot train|apply|info``: files, reports, the cache, one-line refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")

from SAMFewShotLib.cli.main import main
from SAMFewShotLib.fewshot import load_head
from SAMFewShotLib.volume_io import read_labels, write_labels, write_volume
from Testing import tiny_sam
from Testing.fewshot.fewshot_cases import DRAWN, SHAPE, THREADS, TINY_GLOBAL_ATTENTION


@pytest.fixture(scope="module")
def files(case, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    write_volume(case.image, folder / "image.nrrd")
    write_labels(case.annotation.labels, folder / "drawn.seg.nrrd")
    return folder


@pytest.fixture
def home(case, monkeypatch):
    monkeypatch.setenv("SAMFEWSHOT_HOME", str(case.home))
    return case.home


def train_args(case, files, output, *extra):
    return ["fewshot", "train", str(files / "image.nrrd"), str(files / "drawn.seg.nrrd"), "-o", str(output),
            "--checkpoint", str(case.checkpoint), "--device", "cpu", "--iterations", "4", "--learning-rate", "3e-3",
            "--progress", "none", *extra]


@pytest.fixture(scope="module")
def head_file(case, files):
    previous = os.environ.get("SAMFEWSHOT_HOME")
    os.environ["SAMFEWSHOT_HOME"] = str(case.home)
    try:
        assert main(train_args(case, files, files / "head.sfs", "--report", str(files / "train.json"))) == 0
    finally:
        os.environ.pop("SAMFEWSHOT_HOME") if previous is None else os.environ.update(SAMFEWSHOT_HOME=previous)
    return files / "head.sfs"


def test_train_writes_a_head_and_reports_its_cost(head_file, files):
    head = load_head(head_file)
    assert head.label_values == [1] and head.segments[0].name == "target"
    assert head.training["iterations"] == 4
    report = json.loads((files / "train.json").read_text())
    counters = report["counters"]
    assert counters["train_iterations"] == 4 and counters["train_seconds"] > 0 and counters["peak_rss_mib"] > 0
    assert counters["slices_encoded"] + counters["cache_hits"] == len(DRAWN)
    assert {"encode", "train", "total"} <= set(report["seconds"]) and report["held_out"] == {"1": DRAWN[2]}


def test_a_second_training_encodes_nothing(case, files, home, tmp_path):
    assert main(train_args(case, files, tmp_path / "again.sfs", "--report", str(tmp_path / "r.json"))) == 0
    counters = json.loads((tmp_path / "r.json").read_text())["counters"]
    assert counters["encoder_calls"] == 0 and counters["cache_hits"] == len(DRAWN)


def test_apply_from_the_command_line_keeps_names_colours_and_grid(case, head_file, files):
    out, report = files / "out.seg.nrrd", files / "apply.json"
    env = dict(os.environ, SAMFEWSHOT_HOME=str(case.home), OMP_NUM_THREADS=str(THREADS))
    result = subprocess.run(
        [sys.executable, "-m", "SAMFewShotLib", "fewshot", "apply", str(files / "image.nrrd"), str(head_file),
         "-o", str(out), "--checkpoint", str(case.checkpoint), "--device", "cpu", "--report", str(report),
         "--progress", "none"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    labels = read_labels(out)
    assert labels.volume.same_grid(case.image) and labels.array.any()
    assert labels.segment(1).name == "target" and labels.segment(1).color == pytest.approx((0.9, 0.3, 0.2))
    counters = json.loads(report.read_text())["counters"]
    assert counters["slices_predicted"] == counters["slices_encoded"] + counters["cache_hits"] == SHAPE[0]


def test_info_prints_the_manifest(head_file, capsys):
    assert main(["fewshot", "info", str(head_file), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["labels"][0]["name"] == "target" and len(manifest["base_model"]["sha256"]) == 64


def bad_case(name, case, files, head_file, tmp_path):
    out = tmp_path / "out.nrrd"
    apply = ["fewshot", "apply", str(files / "image.nrrd"), str(head_file), "-o", str(out), "--device", "cpu",
             "--progress", "none"]
    if name == "another base model":
        other = tiny_sam.save_tiny_checkpoint(tmp_path / "other.pth", seed=1, global_attn_indexes=TINY_GLOBAL_ATTENTION)
        return [*apply, "--checkpoint", str(other)], ["trained on base model", "other.pth"], out
    if name == "corrupt head file":
        bad = tmp_path / "bad.sfs"
        bad.write_bytes(head_file.read_bytes()[:5000])
        return [*apply[:3], str(bad), *apply[4:], "--checkpoint", str(case.checkpoint)], ["bad.sfs", "corrupt"], out
    if name == "labels missing from the annotation":
        out = tmp_path / "head.sfs"
        return train_args(case, files, out, "--labels", "1,7"), ["Label 7", "drawn.seg.nrrd", "holds 1"], out
    if name == "head file suffix":
        out = tmp_path / "head.pt"
        return train_args(case, files, out), [".sfs", "head.pt"], out
    if name == "range outside the volume":
        return [*apply, "--checkpoint", str(case.checkpoint), "--range", "5:40"], ["--range 5:40", "0..11"], out
    raise AssertionError(name)


@pytest.mark.parametrize(
    "name",
    ["another base model", "corrupt head file", "labels missing from the annotation", "head file suffix",
     "range outside the volume"],
)
def test_bad_input_exits_2_with_one_line(name, case, files, head_file, home, tmp_path, capsys):
    args, expected, out = bad_case(name, case, files, head_file, tmp_path)
    capsys.readouterr()
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("samfewshot: error:")
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert not out.exists()
