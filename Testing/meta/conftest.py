"""The meta tests: this folder on sys.path (``import meta_cases``), one torch thread per module.

Online steps are many small operations; on a shared 2-core machine two torch threads fight the
other processes for the cores and run several times slower than one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
