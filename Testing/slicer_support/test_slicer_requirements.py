"""Tests of slicer_support/requirements.py: the first-use package lists stay in sync with
pyproject.toml, and what is missing is told correctly (against this environment's packages)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from SAMFewShotLib.slicer_support import requirements
from SAMFewShotLib.slicer_support.requirements import (
    missing_requirements,
    offline_install_instructions,
    pinned_conflicts,
    pinned_package_constraints,
    requirement_name,
    requirement_satisfied,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11: tomli is the same parser, if installed
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict:
    if tomllib is None:
        pytest.skip("reading pyproject.toml needs Python 3.11+ (tomllib) or the tomli package")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _extra(name: str) -> list[str]:
    return [r.split("#")[0].strip() for r in _pyproject()["project"]["optional-dependencies"][name]]


def test_python_requirements_match_pyproject_without_simpleitk():
    dependencies = _pyproject()["project"]["dependencies"]
    expected = [d.split("#")[0].strip() for d in dependencies if not d.lower().startswith("simpleitk")]
    assert list(requirements.PYTHON_REQUIREMENTS) == expected
    assert any(d.lower().startswith("simpleitk") for d in dependencies)  # it is Slicer's, never ours to install


def test_sam_requirements_match_the_sam_extra_without_torch():
    sam = _extra("sam")
    by_name = {requirement_name(r): r for r in sam}
    assert list(requirements.SAM_PYTHON_REQUIREMENTS) == [
        r for r in sam if requirement_name(r) not in ("torch", "torchvision")
    ]
    assert "torch" + requirements.TORCH_VERSION_REQUIREMENT == by_name["torch"]
    assert "torchvision" + requirements.TORCHVISION_VERSION_REQUIREMENT == by_name["torchvision"]


def test_dist_requirements_match_the_dist_extra():
    assert list(requirements.DIST_PYTHON_REQUIREMENTS) == _extra("dist")


def test_sfr_requirements_match_the_sfr_extra():
    assert list(requirements.SFR_PYTHON_REQUIREMENTS) == _extra("sfr")


def test_applying_a_bundle_asks_for_what_its_engine_runs():
    assert requirements.bundle_requirements("sfr") == (True, True)  # a MONAI network on torch
    assert requirements.bundle_requirements("rrl_medsam") == (True, False)  # a torch network
    for engine in ("registration", "elastix", None):
        assert requirements.bundle_requirements(engine) == (False, False)


def test_pinned_packages_are_slicers_own():
    assert {"SimpleITK", "numpy", "torch", "torchvision"} <= set(requirements.PINNED_PACKAGES)
    assert pinned_conflicts(["numpy>=99", "tqdm>=1", "simpleitk>=2"]) == ["numpy>=99", "simpleitk>=2"]


@pytest.mark.parametrize(
    "text, name",
    [("timm>=0.9,<2", "timm"), ("mobilesam-mirror==1.0.0", "mobilesam-mirror"), ("dask[distributed]>=2024.1", "dask"),
     ("  scipy ", "scipy"), ("pillow; python_version>'3'", "pillow")],
)  # fmt: skip
def test_requirement_name(text, name):
    assert requirement_name(text) == name


def test_requirement_name_rejects_a_missing_name():
    with pytest.raises(ValueError, match="'>=1.0'"):
        requirement_name(">=1.0")


def test_requirement_satisfied_checks_presence_and_version():
    numpy_version = importlib.metadata.version("numpy")
    assert requirement_satisfied(f"numpy=={numpy_version}")
    assert requirement_satisfied("numpy>=1.0")
    assert not requirement_satisfied("numpy>=999")
    assert not requirement_satisfied("no-such-distribution-samfewshot>=1")


def test_requirement_satisfied_checks_the_packages_of_an_extra():
    """dask[distributed] is met only when distributed (what the extra pulls in) is installed too."""
    pytest.importorskip("distributed", reason="the dist extra is not installed")
    assert requirement_satisfied("dask") and requirement_satisfied("distributed")  # the test environment has [dist]
    assert requirement_satisfied("dask[distributed]>=2024.1")
    assert requirement_satisfied("dask[no-such-extra]")  # an unknown extra pulls in nothing
    with pytest.raises(ValueError, match="pip requirement"):
        requirement_satisfied("numpy>>1")


def test_missing_requirements_keeps_order():
    assert missing_requirements(["numpy>=1", "no-such-a>=1", "scipy>=999", "tqdm"]) == ["no-such-a>=1", "scipy>=999"]
    assert missing_requirements(requirements.PYTHON_REQUIREMENTS) == []  # the test environment has them all


def test_pinned_package_constraints_name_installed_versions():
    pins = pinned_package_constraints()
    assert f"numpy=={importlib.metadata.version('numpy')}" in pins
    assert any(p.lower().startswith("simpleitk==") for p in pins)
    assert pinned_package_constraints(["no-such-distribution-samfewshot"]) == []


def test_offline_install_instructions():
    text = offline_install_instructions(["nibabel>=4.0", "tqdm>=4.60"])
    assert 'pip download -d samfewshot-wheels "nibabel>=4.0" "tqdm>=4.60"' in text
    assert "'--no-index', '--find-links'" in text and "'nibabel>=4.0', 'tqdm>=4.60'" in text


def test_a_requirement_whose_marker_does_not_apply_is_not_missing():
    assert requirements.requirement_satisfied("surely-not-installed-xyz==1.0; python_version < '3'")
    assert not requirements.requirement_satisfied("surely-not-installed-xyz==1.0; python_version >= '3'")
