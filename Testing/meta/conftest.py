"""The meta tests (helpers in ``Testing.meta.meta_cases``): one torch thread per module.

Online steps are many small operations; on a shared 2-core machine two torch threads fight the
other processes for the cores and run several times slower than one.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    import torch  # here, not at the top: without torch the modules skip themselves (importorskip)

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
