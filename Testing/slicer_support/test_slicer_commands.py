"""Tests of slicer_support/commands.py: the propagate and suggest argv lists the Slicer module
runs, checked against the real ``samfewshot`` argument parser, and the engine tooltips. (The
weights, atlas and batch command lines are tested in Testing/slicer_support/.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from SAMFewShotLib import engines
from SAMFewShotLib.cli.main import build_parser
from SAMFewShotLib.slicer_support import commands
from SAMFewShotLib.slicer_support.commands import (
    NEEDS_CHECKPOINT,
    NEEDS_TORCH,
    base_command,
    empty_slices_spec,
    engine_requirements,
    propagate_command,
    suggest_command,
)

PYTHON = "/opt/Slicer 5.8/bin/PythonSlicer"  # a space in the path: argv needs no quoting


def parse(argv: list[str]):
    """The namespace the CLI's own parser makes of ``argv`` (after ``python -m SAMFewShotLib``)."""
    assert argv[:3] == [PYTHON, "-m", "SAMFewShotLib"]
    return build_parser().parse_args(argv[3:])


def test_propagate_command_default():
    argv = propagate_command(PYTHON, "/t/image.nrrd", "/t/drawn.nrrd", "/t/out.seg.nrrd", "/t/report.json")
    assert argv == [
        PYTHON, "-m", "SAMFewShotLib", "propagate", "/t/image.nrrd", "/t/drawn.nrrd",
        "-o", "/t/out.seg.nrrd", "--engine", "auto", "--progress", "json", "--report", "/t/report.json",
    ]  # fmt: skip
    args = parse(argv)
    assert (args.engine, args.progress, args.report, args.axis) == ("auto", "json", "/t/report.json", "auto")


def test_propagate_command_accepts_paths():
    argv = propagate_command(
        Path(PYTHON), Path("/t/a b.nii.gz"), Path("/t/c.nii.gz"), Path("/t/o.nii.gz"), Path("/r.json")
    )
    assert argv[0] == PYTHON and "/t/a b.nii.gz" in argv and all(isinstance(a, str) for a in argv)


def test_propagate_command_sam_options_only_for_sam():
    sam = propagate_command(PYTHON, "i", "a", "o", "r", engine="sam", checkpoint="sam_vit_b", refine=2, init="x.pt")
    assert sam[-4:] == ["--checkpoint", "sam_vit_b", "--refine", "2"]
    args = parse(sam)
    assert (args.engine, args.checkpoint, args.refine, args.init) == ("sam", "sam_vit_b", 2, None)
    sam_interpolate = propagate_command(PYTHON, "i", "a", "o", "r", engine="sam:interpolate", checkpoint="x.pth")
    assert sam_interpolate[-2:] == ["--checkpoint", "x.pth"]
    register = propagate_command(
        PYTHON, "i", "a", "o", "r", engine="register:dis", checkpoint="sam_vit_b", refine=2, init="x.pt"
    )
    assert "--checkpoint" not in register and "--refine" not in register and "--init" not in register
    assert parse(register).engine == "register:dis"


def test_propagate_command_fewshot_and_meta_take_a_checkpoint():
    fewshot = propagate_command(
        PYTHON, "i", "a", "o", "r", engine="fewshot", checkpoint="sam_vit_b", refine=2, init="x.pt"
    )
    assert fewshot[-2:] == ["--checkpoint", "sam_vit_b"]  # --refine is for sam, --init for meta
    assert (parse(fewshot).engine, parse(fewshot).checkpoint) == ("fewshot", "sam_vit_b")
    meta = propagate_command(PYTHON, "i", "a", "o", "r", engine="meta", checkpoint="sam_vit_b", init="/m/init one.pt")
    assert meta[-4:] == ["--checkpoint", "sam_vit_b", "--init", "/m/init one.pt"]
    args = parse(meta)
    assert (args.engine, args.checkpoint, args.init, args.refine) == ("meta", "sam_vit_b", "/m/init one.pt", None)
    assert "--init" not in propagate_command(PYTHON, "i", "a", "o", "r", engine="meta", checkpoint="c", init="")


def test_propagate_command_axis_and_empty_slices():
    argv = propagate_command(
        PYTHON, "i", "a", "o", "r", engine="register", axis="coronal", empty_slices={5: [12, 40], 1: [3]}
    )
    assert argv[-4:] == ["--axis", "coronal", "--empty-slices", "1:3;5:12,40"]
    args = parse(argv)
    assert (args.axis, args.empty_slices) == ("coronal", "1:3;5:12,40")


@pytest.mark.parametrize(
    "given, expected",
    [(None, None), ("", None), (" 12,40 ", "12,40"), ("5:12;1:3", "5:12;1:3"), ([12, 40], "12,40"), ([], None),
     ({5: [12, 40], 1: [3]}, "1:3;5:12,40"), ({5: []}, None)],
)  # fmt: skip
def test_empty_slices_spec(given, expected):
    assert empty_slices_spec(given) == expected


@pytest.mark.parametrize("given", [[-1], [1.5], [True], {0: [3]}, {2.5: [3]}])
def test_empty_slices_spec_rejects_bad_values(given):
    with pytest.raises(ValueError, match="must be integers"):
        empty_slices_spec(given)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"engine": "nope"}, "'nope'"),
        ({"engine": ""}, "non-empty"),
        ({"axis": "oblique"}, "'oblique'"),
        ({"engine": "sam", "refine": -1}, "-1"),
    ],
)
def test_propagate_command_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        propagate_command(PYTHON, "i", "a", "o", "r", **kwargs)


def test_suggest_command():
    argv = suggest_command(PYTHON, "/t/ct.nrrd", k=5, slice_range=(60, 111), axis="axial", json_path="/t/s.json")
    assert argv == [
        PYTHON, "-m", "SAMFewShotLib", "suggest", "/t/ct.nrrd", "--k", "5", "--axis", "axial",
        "--range", "60:111", "--json", "/t/s.json", "--progress", "json",
    ]  # fmt: skip
    args = parse(argv)
    assert (args.k, args.range, args.json, args.checkpoint, args.progress) == (5, "60:111", "/t/s.json", None, "json")
    args = parse(suggest_command(PYTHON, "ct.nrrd", k=3, slice_range="4:9", axis="sagittal", checkpoint="mobile_sam"))
    assert (args.k, args.range, args.axis, args.checkpoint) == (3, "4:9", "sagittal", "mobile_sam")


@pytest.mark.parametrize(
    "kwargs, message", [({"k": 0}, "k must"), ({"axis": "auto"}, "'auto'"), ({"slice_range": (9, 4)}, r"\(9, 4\)")]
)
def test_suggest_command_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        suggest_command(PYTHON, "ct.nrrd", **kwargs)


def test_base_command():
    assert base_command(PYTHON, "weights", "list") == [PYTHON, "-m", "SAMFewShotLib", "weights", "list"]
    with pytest.raises(ValueError, match="empty string"):
        base_command("", "weights")


@pytest.mark.parametrize(
    "engine, torch_available, present, expected",
    [
        ("auto", False, [], None),
        ("interpolate", False, [], None),
        ("register:elastix", False, [], None),
        ("sam", True, ["sam_vit_b"], None),
        ("sam", False, ["sam_vit_b"], NEEDS_TORCH),
        ("sam:interpolate", True, [], NEEDS_CHECKPOINT),
        ("sam", False, [], f"{NEEDS_TORCH}; {NEEDS_CHECKPOINT}"),
        ("fewshot", True, ["sam_vit_b"], None),
        ("fewshot", False, [], f"{NEEDS_TORCH}; {NEEDS_CHECKPOINT}"),
        ("meta", True, ["sam_vit_b"], None),
        ("meta", True, [], NEEDS_CHECKPOINT),
    ],
)
def test_engine_requirements(engine, torch_available, present, expected):
    assert engine_requirements(engine, torch_available, present) == expected


def test_engine_requirements_texts():
    assert NEEDS_TORCH == "needs PyTorch (install from the Extension Manager: PyTorch)"
    assert NEEDS_CHECKPOINT == "needs a SAM checkpoint: import one under Model"
    with pytest.raises(ValueError, match="'atlas'"):
        engine_requirements("atlas", True, [])


def test_every_engine_of_the_catalogue_gets_a_valid_command():
    assert set(commands.REFINING_ENGINES) | set(commands.INIT_ENGINES) <= set(commands.WEIGHTED_ENGINES)
    for name in engines.ENGINE_NAMES:  # every engine the backend builds gets a valid command
        parse(propagate_command(PYTHON, "i", "a", "o", "r", engine=name, checkpoint="c"))


def test_slicer_support_imports_no_slicer_qt_or_vtk():
    folder = Path(commands.__file__).parent
    forbidden = {"slicer", "qt", "vtk", "ctk", "PythonQt", "SampleData", "PyTorchUtils"}
    assert len(list(folder.glob("*.py"))) >= 10
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            assert not {n.split(".")[0] for n in names} & forbidden, f"{path.name} imports {names}"


def test_propagate_device_is_passed_to_weighted_engines_only():
    from SAMFewShotLib.slicer_support.commands import propagate_command

    argv = propagate_command(
        "python", "i.nrrd", "a.nrrd", "o.nrrd", "r.json", engine="sam", checkpoint="c", device="cpu"
    )
    assert argv[argv.index("--device") + 1] == "cpu"
    assert "--device" not in propagate_command("python", "i", "a", "o", "r", engine="register", device="cpu")
    mps = propagate_command("python", "i", "a", "o", "r", engine="sam", checkpoint="c", device="mps")
    assert mps[mps.index("--device") + 1] == "mps"  # Apple GPUs
    with pytest.raises(ValueError, match="tpu"):
        propagate_command("python", "i", "a", "o", "r", engine="sam", device="tpu")
