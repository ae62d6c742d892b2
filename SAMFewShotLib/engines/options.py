"""The options shared by the SAM-based engines (sam, fewshot, meta), validated once.

Imports nothing heavy: resolving the checkpoint (a missing file or an unknown registry name fails
here, before any work) imports the weights store lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..sam.device import check_device_name


@dataclass(frozen=True)
class SamOptions:
    """What every SAM-based engine needs to load and run SAM.

    Attributes:
        engine: the engine these options are for ("sam", "fewshot", "meta"), named in messages.
        checkpoint: SAM checkpoint path or registry name (see ``samfewshot weights list``).
        model_type: architecture override (vit_b, vit_l, vit_h, vit_t); None infers it from the weights.
        device: "auto", "cpu" or "cuda".
        window: intensity window: "auto", "percentile" or a CT preset name.
        cache: an ``EmbeddingCache`` (or None: the default cache).
        batch_size: slices per image-encoder call, >= 1.
    """

    engine: str
    checkpoint: str | None
    model_type: str | None = None
    device: str = "auto"
    window: str = "auto"
    cache: Any = None
    batch_size: int = 1

    def __post_init__(self) -> None:
        if not self.checkpoint:
            raise InputError(
                f"The {self.engine} engine needs --checkpoint PATH or NAME (see: samfewshot weights list)"
            )
        check_device_name(self.device)
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, not {self.batch_size}")
        from ..sam.weights_store import resolve_checkpoint

        resolve_checkpoint(self.checkpoint)  # a missing file or unknown name fails now, before any work
