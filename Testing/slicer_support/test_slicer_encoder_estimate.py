"""The SAM encoder estimate line of the Slicer propagation panel (slicer_support/encoder_estimate.py)."""

from __future__ import annotations

from SAMFewShotLib.slicer_support.encoder_estimate import encoder_estimate_line


def test_measured_figure_wins_over_the_shipped_one():
    line = encoder_estimate_line("vit_t", 40, 3.0)
    assert "40 slices" in line and "about 2 min" in line and "3.0 s per slice, measured on this machine" in line


def test_shipped_figure_without_a_measurement():
    line = encoder_estimate_line("vit_b", 10, None)
    assert "about 5 min 35 s" in line and "33.5 s per slice, shipped estimate" in line


def test_unknown_model_and_gpu():
    assert "no estimate yet" in encoder_estimate_line("efficientvit_l0", 12, None)
    gpu = encoder_estimate_line("vit_b", 12, None, device="cuda")
    assert "GPU" in gpu and "min" not in gpu
