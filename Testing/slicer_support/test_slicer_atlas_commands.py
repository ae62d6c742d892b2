"""Tests of slicer_support/atlas_commands.py: the atlas command lines of the Slicer module
(checked against the real parser once ``samfewshot atlas`` is registered) and the bundle
description read from ``atlas info --json``."""

from __future__ import annotations

import json

import pytest

from Testing.slicer_support.cli_parsing import PYTHON, parse
from SAMFewShotLib.slicer_support.atlas_commands import (
    FUSION_METHODS,
    AtlasInfo,
    atlas_apply_command,
    atlas_create_command,
    atlas_info_command,
    parse_atlas_info,
)

LIVER_TERMINOLOGY = (
    "Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure"
    "~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^"
)
INFO = {
    "format_version": 1,
    "name": "abdomen",
    "modality": "CT",
    "engine": "registration",
    "atlases": 3,
    "labels": [
        {"value": 1, "name": "liver", "color": [0.8, 0.4, 0.2], "terminology": LIVER_TERMINOLOGY},
        {"value": 5, "name": "spleen", "color": [0, 1, 0], "terminology": None},
    ],
    "weights": [{"member": "network.pt", "sha256": "ab" * 32}],
    "parameters": {"grid_mm": 20},
}


def test_atlas_info_command():
    argv = atlas_info_command(PYTHON, "/b/abdomen atlas.zip")
    assert argv == [PYTHON, "-m", "SAMFewShotLib", "atlas", "info", "/b/abdomen atlas.zip", "--json"]
    args = parse(argv)
    assert args.json is True
    with pytest.raises(ValueError, match="atlas bundle path must not be empty"):
        atlas_info_command(PYTHON, " ")


def test_atlas_apply_command_defaults():
    argv = atlas_apply_command(PYTHON, "/t/image.nrrd", "/b/atlas.zip", "/t/atlas.seg.nrrd", "/t/report.json")
    assert argv[3:] == [
        "atlas", "apply", "/t/image.nrrd", "/b/atlas.zip", "-o", "/t/atlas.seg.nrrd",
        "--progress", "json", "--report", "/t/report.json",
    ]  # fmt: skip
    args = parse(argv)
    assert (args.progress, args.report) == ("json", "/t/report.json")


@pytest.mark.parametrize("fusion", FUSION_METHODS)
def test_atlas_apply_command_options(fusion):
    argv = atlas_apply_command(PYTHON, "i.nrrd", "b.zip", "o.seg.nrrd", "r.json", fusion=fusion, refine="sam",
                               checkpoint="sam_vit_b", device="cpu")
    assert argv[-8:] == ["--fusion", fusion, "--refine", "sam", "--checkpoint", "sam_vit_b", "--device", "cpu"]
    args = parse(argv)
    assert (args.fusion, args.refine, args.checkpoint, args.device) == (fusion, "sam", "sam_vit_b", "cpu")


@pytest.mark.parametrize(
    "kwargs, message",
    [({"fusion": "mean"}, "'mean'"), ({"refine": "medsam", "checkpoint": "c"}, "'medsam'"),
     ({"refine": "sam"}, "needs a SAM checkpoint"), ({"device": "tpu"}, "'tpu'")],
)  # fmt: skip
def test_atlas_apply_command_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        atlas_apply_command(PYTHON, "i", "b", "o", "r", **kwargs)


def test_atlas_create_command():
    argv = atlas_create_command(PYTHON, "/t/img.nrrd", "/t/labels.seg.nrrd", "/b/ball.zip", name=" ball atlas ", modality="MR")
    assert argv[3:] == ["atlas", "create", "/t/img.nrrd", "/t/labels.seg.nrrd", "-o", "/b/ball.zip",
                        "--name", "ball atlas", "--modality", "MR"]
    args = parse(argv)
    assert (args.name, args.modality) == ("ball atlas", "MR")
    assert "--name" not in atlas_create_command(PYTHON, "i", "l", "b")
    with pytest.raises(ValueError, match="name must not be empty"):
        atlas_create_command(PYTHON, "i", "l", "b", name="")


def test_parse_atlas_info():
    info = parse_atlas_info(json.dumps(INFO))
    assert (info.name, info.modality, info.engine, info.atlases, info.weights) == ("abdomen", "CT", "registration", 3, ("network.pt",))
    assert [(label.value, label.name, label.color, label.terminology) for label in info.labels] == [
        (1, "liver", (0.8, 0.4, 0.2), LIVER_TERMINOLOGY), (5, "spleen", (0.0, 1.0, 0.0), None),
    ]
    assert parse_atlas_info(INFO) == info


def test_atlas_info_summary():
    info = parse_atlas_info(INFO)
    assert info.summary() == "abdomen (CT, registration, 3 atlases)\n2 structures: liver, spleen"
    one = AtlasInfo(name="ball", modality="MR", engine="registration", atlases=1, labels=())
    assert one.summary() == "ball (MR, registration, 1 atlas)\n0 structures: (none)"


@pytest.mark.parametrize(
    "change, message",
    [({"name": 3}, "'name' must be a string"), ({"atlases": -1}, "'atlases' must be an integer"),
     ({"atlases": True}, "'atlases'"), ({"labels": {"1": "liver"}}, "list"),
     ({"labels": [{"value": 0, "name": "x", "color": [0, 0, 0]}]}, "positive integer"),
     ({"labels": [{"value": 1, "name": "x", "color": [0, 0, 2]}]}, "colour"),
     ({"labels": [{"value": 1, "name": "a", "color": [0, 0, 0]}, {"value": 1, "name": "b", "color": [0, 0, 0]}]}, "unique"),
     ({"weights": "network.pt"}, "'weights' must be a list")],
)  # fmt: skip
def test_parse_atlas_info_rejects_bad_fields(change, message):
    with pytest.raises(ValueError, match=message):
        parse_atlas_info({**INFO, **change})


@pytest.mark.parametrize("text, message", [("abdomen (CT)", "not JSON"), ("[1, 2]", "JSON object")])
def test_parse_atlas_info_rejects_other_output(text, message):
    with pytest.raises(ValueError, match=message):
        parse_atlas_info(text)
