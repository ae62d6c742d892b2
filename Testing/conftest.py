"""Shared test configuration: markers.

``Testing`` is a package mirroring ``SAMFewShotLib``; pytest puts the repository root on
``sys.path`` (``pythonpath`` in pyproject.toml), so tests import their helpers as
``from Testing.phantoms import ...``, ``from Testing import tiny_sam``,
``from Testing.meta import meta_cases``; no test edits ``sys.path``."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: loads a heavy dependency (itk-elastix, ~10-25 s); deselect with -m 'not slow'"
    )
