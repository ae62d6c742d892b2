"""Shared test configuration: markers, and one thread budget per pytest-xdist worker.

``Testing`` is a package mirroring ``SAMFewShotLib``; pytest puts the repository root on
``sys.path`` (``pythonpath`` in pyproject.toml), so tests import their helpers as
``from Testing.phantoms import ...``, ``from Testing import tiny_sam``,
``from Testing.meta import meta_cases``; no test edits ``sys.path``."""

import os

#: Native thread pools read these when they start (torch, OpenBLAS, MKL, ITK), and the CLI
#: children the tests run inherit them.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: loads a heavy dependency (itk-elastix, ~10-25 s); deselect with -m 'not slow'"
    )
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        # n workers on c cores: c // n threads each, so the workers do not oversubscribe the
        # cores (set before any test imports torch or SimpleITK; a value the user set wins)
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        for name in THREAD_VARIABLES:
            os.environ.setdefault(name, threads)
