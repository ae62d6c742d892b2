"""The torch device a command asked for (``--device auto|cpu|cuda``)."""

from __future__ import annotations

from ..errors import InputError


def torch_device(device: str):
    """The torch device for ``device`` ("auto": CUDA when available, "cpu", "cuda");
    InputError for an unknown name or "cuda" without a CUDA device."""
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"Device must be auto, cpu or cuda, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but torch sees no CUDA device")
    return torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
