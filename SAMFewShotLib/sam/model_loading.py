"""Load a SAM model from a checkpoint given as a path or a name: resolve it in the weights
store, check its SHA-256, read it safely, infer the architecture and build the model.

The parts live in their own modules: :mod:`.architecture` (reading and architecture
inference), :mod:`.model_building` (building from segment_anything / MobileSAM classes),
:mod:`.weights_store` (names, records, digests). Their public names used by loaders are
imported here too, so ``from SAMFewShotLib.sam.model_loading import load_sam`` is the one
import a caller needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..errors import InputError
from ..files import sha256_file
from ..progress import CancelToken, Progress, no_progress
from ..torch_files import check_torch_file_format
from .architecture import SamArchitecture, inspect_checkpoint, read_state_dict
from .model_building import build_from_state_dict
from .weights_store import describe_checkpoint, resolve_checkpoint

__all__ = ["LoadedModel", "inspect_checkpoint", "load_sam"]


@dataclass(frozen=True)
class LoadedModel:
    """What was loaded: ``sha256`` is the file's digest, also the model digest for cache keys."""

    name: str
    model_type: str
    family: str
    sha256: str
    path: Path
    architecture: SamArchitecture


def load_sam(
    checkpoint: str | os.PathLike,
    *,
    model_type: str | None = None,
    home: str | os.PathLike | None = None,
    decoder_num_heads: int | None = None,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> tuple[nn.Module, LoadedModel]:
    """Load a SAM checkpoint given as a path or a name (registry entry or import in the cache).

    The file's SHA-256 is computed first and, where a reference digest is known (registry
    file, or one recorded at import), compared before ``torch.load``: a wrong file is a
    ValueError and is never unpickled. Returns the model in eval mode on the CPU and its
    :class:`LoadedModel` record (``sha256`` doubles as the model digest for cache keys).
    """
    path, expected = resolve_checkpoint(checkpoint, home=home)
    digest = sha256_file(path, progress=progress, cancel=cancel)
    if expected is not None and digest != expected:
        raise InputError(
            f"Checkpoint {path} has sha256 {digest[:12]}..., expected {expected[:12]}... "
            "(wrong or corrupted file; run `samfewshot weights verify`)"
        )
    if path.is_file() and path.stat().st_size > 0:
        check_torch_file_format(path)
    state = read_state_dict(path)
    if cancel is not None:
        cancel.raise_if_cancelled()
    model, architecture = build_from_state_dict(
        state, model_type=model_type, decoder_num_heads=decoder_num_heads, source=str(path)
    )
    name, family = describe_checkpoint(path, digest, home=home)
    return model, LoadedModel(
        name=name,
        model_type=architecture.model_type,
        family=family or architecture.family,
        sha256=digest,
        path=path,
        architecture=architecture,
    )
