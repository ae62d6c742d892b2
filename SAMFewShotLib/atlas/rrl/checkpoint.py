"""Training checkpoints: one file, written atomically, read back with ``weights_only=True``.

A checkpoint is a dict of tensors and plain Python values (ints, floats, strings, lists, dicts):
model and optimiser state, iteration counters, random-generator states, the run's settings.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import InputError
from ...torch_files import read_torch_file, save_torch_file

#: File name of the checkpoint in the work folder.
CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save(state)`` to a temporary file in ``path``'s folder, then rename over ``path``."""
    save_torch_file(path, state)


def load_checkpoint(path: Path) -> dict:
    """The state saved by :func:`save_checkpoint`; ValueError (one line) when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no checkpoint to resume from (train without --resume first)")
    state = read_torch_file(path, "RRL-MedSAM checkpoint")
    if not isinstance(state, dict) or "iteration" not in state:
        raise InputError(f"{path}: is not an RRL-MedSAM checkpoint")
    return state
