"""Stage 1 of RRL-MedSAM's dual-stage distillation: the lightweight encoder learns to reproduce
SAM's image embeddings (MSE, L_rec of the paper).

The teacher (any SAM checkpoint the repository loads, or the tiny SAM of the tests) encodes a set
of axial slices of the training volumes once, through :func:`SAMFewShotLib.sam.encoder.encode_slices`
and its embedding cache (a resumed run or a second run costs no teacher call). Student and
teacher see the same input: the slice preprocessed exactly as ``SamPredictor`` does
(ResizeLongestSide, normalise, pad to 1024) from the volume's normalised [0, 1] intensities
(window [0, 1]), the domain the 3D branch also feeds the encoder (see :mod:`.volume_features`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ...progress import CancelToken, Progress, no_progress
from ...sam.embedding_cache import EmbeddingCache
from ...sam.encoder import encode_slices
from ...sam.preprocess import Preprocessing, model_input, preprocess_slice
from ...volume import Volume
from .lightweight_encoder import LightweightEncoder

#: Progress stage of encoding the teacher's slices (done, total: slices over all volumes).
STAGE = "SAM teacher encoder"
#: The window that maps normalised [0, 1] intensities to SAM's 0..255 grey levels.
NORMALISED_WINDOW = Preprocessing("normalised", 0.0, 1.0, square_pixels=False)


@dataclass
class DistillationSet:
    """Slices and their teacher embeddings.

    Attributes:
        volumes: normalised volumes (float32 in [0, 1]), (z, y, x).
        items: (volume index, axial slice index) of each slice.
        embeddings: (N, C, 64, 64) float32 teacher embeddings, one per item.
    """

    volumes: list[Volume]
    items: list[tuple[int, int]]
    embeddings: torch.Tensor

    def __len__(self) -> int:
        return len(self.items)


def distillation_slices(depth: int, count: int) -> list[int]:
    """``count`` axial slice indices evenly spread over the central 80 % of ``depth`` slices."""
    if count < 1:
        raise ValueError(f"count must be >= 1, not {count}")
    positions = np.linspace(0.1 * (depth - 1), 0.9 * (depth - 1), count)
    return sorted({int(round(p)) for p in positions})


def prepare_distillation(
    teacher,
    teacher_digest: str,
    volumes: Sequence[Volume],
    slices_per_volume: int,
    cache: EmbeddingCache | None = None,
    *,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> DistillationSet:
    """Encode ``slices_per_volume`` axial slices of each normalised volume with ``teacher`` (a
    segment_anything ``Sam``); ``teacher_digest`` names its weights in cache keys."""
    items: list[tuple[int, int]] = []
    embeddings = []
    plan = [distillation_slices(volume.shape[0], slices_per_volume) for volume in volumes]
    total = sum(len(slices) for slices in plan)
    offset = 0
    progress(STAGE, 0, total)
    for index, (volume, slices) in enumerate(zip(volumes, plan)):
        encoded = encode_slices(
            teacher, teacher_digest, volume, 0, slices, NORMALISED_WINDOW, cache,
            progress=lambda stage, done, count, start=offset: progress(STAGE, start + done, total), cancel=cancel,
        )
        offset += len(slices)
        progress(STAGE, offset, total)
        for s in slices:
            items.append((index, s))
            embeddings.append(encoded[s].embedding)
    return DistillationSet(list(volumes), items, torch.stack(embeddings))


def student_input(teacher, dataset: DistillationSet, indices: Sequence[int]) -> torch.Tensor:
    """(len(indices), 3, 1024, 1024) SAM encoder input of the dataset's items, on the teacher's device."""
    prepared = [
        preprocess_slice(teacher, dataset.volumes[v], 0, s, NORMALISED_WINDOW)
        for v, s in (dataset.items[i] for i in indices)
    ]
    return model_input(teacher, prepared)


def distillation_loss(
    student: LightweightEncoder, teacher, dataset: DistillationSet, indices: Sequence[int]
) -> torch.Tensor:
    """MSE between the student's embeddings of the items ``indices`` and the teacher's."""
    x = student_input(teacher, dataset, indices)
    device = next(student.parameters()).device
    target = dataset.embeddings[list(indices)].to(device)
    return F.mse_loss(student(x.to(device)), target)
