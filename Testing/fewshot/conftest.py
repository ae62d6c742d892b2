"""Fixtures of the few-shot tests (see fewshot_cases.py): the case and one trained head, all run
on :data:`fewshot_cases.THREADS` torch threads (restored afterwards)."""

from __future__ import annotations

import pytest

# Torch is imported inside the fixtures: without torch every test module here skips itself
# (pytest.importorskip), and this file must still import.


@pytest.fixture(scope="module", autouse=True)
def few_threads():
    """Every few-shot test module runs torch on :data:`THREADS` threads."""
    from SAMFewShotLib.sam.encoder import torch_threads
    from Testing.fewshot.fewshot_cases import THREADS

    with torch_threads(THREADS):
        yield


@pytest.fixture(scope="session")
def case(tmp_path_factory):
    """The few-shot case (a ``fewshot_cases.Case``)."""
    from Testing.fewshot.fewshot_cases import make_case

    return make_case(tmp_path_factory.mktemp("fewshot"))


@pytest.fixture(scope="session")
def trained(case):
    """The head trained on the case (a ``FitResult``); session fixtures start before the
    module-scoped thread setting, so this one sets it itself."""
    from SAMFewShotLib.fewshot import train_head
    from SAMFewShotLib.fewshot.training import TrainingConfig
    from SAMFewShotLib.sam.encoder import torch_threads
    from Testing.fewshot.fewshot_cases import THREADS, TINY_TRAINING

    with torch_threads(THREADS):
        return train_head(case.image, case.annotation, checkpoint=str(case.checkpoint), device="cpu",
                          cache=case.cache, config=TrainingConfig(**TINY_TRAINING))
