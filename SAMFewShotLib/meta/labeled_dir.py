"""The LABELED_DIR of ``samfewshot meta-train``: labelled volumes the meta-learner samples tasks from.

Two layouts are accepted (file types: .nii.gz, .nii, .nrrd, .mha, .mhd; labels also .seg.nrrd):

1. ``images/`` and ``labels/`` sub-folders with the same file names
   (``images/case01.nii.gz`` + ``labels/case01.nii.gz``), as nnU-Net's imagesTr/labelsTr;
2. pairs in the folder itself: ``NAME_image.EXT`` + ``NAME_labels.EXT``
   (``case01_image.nii.gz`` + ``case01_labels.seg.nrrd``).

Every image needs its labels and every labels file its image; anything else is a one-line
ValueError naming the file. Other files are ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
LABEL_SUFFIXES = (".seg.nrrd",) + IMAGE_SUFFIXES
LAYOUT = "images/ + labels/ with the same file names, or NAME_image.EXT + NAME_labels.EXT pairs"


@dataclass(frozen=True)
class LabeledCase:
    """One labelled volume: its name, image file and label file."""

    name: str
    image: Path
    labels: Path


def _split(path: Path, suffixes: tuple[str, ...]) -> tuple[str, str] | None:
    """(stem, suffix) for a file with one of ``suffixes`` (longest first), else None."""
    for suffix in sorted(suffixes, key=len, reverse=True):
        if path.name.lower().endswith(suffix) and len(path.name) > len(suffix):
            return path.name[: -len(suffix)], suffix
    return None


def _files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        split = _split(path, suffixes) if path.is_file() else None
        if split is None:
            continue
        if split[0] in found:
            raise InputError(f"Two files for case {split[0]!r} in {folder}: {found[split[0]].name} and {path.name}")
        found[split[0]] = path
    return found


def find_labeled_cases(folder: str | os.PathLike) -> list[LabeledCase]:
    """The labelled volumes of ``folder`` (see the module docstring), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"LABELED_DIR {folder} is not a folder ({LAYOUT})")
    images_dir, labels_dir = folder / "images", folder / "labels"
    if images_dir.is_dir() or labels_dir.is_dir():
        for needed in (images_dir, labels_dir):
            if not needed.is_dir():
                raise InputError(f"LABELED_DIR {folder} has no {needed.name}/ folder ({LAYOUT})")
        images, labels = _files(images_dir, IMAGE_SUFFIXES), _files(labels_dir, LABEL_SUFFIXES)
    else:
        pairs = {}
        for kind, suffixes in (("image", IMAGE_SUFFIXES), ("labels", LABEL_SUFFIXES)):
            pairs[kind] = {
                stem[: -len(f"_{kind}")]: path
                for stem, path in _files(folder, suffixes).items()
                if stem.endswith(f"_{kind}") and len(stem) > len(kind) + 1
            }
        images, labels = pairs["image"], pairs["labels"]
    for name in sorted(set(images) - set(labels)):
        raise InputError(f"Image {images[name]} has no labels file in {folder} ({LAYOUT})")
    for name in sorted(set(labels) - set(images)):
        raise InputError(f"Labels {labels[name]} have no image in {folder} ({LAYOUT})")
    if not images:
        raise InputError(f"LABELED_DIR {folder} holds no labelled volume ({LAYOUT})")
    return [LabeledCase(name, images[name], labels[name]) for name in sorted(images)]
