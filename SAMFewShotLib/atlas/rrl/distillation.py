"""Stage 1 of RRL-MedSAM's dual-stage distillation: the lightweight encoder learns to reproduce
SAM's image embeddings (MSE, the paper's L_rec = 1/N sum ||f_sam - f_lie||).

Distilled at the scale the 3D model uses it (see :mod:`.volume_features`): the student sees an
axial slice of the network's *working grid* (the cube average-pooled by 2, e.g. 64 x 64 pixels
for a 128^3 cube) and its neck returns a (embed_dim, h/16, w/16) embedding, the coarsest level
of the 3D pyramid. The teacher (any SAM checkpoint the repository loads, or the tiny SAM of the
tests) encodes the same slice as ``SamPredictor`` does (ResizeLongestSide to 1024, normalise,
pad; through :func:`SAMFewShotLib.sam.encoder.encode_slices` and its embedding cache, so a
resumed or second run costs no teacher call); its 64 x 64 embedding covers the square slice and
is average-pooled to the student's grid (each student cell = the 16 x 16 teacher cells over the
same pixels). Both see intensities normalised to [0, 1] mapped to SAM's 0..255 grey levels.
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
from ...sam.preprocess import Preprocessing
from ...volume import Volume
from .lightweight_encoder import LightweightEncoder
from .volume_features import COARSEST_STRIDE
from .volume_features import encode_slices as student_levels

#: Progress stage of encoding the teacher's slices (done, total: slices over all volumes).
STAGE = "SAM teacher encoder"
#: The window that maps normalised [0, 1] intensities to SAM's 0..255 grey levels.
NORMALISED_WINDOW = Preprocessing("normalised", 0.0, 1.0, square_pixels=False)


@dataclass
class DistillationSet:
    """Slices and their teacher embeddings.

    Attributes:
        volumes: normalised working-grid volumes (float32 in [0, 1]), (z, y, x), square slices.
        items: (volume index, axial slice index) of each slice.
        embeddings: (N, C, h/16, w/16) float32 teacher embeddings pooled to the student's grid.
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


def working_volume(cube: Volume) -> Volume:
    """The network's working grid of a normalised cube: 2x average pooling, spacing doubled."""
    array = F.avg_pool3d(torch.from_numpy(np.ascontiguousarray(cube.array, np.float32))[None, None], 2)[0, 0]
    sx, sy, sz = cube.spacing
    return Volume(array.numpy(), (2.0 * sx, 2.0 * sy, 2.0 * sz), cube.origin, cube.direction)


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
    """Encode ``slices_per_volume`` axial slices of each normalised working-grid volume (square
    slices, edges multiples of 16) with ``teacher`` (a segment_anything ``Sam``) and pool the
    embeddings to the student's neck grid; ``teacher_digest`` names its weights in cache keys."""
    for volume in volumes:
        h, w = volume.shape[1:]
        if h != w or h % COARSEST_STRIDE:
            raise ValueError(f"distillation slices must be square with edges multiples of 16, not {h} x {w}")
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
            grid = volume.shape[1] // COARSEST_STRIDE
            embedding = torch.as_tensor(encoded[s].embedding, dtype=torch.float32)
            embeddings.append(F.adaptive_avg_pool2d(embedding[None], grid)[0])
    return DistillationSet(list(volumes), items, torch.stack(embeddings))


def student_input(dataset: DistillationSet, indices: Sequence[int]) -> torch.Tensor:
    """(len(indices), 1, h, w) float32 working-grid slices in [0, 1] of the dataset's items."""
    slices = [dataset.volumes[v].array[s] for v, s in (dataset.items[i] for i in indices)]
    return torch.from_numpy(np.stack(slices).astype(np.float32))[:, None]


def distillation_loss(student: LightweightEncoder, dataset: DistillationSet, indices: Sequence[int]) -> torch.Tensor:
    """MSE between the student's distilled embedding (its neck, as the 3D model uses it) of the
    items ``indices`` and the teacher's pooled embeddings."""
    device = next(student.parameters()).device
    x = student_input(dataset, indices).to(device)
    target = dataset.embeddings[list(indices)].to(device)
    return F.mse_loss(student_levels(student, x, "neck")[3], target)
