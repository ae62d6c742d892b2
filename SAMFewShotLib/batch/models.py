"""The batch MODEL: loaded once, applied to every case.

:func:`load_model` turns the ``--model`` argument into a small picklable :class:`CaseModel`
(paths, options and a digest, no arrays) that worker processes unpickle and load once each
(:func:`cached`), then call :meth:`CaseModel.segment` per case:

- an atlas bundle (``.zip`` or a folder with ``manifest.json``): ``atlas.apply.apply_bundle``
  (registration of every atlas and fusion, or the RRL-MedSAM network);
- a few-shot head (``.sfs``): ``fewshot.apply_head`` with ``--checkpoint``;
- a reference image with ``--annotation`` (sparse slices drawn on the reference): the annotation
  is first propagated on the reference with ``--engine`` (default ``auto``; ``none`` when the
  annotation is already complete), once, to a full label map (kept as
  ``DIR/reference/<digest>.seg.nrrd``). Each case is then segmented by registering the reference
  to the case (``atlas.registration.register_atlas``: 3D affine + B-spline elastix) and warping
  that label map. This is what "propagated per case by registration to the reference" means
  here: the engine runs where the annotation was drawn, registration carries the result.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar, cast

from ..errors import InputError
from ..progress import CancelToken, Progress, no_progress
from ..volume import LabelVolume, Volume

#: The module that loads itk-elastix (preloaded for registration models).
ELASTIX = "SAMFewShotLib.batch.preload_elastix"
#: Per-process cache of loaded models, keyed by (kind, digest).
_LOADED: dict[tuple[str, str], object] = {}
_Model = TypeVar("_Model")


def cached(key: tuple[str, str], load: Callable[[], _Model]) -> _Model:
    """``load()`` once per process for ``key``; later calls return the same object."""
    if key not in _LOADED:
        _LOADED[key] = load()
    return cast(_Model, _LOADED[key])  # the key's kind fixes what was stored under it


class CaseModel(ABC):
    """A per-case segmenter that pickles cheaply (paths and options) and loads lazily.

    Attributes (every subclass sets them):
        kind: "bundle", "head", "reference", ...
        digest: hex string identifying the model files and every option that changes results;
            a case is recomputed when it changes.
        device: "auto", "cpu" or "cuda"; "cuda" asks the scheduler for a GPU per case.
        preload: module names the local pool imports once, before forking its workers.
    """

    kind: str
    digest: str
    device: str
    #: Modules worth importing once before the workers start (heavy libraries the model loads).
    preload: tuple[str, ...] = ()

    @abstractmethod
    def segment(self, image: Volume) -> LabelVolume:
        """The label map of ``image`` on its grid (same shape, spacing, origin, direction)."""

    @property
    def uses_gpu(self) -> bool:
        """True when every case needs a GPU (``--device cuda``)."""
        return self.device == "cuda"


@dataclass(frozen=True)
class BundleModel(CaseModel):
    """An atlas bundle applied with ``atlas.apply.apply_bundle``."""

    path: str
    digest: str
    fusion: str = "majority"
    refine: str | None = None
    checkpoint: str | None = None
    device: str = "auto"
    kind: str = "bundle"
    preload: tuple[str, ...] = ()

    def segment(self, image: Volume) -> LabelVolume:
        from ..atlas.apply import apply_bundle
        from ..atlas.bundle import load_bundle

        bundle = cached((self.kind, self.digest), lambda: load_bundle(self.path))
        result = apply_bundle(
            bundle, image, fusion=self.fusion, refine=self.refine, checkpoint=self.checkpoint, device=self.device
        )
        return result.labels


@dataclass(frozen=True)
class HeadModel(CaseModel):
    """A few-shot head (.sfs) applied with ``fewshot.apply_head`` on the SAM ``checkpoint``."""

    path: str
    checkpoint: str
    digest: str
    device: str = "auto"
    kind: str = "head"
    preload: tuple[str, ...] = ("torch", "segment_anything")

    def segment(self, image: Volume) -> LabelVolume:
        """The head on ``image``; the head and SAM are loaded once per worker process."""
        from ..fewshot import apply_head, load_head
        from ..fewshot.apply import load_base_model

        head = cached((self.kind, self.digest), lambda: load_head(self.path))
        base = cached(
            ("sam", f"{self.checkpoint}|{self.device}"), lambda: load_base_model(self.checkpoint, device=self.device)
        )
        return apply_head(head, image, checkpoint=self.checkpoint, device=self.device, base=base)


@dataclass(frozen=True)
class ReferenceModel(CaseModel):
    """A reference image and its full label map, registered to every case."""

    image_path: str
    labels_path: str
    digest: str
    registration: dict | None = None
    device: str = "cpu"
    kind: str = "reference"
    preload: tuple[str, ...] = (ELASTIX,)

    def segment(self, image: Volume) -> LabelVolume:
        from ..atlas.registration import register_atlas
        from ..volume_io import read_labels, read_volume

        reference, labels = cached(
            (self.kind, self.digest), lambda: (read_volume(self.image_path), read_labels(self.labels_path))
        )
        return register_atlas(reference, labels, image, parameters=self.registration)


def digest_of(paths: list[Path], options: dict) -> str:
    """SHA-256 over the files' SHA-256 (folders: every file inside, by relative name) and the
    options (JSON, sorted keys); hex."""
    from ..sam.weights_store import sha256_file

    total = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode())
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            name = file.relative_to(path).as_posix() if path.is_dir() else file.name
            total.update(f"{name}\0{sha256_file(file)}\0".encode())
    return total.hexdigest()


def load_model(
    model: str,
    *,
    out_dir: str | Path,
    annotation: str | None = None,
    engine: str | None = None,
    checkpoint: str | None = None,
    model_type: str | None = None,
    device: str = "auto",
    fusion: str | None = None,
    registration: dict | None = None,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> CaseModel:
    """Check and load the MODEL in this process, and return its picklable per-case form.

    Args:
        model: an atlas bundle, a ``.sfs`` few-shot head, or a reference image (file or DICOM
            folder; then ``annotation`` is required).
        out_dir: the batch output folder (the propagated reference labels go to ``reference/``).
        annotation: the reference's sparse annotation (label image on its grid or .seg.nrrd).
        engine: propagation engine for the reference's annotation (default "auto"; "none":
            the annotation is complete).
        checkpoint, model_type, device: SAM weights options (head; bundle refinement; weighted
            engines on the reference).
        fusion: bundle label fusion (majority, staple, local).
        registration: reference: ``register_atlas`` settings (see atlas/registration.py;
            None: its defaults).

    Raises:
        InputError: one line: missing or unreadable model, options that do not fit the model.
    """
    path = Path(model).expanduser()
    if not path.exists():
        raise InputError(f"--model {model}: no such file or folder")
    if path.is_file() and path.name.lower().endswith(".sfs"):
        _refuse(model, annotation=annotation, engine=engine, fusion=fusion)
        if checkpoint is None:
            raise InputError(
                f"--model {model} is a few-shot head: give the SAM weights it was trained on with --checkpoint"
            )
        from ..fewshot import load_head

        load_head(path)
        digest = digest_of([path], {"kind": "head", "checkpoint": checkpoint})
        return HeadModel(str(path.resolve()), checkpoint, digest, device)
    from ..atlas.bundle import is_bundle, load_bundle

    if is_bundle(path) or (path.is_file() and path.name.lower().endswith(".zip")):
        _refuse(model, annotation=annotation, engine=engine)
        bundle = load_bundle(path)
        refine = "sam" if checkpoint is not None else None
        options = {"kind": "bundle", "fusion": fusion or "majority", "refine": refine, "checkpoint": checkpoint}
        preload = (ELASTIX,) if bundle.engine == "registration" else ("torch",)
        return BundleModel(str(path.resolve()), digest_of([path], options), fusion or "majority", refine, checkpoint,
                           device, preload=preload)
    if annotation is None:
        raise InputError(
            f"--model {model} is not an atlas bundle (.zip or folder with manifest.json) nor a few-shot head (.sfs); "
            "as a reference image it needs --annotation"
        )
    if fusion is not None:
        raise InputError("--fusion is for atlas bundles")
    options = dict(checkpoint=checkpoint, model_type=model_type, device=device)
    return _reference_model(path, Path(annotation).expanduser(), engine or "auto", out_dir, options, registration,
                            progress, cancel)


def _refuse(model: str, **given) -> None:
    used = [f"--{name}" for name, value in given.items() if value is not None]
    if used:
        raise InputError(f"{', '.join(used)} cannot be used with --model {model} (only with a reference image)")


def _reference_model(
    image_path: Path, annotation_path: Path, engine: str, out_dir: str | Path, options: dict,
    registration: dict | None, progress, cancel,
) -> ReferenceModel:
    """Propagate the annotation on the reference once (or reuse the earlier result)."""
    from ..annotation import SparseAnnotation
    from ..atlas.registration import check_parameters
    from ..engines import WEIGHTED_ENGINES, make_engine
    from ..volume_io import read_labels, read_volume, write_labels

    if not annotation_path.exists():
        raise InputError(f"--annotation {annotation_path}: no such file or folder")
    weighted = engine.partition(":")[0] in WEIGHTED_ENGINES
    if not weighted and (options["checkpoint"] is not None or options["model_type"] is not None):
        raise InputError(f"--checkpoint and --model-type are for the SAM engines, not --engine {engine}")
    engine_options = {k: v for k, v in options.items() if v is not None} if weighted else {}
    check_parameters(registration)
    propagation = {"kind": "reference", "engine": engine, **engine_options}
    digest = digest_of([image_path, annotation_path], propagation)
    labels_path = Path(out_dir) / "reference" / f"reference_{digest[:16]}.seg.nrrd"
    if not labels_path.is_file():
        propagator = None if engine == "none" else make_engine(engine, **engine_options)
        image = read_volume(image_path)
        labels = read_labels(annotation_path)
        image.require_same_grid(labels.volume, "annotation")
        if propagator is not None:
            annotation = SparseAnnotation.from_labels(labels)
            labels = propagator.propagate(image, annotation, progress=progress, cancel=cancel or CancelToken()).labels
        labels_path.parent.mkdir(parents=True, exist_ok=True)
        write_labels(labels, labels_path)
    model_digest = digest_of([labels_path], {"reference": digest, "registration": registration})
    return ReferenceModel(str(image_path.resolve()), str(labels_path.resolve()), model_digest, registration)
