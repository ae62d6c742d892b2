"""Tests of slicer_support/extension_description.py: the Extensions Index description generated
from CMakeLists.txt, the LICENSE, and the one marked block of placeholders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from SAMFewShotLib.slicer_support import extension_description as ed

ROOT = Path(__file__).resolve().parents[2]

SAMPLE = '''
project(Demo)
# A comment with set(IGNORED "x")
set(REPO "https://github.com/me/SlicerDemo")  # trailing comment
set(EXTENSION_HOMEPAGE "${REPO}")
set(EXTENSION_CATEGORY "Segmentation")
set(EXTENSION_CONTRIBUTORS "Ann Lee (Some Lab), Bo Chan (Other Org.)")
set(EXTENSION_DESCRIPTION "Does \\"things\\".")
set(EXTENSION_ICONURL "${REPO}/icon.png")
set(EXTENSION_SCREENSHOTURLS "${REPO}/a.png")
set(EXTENSION_DEPENDS "PyTorch")
set(SAMFEWSHOT_REPOSITORY_URL "${REPO}")
'''


def test_variables_substitute_earlier_ones_and_skip_comments():
    variables = ed.cmake_variables(SAMPLE)
    assert variables["PROJECT_NAME"] == "Demo" and "IGNORED" not in variables
    assert variables["EXTENSION_ICONURL"] == "https://github.com/me/SlicerDemo/icon.png"
    assert variables["EXTENSION_DESCRIPTION"] == 'Does "things".'


def test_catalog_entry_has_only_schema_keys():
    entry = ed.catalog_entry(ed.metadata(SAMPLE))
    assert set(entry) == {"$schema", "build_dependencies", "build_subdirectory", "category", "scm_revision", "scm_url", "tier"}
    assert entry["build_dependencies"] == ["PyTorch"] and entry["scm_url"] == "https://github.com/me/SlicerDemo.git"


def test_s4ext_lines():
    text = ed.s4ext_text(ed.metadata(SAMPLE))
    lines = dict(line.split(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert lines["scmurl"] == "https://github.com/me/SlicerDemo.git" and lines["depends"] == "PyTorch"
    assert lines["contributors"] == "Ann Lee (Some Lab), Bo Chan (Other Org.)" and lines["category"] == "Segmentation"


def test_contributors_must_be_name_and_organization():
    with pytest.raises(ValueError, match="Name \\(Organization\\)"):
        ed.metadata(SAMPLE.replace("Ann Lee (Some Lab), Bo Chan (Other Org.)", "SAMFewShot contributors"))
    with pytest.raises(ValueError, match="EXTENSION_CATEGORY"):
        ed.metadata(SAMPLE.replace('set(EXTENSION_CATEGORY "Segmentation")', ""))


def test_the_committed_description_files_are_up_to_date():
    for path, text in ed.generated_files(ROOT).items():
        assert path.is_file(), f"{path} is missing: run python -m SAMFewShotLib.slicer_support.extension_description"
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: regenerate it"
    json.loads((ROOT / "ExtensionsIndex" / "SAMFewShot.json").read_text())


def test_placeholders_live_in_one_marked_block_of_cmakelists():
    text = (ROOT / "CMakeLists.txt").read_text()
    start, end = text.index(">>> TO FILL IN"), text.index("<<< END OF THE PLACEHOLDERS")
    assert ed.PLACEHOLDER not in text[:start] + text[end:]
    meta = ed.metadata(text)
    assert set(ed.placeholders(meta)) <= {"homepage", "iconurl", "screenshoturls", "scm_url", "contributors"}


def test_license_is_apache_2_as_pyproject_says():
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text
    assert 'license = { text = "Apache-2.0" }' in (ROOT / "pyproject.toml").read_text()


def test_main_writes_both_files(tmp_path, capsys):
    (tmp_path / "CMakeLists.txt").write_text(SAMPLE)
    assert ed.main([str(tmp_path)]) == 0
    assert (tmp_path / "ExtensionsIndex" / "Demo.json").is_file() and (tmp_path / "ExtensionsIndex" / "Demo.s4ext").is_file()
    assert "still to fill in" not in capsys.readouterr().out
