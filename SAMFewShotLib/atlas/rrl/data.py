"""Training data of RRL-MedSAM: the atlas and the unlabelled images as network inputs."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from ...errors import InputError
from ...progress import CancelToken, Progress, no_progress
from ...volume import LabelVolume, Volume
from ...volume_io import PathLike, read_volume
from .cube import cube_tensor, image_to_cube, labels_to_cube, one_hot

logger = logging.getLogger(__name__)

#: File name endings read from an unlabelled-images folder (sub-folders are read as DICOM series).
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
#: Progress stage of reading the unlabelled folder.
STAGE_READ = "Reading unlabelled images"


@dataclass
class TrainingData:
    """Network inputs, all on the cube grid (size^3) or its working grid (size/2)^3.

    Attributes:
        atlas: (1, 1, S, S, S) float32 normalised atlas image.
        atlas_onehot: (1, 1 + L, S/2, S/2, S/2) float32 soft one-hot atlas labels on the
            working grid (class i = ``label_values[i - 1]``, 0 = background).
        targets: (1, 1, S, S, S) float32 normalised unlabelled images.
        label_values: the atlas label values, ascending.
        cubes: the normalised atlas then target images as cube volumes (for distillation).
    """

    atlas: torch.Tensor
    atlas_onehot: torch.Tensor
    targets: list[torch.Tensor]
    label_values: list[int]
    cubes: list[Volume]

    def digest(self) -> str:
        """sha256 of every input tensor and the label values (a resumed run must see the same data)."""
        digest = hashlib.sha256(repr(self.label_values).encode())
        for tensor in [self.atlas, self.atlas_onehot, *self.targets]:
            digest.update(tensor.numpy().tobytes())
        return digest.hexdigest()

    def to(self, device: torch.device) -> TrainingData:
        return TrainingData(
            self.atlas.to(device), self.atlas_onehot.to(device), [t.to(device) for t in self.targets],
            self.label_values, self.cubes,
        )


def prepare_training_data(
    atlas_image: Volume, atlas_labels: LabelVolume, unlabeled: Sequence[Volume], size: int, normalisation: dict
) -> TrainingData:
    """Resample (see :mod:`.cube`) and normalise the atlas, its labels and the unlabelled images."""
    atlas_image.require_same_grid(atlas_labels.volume, "atlas label")
    values = atlas_labels.label_values()
    if not values:
        raise InputError("The atlas label map holds no label (every voxel is 0)")
    if not unlabeled:
        raise InputError("Training needs at least one unlabelled image")
    atlas, atlas_cube = cube_tensor(atlas_image, size, normalisation)
    cube_labels = labels_to_cube(atlas_labels, size)
    missing = [v for v in values if not (cube_labels.array == v).any()]
    if missing:
        raise InputError(
            f"Atlas labels {missing} vanish at {size}^3 (structures too small for the cube); use a larger --size"
        )
    onehot = F.avg_pool3d(one_hot(cube_labels.array, values), 2)
    targets, cubes = [], [atlas_cube.with_array(atlas[0, 0].numpy())]
    for volume in unlabeled:
        tensor, cube = cube_tensor(volume, size, normalisation)
        targets.append(tensor)
        cubes.append(cube.with_array(tensor[0, 0].numpy()))
    return TrainingData(atlas, onehot, targets, values, cubes)


def read_unlabeled_folder(
    folder: PathLike, size: int | None = None, *, progress: Progress = no_progress, cancel: CancelToken | None = None
) -> list[Volume]:
    """The images of ``folder`` (files ending in :data:`IMAGE_SUFFIXES`, and sub-folders holding a
    DICOM series), sorted by name; hidden entries and other files are skipped.

    With ``size`` each image is resampled to its ``size``^3 cube right after reading
    (:func:`.cube.image_to_cube`), so a large cohort is never held at full resolution.

    Raises:
        ValueError: not a folder, no image in it, or an unreadable image (naming it).
    """
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise InputError(f"{path}: the unlabelled images folder does not exist or is not a folder")
    entries = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() or entry.name.lower().endswith(IMAGE_SUFFIXES):
            entries.append(entry)
        else:
            logger.info("Skipping %s: not an image file", entry)
    if not entries:
        raise InputError(f"{path}: holds no image ({', '.join(IMAGE_SUFFIXES)} files or DICOM folders)")
    volumes = []
    progress(STAGE_READ, 0, len(entries))
    for done, entry in enumerate(entries, start=1):
        if cancel is not None:
            cancel.raise_if_cancelled()
        volume = read_volume(entry)
        volumes.append(image_to_cube(volume, size) if size is not None else volume)
        progress(STAGE_READ, done, len(entries))
    return volumes

