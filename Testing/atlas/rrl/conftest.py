"""RRL-MedSAM tests: one torch thread per module (module-scoped, so that it is in place before the
module-scoped training fixtures; small tensors: extra OpenMP threads only spin on a shared machine)."""

import pytest

from SAMFewShotLib.sam.encoder import torch_threads


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    with torch_threads(1):
        yield
