"""The torch device a command asked for (``--device auto|cpu|cuda|mps``)."""

from __future__ import annotations

from ..errors import InputError

#: ``--device`` choices: "auto" (CUDA, else Apple's MPS, else the CPU), "cpu", "cuda", "mps".
DEVICES = ("auto", "cpu", "cuda", "mps")


def check_device_name(device: str) -> str:
    """``device`` when it is one of :data:`DEVICES`; InputError naming it otherwise (no torch import)."""
    if device not in DEVICES:
        raise InputError(f"Device must be one of {', '.join(DEVICES)}, not {device!r}")
    return device


def _mps_available(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def torch_device(device: str):
    """The torch device for ``device`` ("auto": CUDA when available, else MPS when available, else
    the CPU; "cpu", "cuda", "mps"); InputError for an unknown name or an absent accelerator."""
    import torch

    check_device_name(device)
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but torch sees no CUDA device")
    if device == "mps" and not _mps_available(torch):
        raise InputError("--device mps was asked for but torch sees no Apple GPU (MPS)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if _mps_available(torch) else "cpu"
    return torch.device(device)
