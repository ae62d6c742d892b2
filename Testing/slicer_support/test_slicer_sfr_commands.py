"""Tests of slicer_support/sfr_commands.py: the ``samfewshot sfr train`` command line of the Batch
panel's "Train a study model", checked against the real parser, and the resume check."""

from __future__ import annotations

import pytest

from SAMFewShotLib.sfr import CHECKPOINT_NAME
from SAMFewShotLib.slicer_support.sfr_commands import can_resume, sfr_train_command, work_folder
from Testing.slicer_support.cli_parsing import PYTHON, parse


def test_sfr_train_command_parses_with_the_real_parser():
    argv = sfr_train_command(PYTHON, "/t/l abelled.nrrd", "/t/labels.seg.nrrd", "/t/unlabelled", "/out/study.zip")
    args = parse(argv)
    assert (args.labeled, args.labels, args.unlabeled_dir, args.output) == (
        "/t/l abelled.nrrd", "/t/labels.seg.nrrd", "/t/unlabelled", "/out/study.zip")
    assert (args.pseudo, args.select, args.resume, args.checkpoint, args.progress) == (
        "atlas", None, False, None, "json")
    args = parse(sfr_train_command(PYTHON, "a.nrrd", "b.seg.nrrd", "dir", "m.zip", pseudo="sam",
                                   checkpoint="sam_vit_b", select=0.6, iterations=40, resume=True))
    assert (args.pseudo, args.checkpoint, args.select, args.iterations, args.resume) == (
        "sam", "sam_vit_b", 0.6, 40, True)


@pytest.mark.parametrize("options, message", [
    (dict(pseudo="elastix"), "pseudo-label source"),
    (dict(pseudo="sam"), "need a SAM checkpoint"),
    (dict(checkpoint="sam_vit_b"), "only used with SAM"),
    (dict(select=0.0), "kept fraction"),
    (dict(iterations=0), "iterations"),
    (dict(bundle=" "), "bundle path"),
])
def test_sfr_train_command_names_the_bad_value(options, message):
    paths = dict(labeled="a.nrrd", labels="b.seg.nrrd", unlabeled_dir="dir", bundle="m.zip")
    paths.update({k: v for k, v in options.items() if k in paths})
    rest = {k: v for k, v in options.items() if k not in paths}
    with pytest.raises(ValueError, match=message):
        sfr_train_command(PYTHON, **paths, **rest)


def test_can_resume_once_the_work_folder_holds_a_checkpoint(tmp_path):
    bundle = tmp_path / "study.zip"
    assert work_folder(bundle) == str(tmp_path / "study.zip.work") and not can_resume(bundle)
    (tmp_path / "study.zip.work").mkdir()
    (tmp_path / "study.zip.work" / CHECKPOINT_NAME).write_bytes(b"checkpoint")
    assert can_resume(bundle)
