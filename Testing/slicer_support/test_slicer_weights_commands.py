"""Tests of slicer_support/weights_commands.py: the weights command lines (checked against the
real parser) and what the module reads of their output."""

from __future__ import annotations

import json

import pytest

from Testing.slicer_support.cli_parsing import PYTHON, parse
from SAMFewShotLib.slicer_support.weights_commands import (
    CheckpointRow,
    command_message,
    parse_weights_list,
    present_checkpoints,
    weights_import_command,
    weights_list_command,
    weights_verify_command,
)

LIST = {
    "weights_dir": "/cache/weights",
    "checkpoints": [
        {"name": "sam_vit_b", "status": "present, verified", "model_type": "vit_b", "family": "sam",
         "licence": "Apache-2.0", "size": 375042383},
        {"name": "sam_vit_l", "status": "not present", "model_type": "vit_l", "family": "sam", "licence": "Apache-2.0",
         "size": None},
        {"name": "medsam_vit_b", "status": "present, no reference hash (sha256 recorded on first use)"},
        {"name": "sam_vit_h", "status": "present, hash mismatch"},
        {"name": "mobile_sam", "status": "partial download (10 of 40 bytes)"},
        {"name": "mine", "status": "present (user import)", "size": True},
        {"status": "a row without a name is skipped"},
        "not a row",
    ],
}  # fmt: skip


def test_weights_list_command():
    argv = weights_list_command(PYTHON)
    assert argv == [PYTHON, "-m", "SAMFewShotLib", "weights", "list", "--json", "--progress", "none"]
    args = parse(argv)
    assert (args.command, args.weights_command, args.json) == ("weights", "list", True)


def test_weights_import_command():
    argv = weights_import_command(PYTHON, "/data/my sam.pth", name=" mine ")
    assert argv[3:] == ["weights", "import", "/data/my sam.pth", "--name", "mine", "--progress", "json"]
    args = parse(argv)
    assert (args.weights_command, args.path, args.name, args.progress) == ("import", "/data/my sam.pth", "mine", "json")
    assert "--name" not in weights_import_command(PYTHON, "x.pth")


@pytest.mark.parametrize("kwargs, message", [({"path": ""}, "path must not be empty"), ({"path": "x", "name": " "}, "name")])
def test_weights_import_command_rejects_empty_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        weights_import_command(PYTHON, **kwargs)


def test_weights_verify_command():
    args = parse(weights_verify_command(PYTHON))
    assert (args.weights_command, args.name, args.progress) == ("verify", None, "json")
    assert parse(weights_verify_command(PYTHON, "sam_vit_b")).name == "sam_vit_b"


def test_parse_weights_list_rows():
    rows = parse_weights_list(LIST)
    assert [row.name for row in rows] == ["sam_vit_b", "sam_vit_l", "medsam_vit_b", "sam_vit_h", "mobile_sam", "mine"]
    assert rows[0] == CheckpointRow("sam_vit_b", "present, verified", "vit_b", "sam", "Apache-2.0", 375042383)
    assert rows[5].size is None  # a boolean is not a size
    assert parse_weights_list(json.dumps(LIST)) == rows


def test_usable_rows_and_present_checkpoints():
    assert [row.name for row in parse_weights_list(LIST) if row.usable] == ["sam_vit_b", "medsam_vit_b", "mine"]
    assert present_checkpoints(LIST) == ["sam_vit_b", "medsam_vit_b", "mine"]
    assert present_checkpoints(json.dumps(LIST)) == ["sam_vit_b", "medsam_vit_b", "mine"]


def test_tooltip_shows_architecture_size_licence_and_status():
    rows = parse_weights_list(LIST)
    assert rows[0].tooltip() == "sam_vit_b: vit_b sam, 375.0 MB, licence Apache-2.0 (present, verified)"
    assert rows[2].tooltip() == "medsam_vit_b: licence unknown (present, no reference hash (sha256 recorded on first use))"


@pytest.mark.parametrize("text, message", [("Weights cache: /x", "not JSON"), ('{"weights_dir": "/x"}', "'checkpoints'"), ("[1]", "JSON object")])
def test_parse_weights_list_rejects_other_output(text, message):
    with pytest.raises(ValueError, match=message):
        parse_weights_list(text)


def test_command_message():
    assert command_message(["Imported mine (vit_b, sam) -> /c/mine.pth", "", "sha256 ab (recorded)  "], "x") == (
        "Imported mine (vit_b, sam) -> /c/mine.pth\nsha256 ab (recorded)"
    )
    assert command_message([" ", ""], "Weights verify done.") == "Weights verify done."


def test_download_row_question_and_command():
    from SAMFewShotLib.slicer_support.weights_commands import weights_download_command

    listing = {"checkpoints": [
        {"name": "sam_vit_b", "status": "not present", "model_type": "vit_b", "family": "sam", "licence": "Apache-2.0",
         "size": 375042383, "url": "https://example.org/sam_vit_b.pth"},
        {"name": "mine", "status": "present, verified", "url": None},
    ]}
    remote, mine = parse_weights_list(json.dumps(listing))
    assert remote.downloadable and not mine.downloadable
    question = remote.download_question()
    assert "375 MB" in question and "Apache-2.0" in question and "https://example.org/sam_vit_b.pth" in question
    argv = weights_download_command(PYTHON, "sam_vit_b")
    assert argv[-4:] == ["download", "sam_vit_b", "--progress", "json"]
    args = parse(argv)
    assert args.name == "sam_vit_b"
    with pytest.raises(ValueError, match="must not be empty"):
        weights_download_command(PYTHON, " ")
