"""Fixtures of the few-shot tests (see fewshot_cases.py): the case and one trained head, all run
on :data:`fewshot_cases.THREADS` torch threads (restored afterwards)."""

from __future__ import annotations

import pytest
from fewshot_cases import THREADS, TINY_TRAINING, Case, make_case

from SAMFewShotLib.sam.encoder import torch_threads


@pytest.fixture(scope="module", autouse=True)
def few_threads():
    """Every few-shot test module runs torch on :data:`THREADS` threads."""
    with torch_threads(THREADS):
        yield


@pytest.fixture(scope="session")
def case(tmp_path_factory) -> Case:
    return make_case(tmp_path_factory.mktemp("fewshot"))


@pytest.fixture(scope="session")
def trained(case):
    """The head trained on the case (a ``FitResult``); session fixtures start before the
    module-scoped thread setting, so this one sets it itself."""
    from SAMFewShotLib.fewshot import train_head
    from SAMFewShotLib.fewshot.training import TrainingConfig

    with torch_threads(THREADS):
        return train_head(case.image, case.annotation, checkpoint=str(case.checkpoint), device="cpu",
                          cache=case.cache, config=TrainingConfig(**TINY_TRAINING))
