"""A study model end to end: the pipeline writes an sfr bundle, atlas apply runs it, and the
``samfewshot sfr`` command module (register + handlers) trains and stitches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")  # the sfr extra
from SAMFewShotLib.atlas.apply import apply_bundle
from SAMFewShotLib.atlas.bundle import load_bundle
from SAMFewShotLib.cli.main import build_parser, main
from SAMFewShotLib.progress import CancelToken, no_progress
from SAMFewShotLib.sfr.network import NetworkConfig
from SAMFewShotLib.sfr.pipeline import train_study_model
from SAMFewShotLib.sfr.retraining import RetrainSettings
from SAMFewShotLib.volume import LabelVolume, Volume
from SAMFewShotLib.volume_io import write_labels, write_volume
from Testing.sfr.sfr_phantom import make_case

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (16, 16, 16)


def _parser():
    """The ``samfewshot`` parser, with ``sfr`` registered like every subcommand."""
    return build_parser()


def test_pipeline_writes_a_bundle_that_atlas_apply_runs(tmp_path):
    image, labels = make_case(0, SHAPE)
    labels = LabelVolume(labels.volume.with_array(labels.array * 3), labels.segments[:0])  # label value 3
    unlabelled = [make_case(seed, SHAPE)[0] for seed in (1, 2, 3)]
    report = train_study_model(
        image, labels, unlabelled, tmp_path / "study.zip", pseudo="none", select=0.5,
        settings=RetrainSettings(iterations=2, patch=8, checkpoint_every=1),
        config=NetworkConfig(channels=(4, 8), strides=(2,)),
    )
    assert report.kept and len(report.kept) == 2 and report.iterations == 2
    with load_bundle(report.bundle) as bundle:
        assert bundle.engine == "sfr" and bundle.parameters["pseudo"] == "none"
        target = Volume(np.zeros((10, 14, 12), np.float32), spacing=(1.5, 2.5, 3.0), origin=(4.0, 5.0, 6.0))
        result = apply_bundle(bundle, target, device="cpu")
    assert result.labels.volume.same_grid(target)
    assert set(np.unique(result.labels.array)) <= {0, 3}
    assert [s.value for s in result.labels.segments] == [3]
    # resume reuses the pseudo-labels and the checkpoint: nothing left to train
    again = train_study_model(
        image, labels, unlabelled, tmp_path / "study.zip", pseudo="none", select=0.5, resume=True,
        settings=RetrainSettings(iterations=2, patch=8, checkpoint_every=1),
        config=NetworkConfig(channels=(4, 8), strides=(2,)),
    )
    assert again.iterations == 2 and again.seconds["pseudo-labels"] < report.seconds["pseudo-labels"] + 5


def test_pipeline_refuses_bad_input(tmp_path):
    image, labels = make_case(0, SHAPE)
    empty = labels.with_array(np.zeros(SHAPE, np.uint8))
    with pytest.raises(ValueError, match="holds no label"):
        train_study_model(image, empty, [image], tmp_path / "s.zip", pseudo="none")
    with pytest.raises(ValueError, match="source must be one of"):
        train_study_model(image, labels, [image], tmp_path / "s.zip", pseudo="magic")
    with pytest.raises(ValueError, match="selection must be one of"):
        train_study_model(image, labels, [image], tmp_path / "s.zip", pseudo="none", select=0.5, selection="best")
    with pytest.raises(ValueError, match="multiple of"):
        train_study_model(image, labels, [image], tmp_path / "s.zip", pseudo="none", settings=RetrainSettings(patch=12))


def test_cli_train_and_stitch(tmp_path, capsys):
    image, labels = make_case(0, SHAPE)
    write_volume(image, tmp_path / "labelled.nii.gz")
    write_labels(labels, tmp_path / "labels.nii.gz")
    (tmp_path / "study").mkdir()
    for seed in (1, 2):
        write_volume(make_case(seed, SHAPE)[0], tmp_path / "study" / f"case{seed}.nii.gz")
    args = _parser().parse_args([
        "sfr", "train", str(tmp_path / "labelled.nii.gz"), str(tmp_path / "labels.nii.gz"), str(tmp_path / "study"),
        "-o", str(tmp_path / "model.zip"), "--pseudo", "none", "--iterations", "1", "--patch", "16",
        "--progress", "none",
    ])
    assert args.func(args, no_progress, CancelToken()) == 0
    assert load_bundle(tmp_path / "model.zip").engine == "sfr"
    # the bundle runs through samfewshot batch
    code = main(["batch", str(tmp_path / "study"), "--model", str(tmp_path / "model.zip"), "-o", str(tmp_path / "out"),
                     "--progress", "none", "--workers", "1"])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("case*")) == ["case1.seg.nrrd", "case2.seg.nrrd"]
    args = _parser().parse_args(["sfr", "stitch", str(tmp_path / "labelled.nii.gz"), "-o", str(tmp_path / "png"),
                                 "--labels", str(tmp_path / "labels.nii.gz"), "--grid", "3"])
    assert args.func(args, no_progress, CancelToken()) == 0
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "labels_0.png", "labels_1.png", "mosaic_0.png", "mosaic_1.png"]
    assert "Wrote 2 mosaic(s)" in capsys.readouterr().out
    bad = _parser().parse_args(["sfr", "train", str(tmp_path / "labelled.nii.gz"), str(tmp_path / "labels.nii.gz"),
                                str(tmp_path / "study"), "-o", str(tmp_path / "m.zip"), "--select", "2"])
    with pytest.raises(ValueError, match="--select"):
        bad.func(bad, no_progress, CancelToken())
    bad = _parser().parse_args(["sfr", "train", str(tmp_path / "labelled.nii.gz"), str(tmp_path / "labels.nii.gz"),
                                str(tmp_path / "study"), "-o", str(tmp_path / "m.zip"), "--pseudo", "sam"])
    with pytest.raises(ValueError, match="--checkpoint"):
        bad.func(bad, no_progress, CancelToken())


def test_cli_train_with_sam_pseudo_labels_from_a_tiny_random_checkpoint(tmp_path):
    """``--pseudo sam`` end to end through the command: the checkpoint is loaded, the decoder is
    fine-tuned on the labelled volume's mosaics, each unlabelled volume gets a SAM pseudo-label
    with confidences, the 3D network trains on them and the bundle runs. Mechanics only: a tiny
    random SAM says nothing about the pseudo-labels' quality (that needs real weights)."""
    import json

    from Testing import tiny_sam

    image, labels = make_case(0, SHAPE)
    write_volume(image, tmp_path / "labelled.nii.gz")
    write_labels(labels, tmp_path / "labels.nii.gz")
    (tmp_path / "study").mkdir()
    for seed in (1, 2):
        write_volume(make_case(seed, SHAPE)[0], tmp_path / "study" / f"case{seed}.nii.gz")
    checkpoint = tiny_sam.save_tiny_checkpoint(tmp_path / "tiny.pth", global_attn_indexes=())
    code = main(["sfr", "train", str(tmp_path / "labelled.nii.gz"), str(tmp_path / "labels.nii.gz"),
                 str(tmp_path / "study"), "-o", str(tmp_path / "model.zip"), "--pseudo", "sam", "--checkpoint",
                 str(checkpoint), "--sam-iterations", "3", "--select", "0.5", "--iterations", "2", "--patch", "16",
                 "--device", "cpu", "--progress", "none"])
    assert code == 0
    record = json.loads((tmp_path / "model.zip.work" / "pseudo.json").read_text())
    assert record["key"][0] == "sam" and sorted(record["volumes"]) == ["0", "1"]
    for entry in record["volumes"].values():
        assert 0.0 <= entry["volume_confidence"] <= 1.0
    with load_bundle(tmp_path / "model.zip") as bundle:
        assert (bundle.engine, bundle.parameters["pseudo"], len(bundle.parameters["kept"])) == ("sfr", "sam", 1)
        result = apply_bundle(bundle, make_case(3, SHAPE)[0], device="cpu")
    assert set(np.unique(result.labels.array)) <= {0, 1}
