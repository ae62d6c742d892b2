"""Train a study model end to end (SFR): pseudo-labels for the unlabelled volumes from a
plug-and-play source, SFR+ selection, 3D re-training, an ``sfr`` atlas bundle.

The work folder (default ``<output>.work``) keeps every pseudo-label (``pseudo_<i>.nii.gz``, its
voxel confidence ``pseudo_<i>_confidence.nii.gz`` and ``pseudo.json`` with volume confidences and
the inputs' digests) and the re-training checkpoint, so ``resume=True`` skips the pseudo-labels
already made and continues the training where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..progress import CancelToken, Progress, no_progress
from ..volume import LabelVolume, Volume
from ..volume_io import PathLike, read_labels, read_volume, write_labels, write_volume
from .pseudo_labels import PseudoLabel, make_source, select_confident
from .resampling import check_spacing

STAGE_PSEUDO = "sfr: pseudo-labels"
#: How SFR+ ranks the pseudo-labels (:func:`train_study_model`).
SELECTIONS = ("agreement", "confidence")
#: Intensity normalisation of the network's input per modality (CT: an abdominal soft-tissue range in HU).
NORMALISATION = {
    "CT": {"method": "clip", "low": -250.0, "high": 350.0},
    "MR": {"method": "percentile", "low": 0.5, "high": 99.5},
}


@dataclass
class StudyModelReport:
    """What :func:`train_study_model` did: seconds per stage, pseudo-label confidences, the kept
    pseudo-labels, the training counters, the SFR+ agreement selection (kept indices into the
    pseudo-labels, agreement scores; None without)."""

    bundle: Path
    seconds: dict = field(default_factory=dict)
    volume_confidences: list = field(default_factory=list)
    kept: list = field(default_factory=list)
    iterations: int = 0
    last_losses: dict = field(default_factory=dict)
    agreement: dict | None = None


def _digest(volume: Volume) -> str:
    h = hashlib.sha256(np.ascontiguousarray(volume.array).tobytes())
    h.update(repr((volume.shape, volume.spacing, volume.origin, volume.direction)).encode())
    return h.hexdigest()


def _pseudo_labels(
    source: Callable, labelled_image: Volume, labelled_labels: LabelVolume, unlabelled: Sequence[Volume], work: Path,
    resume: bool, progress: Progress, cancel: CancelToken | None,
) -> list[PseudoLabel]:
    """A pseudo-label per unlabelled volume, reusing the work folder's when resuming the same inputs."""
    record_path = work / "pseudo.json"
    key = [getattr(source, "name", "custom"), _digest(labelled_image), _digest(labelled_labels.volume)]
    record = json.loads(record_path.read_text()) if resume and record_path.is_file() else {}
    if record.get("key") != key:
        record = {"key": key, "volumes": {}}
    out = []
    progress(STAGE_PSEUDO, 0, len(unlabelled))
    for i, image in enumerate(unlabelled):
        if cancel is not None:
            cancel.raise_if_cancelled()
        digest = _digest(image)
        entry = record["volumes"].get(str(i))
        labels_file, confidence_file = work / f"pseudo_{i}.nii.gz", work / f"pseudo_{i}_confidence.nii.gz"
        if entry is not None and entry["digest"] == digest and labels_file.is_file() and confidence_file.is_file():
            labels = LabelVolume(read_labels(labels_file).volume, labelled_labels.segments)
            confidence = read_volume(confidence_file).array.astype(np.float32)
            out.append(PseudoLabel(labels, confidence, float(entry["volume_confidence"]), key[0],
                                   float(entry["seconds"])))
        else:
            pseudo = source(labelled_image, labelled_labels, image, progress=progress, cancel=cancel)
            write_labels(LabelVolume(pseudo.labels.volume), labels_file)
            write_volume(image.with_array(pseudo.confidence.astype(np.float32)), confidence_file)
            record["volumes"][str(i)] = {"digest": digest, "volume_confidence": pseudo.volume_confidence,
                                         "seconds": pseudo.seconds}
            record_path.write_text(json.dumps(record, indent=1))
            out.append(pseudo)
        progress(STAGE_PSEUDO, i + 1, len(unlabelled))
    return out


def train_study_model(
    labelled_image: Volume,
    labelled_labels: LabelVolume,
    unlabelled: Sequence[Volume],
    output: PathLike,
    *,
    pseudo: str | Callable | None = "atlas",
    select: float | None = None,
    selection: str = "agreement",
    voxel_threshold: float = 0.5,
    soft_weights: bool = False,
    spacing_mm: Sequence[float] | None = None,
    settings=None,
    config=None,
    source_options: dict | None = None,
    name: str | None = None,
    work_dir: PathLike | None = None,
    resume: bool = False,
    device: str = "auto",
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> StudyModelReport:
    """One labelled volume + unlabelled volumes of a study -> an ``sfr`` bundle at ``output``.

    Args:
        labelled_image, labelled_labels: (z, y, x) image and its label map (one grid); every
            label value present is a class.
        unlabelled: the study's other images (any grids, same modality).
        output: the bundle (``.zip`` or folder), written when training completes.
        pseudo: pseudo-label source: "atlas", "none", "sam" (:func:`~.pseudo_labels.make_source`),
            a callable source, or None (no pseudo-labels: supervised-only or plain Mean Teacher).
        select: SFR+ kept fraction in (0, 1]; None: SFR.
        selection: how SFR+ ranks the pseudo-labels: "agreement" (with the teacher half-way
            through the training, disagreeing voxels then ignored:
            :attr:`~.retraining.RetrainSettings.agreement_select`) or "confidence" (the source's
            volume and voxel confidence before training: :func:`~.pseudo_labels.select_confident`).
        voxel_threshold: voxel confidence threshold of the "confidence" selection.
        soft_weights: pseudo-label voxels weighted by the source's voxel confidence.
        spacing_mm: (x, y, z) working spacing of the network; default the labelled volume's.
        settings: :class:`~.retraining.RetrainSettings` (method, iterations, patch, ...).
        config: :class:`~.network.NetworkConfig` (``classes`` is set from the labels).
        source_options: options of a named source (registration ``parameters``; SAM ``checkpoint``).
        name: bundle name (default: the output's name without extensions).
        work_dir: pseudo-labels and checkpoint (default ``<output>.work``).
        resume: reuse the work folder's pseudo-labels and continue its checkpoint.
        device: "auto", "cpu" or "cuda" for the network.
        progress, cancel: per pseudo-label, per iteration; on cancel the checkpoint is kept.

    Raises:
        ValueError: labels not on the labelled image's grid, no label, bad spacing / fraction /
            source, unusable output, a checkpoint of another run.
    """
    from dataclasses import replace

    from ..atlas.bundle import check_bundle_output, labels_from_atlases, write_bundle
    from ..sam.preprocess import looks_like_ct
    from .network import NETWORK_MEMBER, NetworkConfig, save_network
    from .retraining import RetrainSettings, prepare_volume, retrain

    labelled_image.require_same_grid(labelled_labels.volume, "labelled volume's label map")
    label_values = labelled_labels.label_values()
    if not label_values:
        raise ValueError("The labelled volume's label map holds no label (all 0)")
    spacing = check_spacing(spacing_mm if spacing_mm is not None else labelled_image.spacing)
    settings = settings or RetrainSettings()
    config = replace(config or NetworkConfig(), classes=len(label_values) + 1)
    if settings.patch % config.divisor or settings.patch < 2 * config.divisor:
        raise ValueError(f"The patch edge must be a multiple of {config.divisor} and at least {2 * config.divisor}, "
                         f"not {settings.patch}")
    source = make_source(pseudo, **(source_options or {})) if isinstance(pseudo, str) else pseudo
    if select is not None and source is None:
        raise ValueError("SFR+ selection (--select) needs pseudo-labels")
    if selection not in SELECTIONS:
        raise ValueError(f"The SFR+ selection must be one of {', '.join(SELECTIONS)}, not {selection!r}")
    output = Path(output).expanduser()
    check_bundle_output(output)
    work = Path(work_dir).expanduser() if work_dir is not None else output.with_name(output.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    modality = "CT" if looks_like_ct(labelled_image) else "MR"
    normalisation = dict(NORMALISATION[modality])
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    pseudo_labels = [] if source is None else _pseudo_labels(
        source, labelled_image, labelled_labels, unlabelled, work, resume, progress, cancel)
    seconds["pseudo-labels"] = time.perf_counter() - start
    by_agreement = select is not None and selection == "agreement"
    if by_agreement:
        settings = replace(settings, agreement_select=select)
    kept = select_confident(pseudo_labels, None if by_agreement else select, voxel_threshold, soft=soft_weights)

    start = time.perf_counter()
    prepare: dict[str, Any] = dict(spacing=spacing, normalisation=normalisation, label_values=label_values)
    labelled = [prepare_volume(labelled_image, labelled_labels, None, **prepare)]
    pseudo_volumes = [prepare_volume(unlabelled[i], pseudo_labels[i].labels, w, **prepare)
                      for i, w in zip(kept.indices, kept.weights)]
    images = [prepare_volume(image, None, None, **prepare).image for image in unlabelled]
    seconds["prepare"] = time.perf_counter() - start
    start = time.perf_counter()
    result = retrain(labelled, pseudo_volumes, images, config=config, settings=settings, work_dir=work, resume=resume,
                     device=device, progress=progress, cancel=cancel)
    seconds["re-training"] = time.perf_counter() - start
    kept_indices = [kept.indices[i] for i in result.agreement["indices"]] if result.agreement else list(kept.indices)
    network_file = work / NETWORK_MEMBER
    save_network(network_file, result.network, config, label_values)
    parameters = {
        "network": config.to_dict(), "label_values": label_values, "spacing_mm": list(spacing),
        "patch": settings.patch, "settings": asdict(settings),
        "pseudo": None if source is None else getattr(source, "name", "custom"), "select": select,
        "selection": selection, "soft_weights": soft_weights,
        "voxel_threshold": voxel_threshold, "unlabelled": len(unlabelled), "kept": kept_indices,
        "volume_confidences": [p.volume_confidence for p in pseudo_labels], "iterations": result.iterations,
        "seconds_per_iteration": result.seconds / max(result.iterations, 1), "last_losses": result.last_losses,
    }
    bundle = write_bundle(
        output, name=name or output.name.split(".")[0] or "study_model", atlases=[(labelled_image, labelled_labels)],
        labels=labels_from_atlases([(labelled_image, labelled_labels)]), modality=modality,
        normalisation=normalisation, engine="sfr", parameters=parameters, weights={NETWORK_MEMBER: network_file},
    )
    return StudyModelReport(bundle, seconds, [p.volume_confidence for p in pseudo_labels], kept_indices,
                            result.iterations, result.last_losses, result.agreement)
