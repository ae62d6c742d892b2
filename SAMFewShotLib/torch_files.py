"""Files written with ``torch.save`` (few-shot heads, meta inits, RRL-MedSAM checkpoints and
networks): written atomically, read with ``torch.load(..., map_location="cpu",
weights_only=True)`` so that no code can run while a file is read, and every failure is one
line naming the file.

A *versioned* file is a dict with ``"format"`` (a string naming the kind of file) and
``"version"`` (an int) besides its own entries.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .errors import InputError
from .files import write_atomic


def first_sentence(error: BaseException) -> str:
    """The first sentence of an error message, on one line (at most 200 characters)."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    return text.splitlines()[0].split(". ")[0].rstrip(".")[:200]


def save_torch_file(path: str | os.PathLike, payload) -> Path:
    """``torch.save(payload)`` to a temporary file beside ``path``, then renamed over ``path``
    (a reader never sees half a file; a failed write leaves the old file as it was; see
    :func:`.files.write_atomic`)."""
    import torch

    return write_atomic(path, lambda temporary: torch.save(payload, temporary), suffix=Path(path).suffix)


def read_torch_file(path: str | os.PathLike, what: str):
    """The object saved in ``path``; ValueError (one line) naming ``path`` and ``what`` the file
    should be when it is missing or cannot be read (empty, truncated, not a torch file, or it
    holds objects other than tensors and plain values)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure is a bad file
        raise InputError(f"{path} is not a readable {what} (corrupt or truncated?): {first_sentence(error)}") from None


def read_versioned_file(path: str | os.PathLike, *, kind: str, version: int, what: str, made_by: str) -> Mapping:
    """The dict of a versioned file (see the module doc); ValueError (one line) when the file
    is unreadable, of another kind (``"format" != kind``) or of another version.

    Args:
        path: the file.
        kind: the expected ``"format"`` entry.
        version: the one version this code reads.
        what: the kind of file in words, for messages ("few-shot head file").
        made_by: the command that writes such files, for messages.
    """
    payload = read_torch_file(path, what)
    if not isinstance(payload, Mapping) or payload.get("format") != kind:
        raise InputError(f"{path} is not a {what} ({made_by} writes them)")
    if payload.get("version") != version:
        raise InputError(f"{path} is a version {payload.get('version')!r} {what}; this samfewshot reads version {version}")
    return payload
