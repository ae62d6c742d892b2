"""RRL-MedSAM tests: one torch thread per module (module-scoped, so that it is in place before the
module-scoped training fixtures; small tensors: extra OpenMP threads only spin on a shared machine)."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    from SAMFewShotLib.sam.encoder import torch_threads  # here: without torch the modules skip themselves

    with torch_threads(1):
        yield
