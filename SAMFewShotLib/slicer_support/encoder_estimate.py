"""The SAM encoder estimate the Slicer propagation panel shows before a run starts: slices to
encode (the drawn range and its margin, :func:`~.first_use.slices_to_encode`) and the expected
encoder time on the CPU, from this machine's own measurement when an earlier run recorded one
(``SAMFewShotLib.sam.encoder_budget``), else the shipped figure of :mod:`.first_use`. Pure
logic, no Slicer and no torch: the panel passes what it read.
"""

from __future__ import annotations

from ..sam.encoder_budget import format_seconds
from . import first_use


def encoder_estimate_line(model_type: str, slice_count: int, measured: float | None, device: str = "cpu") -> str:
    """One line for the panel, e.g. ``"SAM encoder (vit_t, CPU): up to 40 slices to encode, about 2 min
    (3.0 s per slice, measured on this machine); slices encoded before are cached"``.

    Args:
        model_type: the checkpoint's architecture (vit_b, vit_t, efficientvit_l0, ...).
        slice_count: slices the run may encode.
        measured: this machine's fastest measured CPU seconds per slice of ``model_type`` (None:
            never run here).
        device: "cuda" (no CPU estimate: the GPU encodes a slice in well under a second), else CPU.
    """
    head = f"SAM encoder ({model_type}, {'GPU' if device == 'cuda' else 'CPU'}): up to {slice_count} slices to encode"
    if device == "cuda":
        return head + " on the GPU; slices encoded before are cached"
    if measured is not None:
        per_slice, source = measured, "measured on this machine"
    else:
        shipped = first_use.ENCODER_CPU_SECONDS_PER_SLICE.get(model_type)
        if shipped is None:
            return head + ", no estimate yet (the first run measures this model on this machine)"
        per_slice, source = shipped, "shipped estimate for a 2-core CPU; a run here measures it"
    return (
        f"{head}, about {format_seconds(per_slice * slice_count)} ({per_slice:.1f} s per slice, {source}); "
        "slices encoded before are cached"
    )
