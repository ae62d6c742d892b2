"""Tests of slicer_support/first_use.py: the one install confirmation with sizes, the torch
version check and the CPU time estimate before a SAM run.

The encoder times in first_use.ENCODER_CPU_SECONDS_PER_SLICE were measured with
Testing/slicer_support/encoder_cpu_timing.py (random-weight SAM image encoders, 1024 x 1024,
torch 2 threads): see first_use for the conditions."""

from __future__ import annotations

import pytest

from SAMFewShotLib.slicer_support import first_use, requirements


def test_every_requirement_has_a_measured_size():
    pinned = {name.lower() for name in requirements.PINNED_PACKAGES}  # Slicer's own: never installed
    for requirement in (requirements.PYTHON_REQUIREMENTS + requirements.SAM_PYTHON_REQUIREMENTS
                        + requirements.SFR_PYTHON_REQUIREMENTS):
        if requirements.requirement_name(requirement).lower() in pinned:
            continue
        assert first_use.installed_size_mb(requirement), requirement


def test_one_confirmation_lists_everything_with_sizes():
    text = first_use.confirmation_text(["scipy>=1.10", "tqdm>=4.60"], need_torch=True)
    assert "scipy>=1.10 (about 143 MB)" in text and "tqdm>=4.60 (about 1 MB)" in text
    assert "torch and torchvision (PyTorch extension" in text
    assert "About 1.4 GB in all" in text  # 143 + 1 + 1205 + 23 MB
    assert text.count("Install now?") == 1


@pytest.mark.parametrize(
    "installed, ok",
    [
        ("2.1.0", True),
        ("2.3.1+cu121", True),
        ("2.14.1", True),
        ("2.0.1", False),
        ("1.13.1+cpu", False),
        ("2.15.0", False),
    ],
)
def test_torch_version_is_checked_against_the_requirement(installed, ok):
    problem = first_use.torch_version_problem(installed, ">=2.1,<2.15")
    assert (problem is None) == ok
    if not ok:
        assert installed in problem and ">=2.1,<2.15" in problem


def test_missing_torch_is_a_problem_too():
    assert "not installed" in first_use.torch_version_problem(None)


def test_version_fallback_without_packaging(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_packaging(name, *args, **kwargs):
        if name.startswith("packaging"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_packaging)
    assert first_use.version_satisfies("2.3.1+cu121", ">=2.1,<2.15")
    assert not first_use.version_satisfies("2.0.1", ">=2.1")
    assert not first_use.version_satisfies("2.15", ">=2.1,<2.15")


def test_slices_to_encode_include_a_margin_within_the_volume():
    assert first_use.slices_to_encode(40, 59, 200) == 20 + 2 * 5
    assert first_use.slices_to_encode(0, 3, 200) == 4 + 3  # margin clipped at slice 0
    with pytest.raises(ValueError, match="Drawn range"):
        first_use.slices_to_encode(5, 3, 10)


def test_cpu_warning_only_when_slow_and_offers_a_lighter_engine():
    table = first_use.ENCODER_CPU_SECONDS_PER_SLICE
    assert first_use.cpu_warning("vit_b", 1) is None
    slow = first_use.cpu_warning("vit_b", 100)
    assert slow and "register:dis" in slow and f"{table['vit_b']:.1f} s per slice" in slow
    assert first_use.cpu_warning("custom", 1000) is None  # unmeasured: no made-up figure
    assert first_use.cpu_seconds_estimate("vit_t", 10) == pytest.approx(10 * table["vit_t"])
