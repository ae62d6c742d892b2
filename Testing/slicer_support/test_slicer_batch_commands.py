"""Tests of slicer_support/batch_commands.py: the batch command line of the Slicer module,
checked against the real ``samfewshot batch`` parser, and how a model path is classified."""

from __future__ import annotations

import json

import pytest

from Testing.slicer_support.cli_parsing import PYTHON, parse
from SAMFewShotLib.slicer_support.batch_commands import batch_command, check_scheduler, model_kind


@pytest.fixture
def models(tmp_path):
    """A bundle folder, a bundle zip name, a few-shot head and a reference image (names only matter)."""
    folder = tmp_path / "atlas"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"format_version": 1}))
    head = tmp_path / "liver.sfs"
    head.write_bytes(b"head")
    image = tmp_path / "reference.nrrd"
    image.write_bytes(b"image")
    return {"folder": str(folder), "zip": str(tmp_path / "atlas.zip"), "head": str(head), "image": str(image)}


def test_model_kind(models, tmp_path):
    assert model_kind(models["folder"]) == "atlas"
    assert model_kind(models["zip"]) == "atlas"  # by name, like the command
    assert model_kind(models["head"]) == "head"
    assert model_kind(models["image"]) == "reference"
    assert model_kind(tmp_path) == "reference"  # a folder without manifest.json: a DICOM reference


def test_batch_command_with_an_atlas_bundle(models):
    argv = batch_command(PYTHON, ["/t/inputs/CT 1.nrrd", "/t/inputs/CT_2.nrrd"], models["folder"], "/out dir")
    assert argv[3:] == ["batch", "/t/inputs/CT 1.nrrd", "/t/inputs/CT_2.nrrd", "--model", models["folder"],
                        "-o", "/out dir", "--progress", "json"]
    args = parse(argv)
    assert (args.inputs, args.model, args.output, args.progress) == (["/t/inputs/CT 1.nrrd", "/t/inputs/CT_2.nrrd"],
                                                                   models["folder"], "/out dir", "json")
    assert (args.annotation, args.engine, args.checkpoint, args.scheduler, args.force, args.format) == (
        None, None, None, None, False, "seg.nrrd")


def test_batch_command_with_a_head_needs_its_checkpoint(models):
    argv = batch_command(PYTHON, ["/data"], models["head"], "/out", checkpoint="sam_vit_b", engine="register")
    args = parse(argv)
    assert (args.model, args.checkpoint, args.engine, args.annotation) == (models["head"], "sam_vit_b", None, None)
    with pytest.raises(ValueError, match="needs the SAM checkpoint"):
        batch_command(PYTHON, ["/data"], models["head"], "/out")


def test_batch_command_with_a_reference(models):
    argv = batch_command(PYTHON, ["/data"], models["image"], "/out", annotation="/t/ref.seg.nrrd", engine="auto",
                         checkpoint="sam_vit_b", scheduler=" local:2 ", force=True, output_format="both")
    args = parse(argv)
    assert (args.annotation, args.engine, args.checkpoint) == ("/t/ref.seg.nrrd", "auto", None)  # auto needs no weights
    assert (args.scheduler, args.force, args.format) == ("local:2", True, "both")
    weighted = parse(batch_command(PYTHON, ["/d"], models["image"], "/o", annotation="a.nrrd", engine="sam", checkpoint="c"))
    assert (weighted.engine, weighted.checkpoint) == ("sam", "c")
    with pytest.raises(ValueError, match="needs its annotation"):
        batch_command(PYTHON, ["/data"], models["image"], "/out")


@pytest.mark.parametrize(
    "kwargs, message",
    [({"inputs": []}, "one or more"), ({"inputs": [""]}, "one or more"), ({"model": ""}, "model path"),
     ({"output_dir": " "}, "output folder"), ({"output_format": "mha"}, "'mha'"), ({"scheduler": "gpu:2"}, "'gpu:2'")],
)  # fmt: skip
def test_batch_command_rejects_bad_values(models, kwargs, message):
    arguments = {"inputs": ["/data"], "model": models["folder"], "output_dir": "/out", **kwargs}
    with pytest.raises(ValueError, match=message):
        batch_command(PYTHON, **arguments)


@pytest.mark.parametrize("text, expected", [(None, None), ("  ", None), ("local:4", "local:4"), (" tcp://10.0.0.2:8786 ", "tcp://10.0.0.2:8786")])
def test_check_scheduler(text, expected):
    assert check_scheduler(text) == expected


@pytest.mark.parametrize("text", ["local:0", "local", "tcp://host", "http://host:80", "4"])
def test_check_scheduler_rejects_other_text(text):
    with pytest.raises(ValueError, match="local:N"):
        check_scheduler(text)
