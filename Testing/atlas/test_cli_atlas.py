"""``samfewshot atlas create|info|apply``: end to end, and one line + exit 2 on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from SAMFewShotLib.cli.main import main
from SAMFewShotLib.volume_io import read_labels, write_labels, write_volume
from Testing import tiny_sam
from Testing.atlas.atlas_phantom import FAST, LIVER_TERMINOLOGY, phantom


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_atlas")
    image, labels = phantom((16, 32, 32), spacing=(2.0, 2.0, 2.5), seed=5)
    target, _ = phantom((16, 32, 32), spacing=(2.0, 2.0, 2.5), origin=(-38.0, -41.0, -39.0), seed=6)
    write_volume(image, folder / "atlas.nii.gz")
    write_labels(labels, folder / "atlas.seg.nrrd")
    write_volume(target, folder / "target.nrrd")
    (folder / "fast.json").write_text(json.dumps(FAST))
    return folder


def run(argv, capsys):
    code = main([str(a) for a in argv] + ["--progress", "none"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def create(files, capsys, output, *extra):
    code, out, err = run(["atlas", "create", files / "atlas.nii.gz", files / "atlas.seg.nrrd", "-o", output,
                          "--parameters", files / "fast.json", *extra], capsys)
    assert code == 0, err
    return out


def test_create_then_info_keeps_names_colours_and_terminology(files, capsys, tmp_path):
    out = create(files, capsys, tmp_path / "abdomen.zip", "--atlas", files / "atlas.nii.gz", files / "atlas.seg.nrrd")
    assert "2 atlases" in out
    code, out, _ = run(["atlas", "info", tmp_path / "abdomen.zip", "--json"], capsys)
    info = json.loads(out)
    assert code == 0 and info["name"] == "abdomen" and info["atlases"] == 2 and info["engine"] == "registration"
    assert info["labels"][0]["name"] == "liver" and info["labels"][0]["terminology"] == LIVER_TERMINOLOGY
    assert info["parameters"]["bspline_iterations"] == FAST["bspline_iterations"]
    code, out, _ = run(["atlas", "info", tmp_path / "abdomen.zip"], capsys)
    assert code == 0 and "liver" in out and "2 atlas image(s)" in out


def test_labels_json_names_the_labels(files, capsys, tmp_path):
    table = [{"value": v, "name": n, "color": [0.1 * v, 0.2, 0.3]} for v, n in ((1, "hepar"), (2, "lien"), (3, "ren"))]
    (tmp_path / "labels.json").write_text(json.dumps(table))
    create(files, capsys, tmp_path / "named", "--labels-json", tmp_path / "labels.json", "--name", "Latin")
    code, out, _ = run(["atlas", "info", tmp_path / "named", "--json"], capsys)
    info = json.loads(out)
    assert info["name"] == "Latin" and [l["name"] for l in info["labels"]] == ["hepar", "lien", "ren"]
    assert info["labels"][2]["color"] == pytest.approx([0.3, 0.2, 0.3])


@pytest.mark.slow
def test_apply_with_sam_refinement_writes_a_seg_nrrd_on_the_target_grid(files, capsys, tmp_path):
    create(files, capsys, tmp_path / "bundle.zip")
    checkpoint = tiny_sam.save_tiny_checkpoint(tmp_path / "tiny.pth")
    output, report = tmp_path / "out.seg.nrrd", tmp_path / "report.json"
    code, _, err = run(["atlas", "apply", files / "target.nrrd", tmp_path / "bundle.zip", "-o", output,
                        "--refine", "sam", "--checkpoint", checkpoint, "--device", "cpu", "--report", report], capsys)
    assert code == 0, err
    labels = read_labels(output)
    target_grid = read_labels(files / "atlas.seg.nrrd").volume  # same shape and spacing, another origin
    assert labels.volume.shape == target_grid.shape and labels.volume.origin == (-38.0, -41.0, -39.0)
    assert labels.segment(1).name == "liver" and labels.segment(1).terminology == LIVER_TERMINOLOGY
    assert np.isin(labels.array, [0, 1, 2, 3]).all() and (labels.array == 1).any()
    payload = json.loads(report.read_text())
    assert payload["refine"] == "sam" and payload["details"]["sam"]["decoder_calls"] > 0
    assert {"register atlas 0", "sam", "total"} <= set(payload["seconds"])


def _bad_bundle(files, capsys, tmp_path, damage):
    create(files, capsys, tmp_path / "b")
    damage(tmp_path / "b")
    return tmp_path / "b"


def _manifest_edit(change):
    def damage(folder):
        manifest = json.loads((folder / "manifest.json").read_text())
        change(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return damage


def _flip_last_byte(folder):
    member = folder / "atlases" / "atlas_0_labels.nii.gz"
    data = member.read_bytes()
    member.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))


@pytest.mark.parametrize(
    "damage, message",
    [
        (_manifest_edit(lambda m: m.update(format_version=2)), "bundle format version 2 is not supported"),
        (lambda folder: (folder / "atlases" / "atlas_0_image.nii.gz").unlink(), "missing member atlases/atlas_0_image"),
        (_flip_last_byte, "member atlases/atlas_0_labels.nii.gz is corrupt"),
        (lambda folder: (folder / "manifest.json").write_text("{oops"), "manifest.json is not valid JSON"),
    ],
    ids=["wrong-version", "missing-member", "hash-mismatch", "bad-json"],
)
@pytest.mark.parametrize("command", ["info", "apply"])
def test_bad_bundles_exit_2_with_one_line(files, capsys, tmp_path, damage, message, command):
    bundle = _bad_bundle(files, capsys, tmp_path, damage)
    argv = ["atlas", "info", bundle] if command == "info" else [
        "atlas", "apply", files / "target.nrrd", bundle, "-o", tmp_path / "out.nii.gz"]
    code, out, err = run(argv, capsys)
    assert code == 2 and message in err
    assert err.count("\n") == 1 and err.startswith("samfewshot: error: ")
    assert not (tmp_path / "out.nii.gz").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--refine", "sam"], "--refine sam needs --checkpoint"),
        (["--checkpoint", "x.pth"], "--checkpoint is only used with --refine sam"),
    ],
)
def test_apply_option_errors_exit_2(files, capsys, tmp_path, extra, message):
    code, _, err = run(["atlas", "apply", files / "target.nrrd", tmp_path / "none.zip", "-o", tmp_path / "o.nii.gz",
                        *extra], capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_rrl_output_on_a_registration_bundle_exits_2(files, capsys, tmp_path):
    create(files, capsys, tmp_path / "reg.zip")
    code, _, err = run(["atlas", "apply", files / "target.nrrd", tmp_path / "reg.zip", "-o", tmp_path / "o.nii.gz",
                        "--rrl-output", "registration"], capsys)
    assert code == 2 and "needs an rrl_medsam bundle, not a registration bundle" in err and err.count("\n") == 1
    assert not (tmp_path / "o.nii.gz").exists()


def test_create_errors_exit_2(files, capsys, tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps([{"value": 1, "name": "liver", "color": [1, 0, 0]}]))
    code, _, err = run(["atlas", "create", files / "atlas.nii.gz", files / "atlas.seg.nrrd", "-o", tmp_path / "b.zip",
                        "--labels-json", tmp_path / "labels.json"], capsys)
    assert code == 2 and "label values [2, 3] are not in --labels-json" in err
    code, _, err = run(["atlas", "create", files / "atlas.nii.gz", files / "atlas.seg.nrrd", "-o",
                        files / "atlas.nii.gz"], capsys)
    assert code == 2 and "is the input" in err
    (tmp_path / "p.json").write_text('{"iterations": 3}')
    code, _, err = run(["atlas", "create", files / "atlas.nii.gz", files / "atlas.seg.nrrd", "-o", tmp_path / "b.zip",
                        "--parameters", tmp_path / "p.json"], capsys)
    assert code == 2 and "Unknown registration parameter 'iterations'" in err
    assert not (tmp_path / "b.zip").exists()
