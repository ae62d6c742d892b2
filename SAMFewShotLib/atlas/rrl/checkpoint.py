"""Training checkpoints: one file, written atomically, read back with ``weights_only=True``.

A checkpoint is a dict of tensors and plain Python values (ints, floats, strings, lists, dicts):
model and optimiser state, iteration counters, random-generator states, the run's settings.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...volume_io import _atomic_write

#: File name of the checkpoint in the work folder.
CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save(state)`` to a temporary file in ``path``'s folder, then rename over ``path``."""
    _atomic_write(Path(path), ".pt", lambda temp: torch.save(state, temp))


def read_torch_file(path: Path, what: str):
    """``torch.load(path, map_location="cpu", weights_only=True)``; a one-line ValueError naming
    ``path`` and ``what`` it should be when the file cannot be read."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure is a bad file
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(f"{path}: is not a readable {what} ({type(error).__name__}: {message})") from None


def load_checkpoint(path: Path) -> dict:
    """The state saved by :func:`save_checkpoint`; ValueError (one line) when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no checkpoint to resume from (train without --resume first)")
    state = read_torch_file(path, "RRL-MedSAM checkpoint")
    if not isinstance(state, dict) or "iteration" not in state:
        raise ValueError(f"{path}: is not an RRL-MedSAM checkpoint")
    return state
