"""3D atlas registration with elastix (itk-elastix): affine, then multi-resolution B-spline.

The atlas image (moving) is registered onto the target image (fixed):

1. affine (elastix's default "affine" map), started from the centre-of-gravity alignment
   (``AutomaticTransformInitialization`` with ``CenterOfGravity``);
2. B-spline (elastix's default "bspline" map) with ``bspline_resolutions`` levels and a final
   control-point grid of ``grid_spacing_mm``; a bending-energy penalty is added when
   ``bending_weight`` > 0 (it triples the cost; the control-point grid and the pyramid already
   keep the transform smooth).

Both stages use ``metric`` (default normalised correlation: atlas and target share a modality,
and it tolerates linear intensity differences between scanners; Mattes mutual information is
offered for other cases) with ``spatial_samples`` random samples per iteration. The atlas
labels are warped with transformix on a copy of the transform maps with
``FinalBSplineInterpolationOrder 0`` (nearest neighbour) and background 0, so label values are
never blended. The result lies on the target's grid (shape, spacing, origin, direction)
whatever the atlas grid is: elastix works in physical (LPS, mm) coordinates, and every ITK
image built here carries its volume's spacing, origin and direction.

Settings (``parameters``; defaults in :data:`DEFAULT_PARAMETERS`, chosen with
``benchmarks/bench_atlas.py`` on the abdomen CT, 122x101x112 at 3 mm: ~16 CPU seconds per
registration, i.e. well under a minute on 2 cores): ``affine_resolutions``,
``affine_iterations``, ``bspline_resolutions``, ``bspline_iterations``, ``grid_spacing_mm``,
``spatial_samples``, ``bending_weight``, ``metric`` (:data:`METRICS`), ``threads`` (elastix
threads; None: all cores), ``seed`` (elastix's random sampler seed: repeatable runs).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..progress import CancelToken, Progress, no_progress
from ..volume import LabelVolume, Volume, label_dtype

DEFAULT_PARAMETERS: dict = {
    "affine_resolutions": 3,
    "affine_iterations": 200,
    "bspline_resolutions": 3,
    "bspline_iterations": 500,
    "grid_spacing_mm": 25.0,
    "spatial_samples": 4096,
    "bending_weight": 0.0,
    "metric": "AdvancedNormalizedCorrelation",
    "threads": None,
    "seed": 121212,
}
#: elastix similarity metrics offered: mutual information (any modality pair), normalised
#: correlation and mean squares (same modality and intensity scale, e.g. CT to CT).
METRICS = ("AdvancedMattesMutualInformation", "AdvancedNormalizedCorrelation", "AdvancedMeanSquares")
#: Progress stage of one atlas registration: 0/2 start, 1/2 registered, 2/2 labels warped.
STAGE = "atlas registration"


def check_parameters(parameters: dict | None) -> dict:
    """The registration settings with defaults filled in; ValueError naming an unknown or bad one."""
    settings = dict(DEFAULT_PARAMETERS)
    for key, value in (parameters or {}).items():
        if key not in DEFAULT_PARAMETERS:
            raise InputError(f"Unknown registration parameter {key!r} (known: {', '.join(DEFAULT_PARAMETERS)})")
        settings[key] = value
    for key in ("affine_resolutions", "bspline_resolutions", "affine_iterations", "bspline_iterations",
                "spatial_samples"):
        if isinstance(settings[key], bool) or not isinstance(settings[key], int) or settings[key] < 1:
            raise InputError(f"Registration parameter {key} must be a positive integer, not {settings[key]!r}")
    for key in ("grid_spacing_mm", "bending_weight"):
        if not isinstance(settings[key], (int, float)) or settings[key] < 0 or (key == "grid_spacing_mm" and not settings[key] > 0):
            raise InputError(f"Registration parameter {key} must be a positive number, not {settings[key]!r}")
    if settings["metric"] not in METRICS:
        raise InputError(f"Registration parameter metric must be one of {', '.join(METRICS)}, not {settings['metric']!r}")
    threads = settings["threads"]
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"Registration parameter threads must be a positive integer or None, not {threads!r}")
    return settings


def to_itk(volume: Volume, dtype=np.float32):
    """The ITK image of ``volume`` (array z, y, x -> ITK x, y, z) with its spacing, origin and
    direction (physical LPS mm)."""
    import itk

    image = itk.image_from_array(np.ascontiguousarray(volume.array, dtype=dtype))
    image.SetSpacing([float(s) for s in volume.spacing])
    image.SetOrigin([float(o) for o in volume.origin])
    image.SetDirection(itk.matrix_from_array(np.ascontiguousarray(volume.direction_matrix, dtype=np.float64)))
    return image


def _parameter_maps(settings: dict, background: float = 0.0):
    """elastix's parameter object: the affine then the B-spline map; ``background`` fills the
    warped atlas image where it maps outside the atlas."""
    import itk

    samples = [str(settings["spatial_samples"])]
    parameters = itk.ParameterObject.New()
    affine = parameters.GetDefaultParameterMap("affine", settings["affine_resolutions"])
    affine["AutomaticTransformInitialization"] = ["true"]
    affine["AutomaticTransformInitializationMethod"] = ["CenterOfGravity"]
    affine["MaximumNumberOfIterations"] = [str(settings["affine_iterations"])]
    bspline = parameters.GetDefaultParameterMap(
        "bspline", settings["bspline_resolutions"], float(settings["grid_spacing_mm"])
    )
    bspline["MaximumNumberOfIterations"] = [str(settings["bspline_iterations"])]
    affine["Metric"] = [settings["metric"]]
    if settings["bending_weight"] > 0:
        bspline["Metric"] = [settings["metric"], "TransformBendingEnergyPenalty"]
        bspline["Metric1Weight"] = [str(float(settings["bending_weight"]))]
    else:
        bspline["Metric"] = [settings["metric"]]
        bspline.erase("Metric0Weight")
        bspline.erase("Metric1Weight")
    for parameter_map in (affine, bspline):
        parameter_map["NumberOfSpatialSamples"] = samples
        # the warped atlas image (for fusion weights) is kept only after the last map
        parameter_map["WriteResultImage"] = ["true" if parameter_map is bspline else "false"]
        parameter_map["ResultImagePixelType"] = ["float"]
        parameter_map["RandomSeed"] = [str(settings["seed"])]
        parameter_map["DefaultPixelValue"] = [repr(float(background))]
        # linear resampling of the warped atlas image (only used for fusion weights)
        parameter_map["FinalBSplineInterpolationOrder"] = ["1"]
        parameters.AddParameterMap(parameter_map)
    return parameters


@dataclass
class Registration:
    """One atlas registered onto a target.

    Attributes:
        labels: the atlas labels warped onto the target grid (target geometry, atlas segments).
        image: the atlas image warped onto the target grid (float32), for fusion weights.
        seconds: wall time per stage ("register", "warp labels").
    """

    labels: LabelVolume
    image: Volume
    seconds: dict[str, float] = field(default_factory=dict)


def register(
    atlas_image: Volume,
    atlas_labels: LabelVolume,
    target: Volume,
    *,
    parameters: dict | None = None,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> Registration:
    """Register ``atlas_image`` onto ``target``; warp the atlas image and labels onto the target grid.

    Args:
        atlas_image: (z, y, x) atlas intensities with its geometry.
        atlas_labels: (z, y, x) integer labels on the atlas image's grid.
        target: (z, y, x) image to segment.
        parameters: see the module docstring.
        progress: ``(STAGE, done, 3)`` after the affine + B-spline registration and the label warp.
        cancel: polled before each stage (elastix itself cannot be interrupted).

    Raises:
        ValueError: atlas labels not on the atlas image's grid, a bad parameter.
    """
    import itk

    atlas_image.require_same_grid(atlas_labels.volume, "atlas labels")
    settings = check_parameters(parameters)
    seconds: dict[str, float] = {}
    if cancel is not None:
        cancel.raise_if_cancelled()
    progress(STAGE, 0, 2)
    fixed, moving = to_itk(target), to_itk(atlas_image)
    options = {} if settings["threads"] is None else {"number_of_threads": int(settings["threads"])}
    start = time.perf_counter()
    warped, transform = itk.elastix_registration_method(
        fixed, moving, parameter_object=_parameter_maps(settings, float(atlas_image.array.min())), log_to_console=False, **options
    )
    seconds["register"] = time.perf_counter() - start
    progress(STAGE, 1, 2)
    if cancel is not None:
        cancel.raise_if_cancelled()
    start = time.perf_counter()
    for index in range(transform.GetNumberOfParameterMaps()):
        transform.SetParameter(index, "FinalBSplineInterpolationOrder", "0")
        transform.SetParameter(index, "ResultImagePixelType", "float")
        transform.SetParameter(index, "DefaultPixelValue", "0")  # background outside the atlas
    # transformix writes its log and outputs to a folder: keep them out of the working directory.
    with tempfile.TemporaryDirectory(prefix="samfewshot-transformix-") as folder:
        warped_labels = itk.transformix_filter(
            to_itk(atlas_labels.volume), transform_parameter_object=transform, output_directory=folder, log_to_console=False, **options
        )
    label_array = np.rint(itk.array_from_image(warped_labels))
    seconds["warp labels"] = time.perf_counter() - start
    progress(STAGE, 2, 2)
    max_label = int(atlas_labels.array.max()) if atlas_labels.array.size else 0
    labels = LabelVolume(
        target.with_array(label_array.astype(label_dtype(max(max_label, 1)))), atlas_labels.segments
    )
    image = target.with_array(itk.array_from_image(warped).astype(np.float32))
    return Registration(labels=labels, image=image, seconds=seconds)


def register_atlas(
    atlas_image: Volume,
    atlas_labels: LabelVolume,
    target: Volume,
    *,
    parameters: dict | None = None,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> LabelVolume:
    """The atlas labels registered onto ``target``: a label map on the target's grid (shape,
    spacing, origin, direction) with the atlas segment table; see :func:`register`."""
    return register(
        atlas_image, atlas_labels, target, parameters=parameters, progress=progress, cancel=cancel
    ).labels
