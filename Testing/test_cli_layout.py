"""The shape of the command-line package (SAMFewShotLib/cli/): the parser builds without torch,
and the shared options are declared once, in cli/arguments.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[1] / "SAMFewShotLib" / "cli"


def test_building_the_parser_imports_no_torch():
    code = (
        "import sys; from SAMFewShotLib.cli.main import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'segment_anything', 'itk') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("option", ["--checkpoint", "--model-type", "--device", "--report", "--empty-slices"])
def test_shared_options_are_declared_only_in_arguments_py(option):
    declared = {
        path.name for path in CLI.glob("*.py") if re.search(rf'add_argument\(\s*"{option}"', path.read_text())
    }
    assert declared == {"arguments.py"}
