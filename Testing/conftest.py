"""Shared test configuration: markers; this folder is on sys.path, so tests import ``phantoms``."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: loads a heavy dependency (itk-elastix, ~10-25 s); deselect with -m 'not slow'"
    )
