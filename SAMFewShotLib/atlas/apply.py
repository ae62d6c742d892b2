"""Apply an atlas bundle to an image: the one-shot atlas job.

Engine ``registration``: every atlas of the bundle is registered onto the image
(:mod:`.registration`, the bundle's ``parameters``) and the warped label maps are fused
(:mod:`.fusion`: majority, STAPLE or locally weighted voting). Engine ``rrl_medsam``: the
bundle's network segments the image (``SAMFewShotLib.atlas.rrl.apply.apply_rrl``). Engine ``sfr``:
the SFR study model's 3D network segments it (``SAMFewShotLib.sfr.bundle_model.apply_sfr``). Any
result can then be refined by SAM slice by slice (:mod:`.sam_refinement`).
The result lies on the image's grid and carries the bundle's label names, colours and
terminology.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..errors import InputError
from ..progress import CancelToken, Progress, no_progress
from ..sam.device import check_device_name
from ..volume import LabelVolume, Volume
from .bundle import AtlasBundle
from .fusion import check_method, fuse_labels

REFINEMENTS = ("sam",)


@dataclass
class AtlasResult:
    """What :func:`apply_bundle` gives.

    Attributes:
        labels: the label map on the image grid (bundle's segment table).
        seconds: wall time per stage ("register atlas <i>", "fuse", "network", "sam", "total").
        details: engine, fusion, atlases, per-atlas registration seconds, SAM counters.
    """

    labels: LabelVolume
    seconds: dict[str, float] = field(default_factory=dict)
    details: dict = field(default_factory=dict)


def check_refine(refine: str | None, checkpoint: str | None) -> None:
    """ValueError for an unknown refinement, SAM refinement without a checkpoint, or a
    checkpoint given without SAM refinement."""
    if refine is not None and refine not in REFINEMENTS:
        raise InputError(f"Refinement must be one of {', '.join(REFINEMENTS)}, not {refine!r}")
    if refine == "sam" and not checkpoint:
        raise InputError("--refine sam needs --checkpoint PATH or NAME (see: samfewshot weights list)")
    if refine is None and checkpoint:
        raise InputError("--checkpoint is only used with --refine sam")


def _register_all(
    bundle: AtlasBundle, image: Volume, fusion: str, seconds: dict, details: dict, progress, cancel
) -> LabelVolume:
    """Every atlas registered onto ``image``, fused; stage seconds and details recorded."""
    from .registration import check_parameters, register

    try:
        parameters = check_parameters(bundle.parameters)
    except ValueError as error:
        raise InputError(f"{bundle.path}: {error}") from None
    registrations = []
    for index in range(bundle.n_atlases):
        if cancel is not None:
            cancel.raise_if_cancelled()
        start = time.perf_counter()
        atlas_image, atlas_labels = bundle.atlas(index)
        registrations.append(
            register(atlas_image, atlas_labels, image, parameters=parameters, progress=progress, cancel=cancel)
        )
        seconds[f"register atlas {index}"] = time.perf_counter() - start
        progress("atlases registered", index + 1, bundle.n_atlases)
    start = time.perf_counter()
    fused = fuse_labels(
        [r.labels for r in registrations], fusion, images=[r.image for r in registrations], target=image
    )
    seconds["fuse"] = time.perf_counter() - start
    details["registration_seconds"] = [r.seconds for r in registrations]
    return fused


def apply_bundle(
    bundle: AtlasBundle,
    image: Volume,
    *,
    fusion: str = "majority",
    refine: str | None = None,
    checkpoint: str | None = None,
    device: str = "auto",
    rrl_output: str | None = None,
    rrl_refine: int = 0,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> AtlasResult:
    """Segment ``image`` with ``bundle``.

    Args:
        bundle: a loaded bundle (:func:`~SAMFewShotLib.atlas.bundle.load_bundle`).
        image: (z, y, x) image with its geometry; any grid (the atlases' grids may differ).
        fusion: multi-atlas fusion for the registration engine: "majority", "staple", "local".
        refine: None, or "sam" to refine the result slice by slice with SAM.
        checkpoint: SAM checkpoint (path or name), for ``refine="sam"``.
        device: "auto", "cpu" or "cuda" (the network and SAM).
        rrl_output: for ``rrl_medsam`` bundles, "segmentation" or "registration" (the warped atlas
            labels); None: the bundle's own choice. Refused for registration bundles.
        progress: ``progress(stage, done, total)`` per atlas, registration step, slice.
        cancel: polled between units of work.

    Returns:
        :class:`AtlasResult`: labels on ``image``'s grid with the bundle's segments.

    Raises:
        ValueError: unknown fusion or refinement, a refinement/checkpoint mismatch, bad device,
            ``rrl_output`` given for a bundle that is not ``rrl_medsam``.
    """
    check_method(fusion)
    check_refine(refine, checkpoint)
    check_device_name(device)
    if (rrl_output is not None or rrl_refine) and bundle.engine != "rrl_medsam":
        asked = f"output ({rrl_output!r})" if rrl_output is not None else f"refinement ({rrl_refine!r})"
        raise InputError(f"An RRL-MedSAM {asked} needs an rrl_medsam bundle, not a {bundle.engine} bundle")
    total = time.perf_counter()
    seconds: dict[str, float] = {}
    details: dict = {}
    details.update(engine=bundle.engine, atlases=bundle.n_atlases, bundle=bundle.name)
    if bundle.engine == "rrl_medsam":
        from .rrl.apply import apply_rrl

        start = time.perf_counter()
        labels = apply_rrl(
            bundle, image, device=device, output=rrl_output, refine_iterations=rrl_refine, progress=progress,
            cancel=cancel,
        )
        details["rrl_output"] = rrl_output or bundle.parameters.get("output", "segmentation")
        details["rrl_refine"] = rrl_refine
        seconds["network"] = time.perf_counter() - start
    elif bundle.engine == "sfr":  # an SFR study model (SAMFewShotLib.sfr)
        from ..sfr.bundle_model import apply_sfr

        start = time.perf_counter()
        labels = apply_sfr(bundle, image, device=device, progress=progress, cancel=cancel)
        seconds["network"] = time.perf_counter() - start
    else:
        details["fusion"] = fusion
        labels = _register_all(bundle, image, fusion, seconds, details, progress, cancel)
    if refine == "sam":
        from .sam_refinement import refine_with_sam

        start = time.perf_counter()
        assert checkpoint is not None  # check_refine requires one for SAM refinement
        labels, counters = refine_with_sam(image, labels, checkpoint, device=device, progress=progress, cancel=cancel)
        seconds["sam"] = time.perf_counter() - start
        details["sam"] = counters
    seconds["total"] = time.perf_counter() - total
    return AtlasResult(labels=LabelVolume(labels.volume, bundle.segments()), seconds=seconds, details=details)
