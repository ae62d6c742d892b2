"""The engines, annotated axes and devices the module's panel and the Propagate effect offer.

Names are the ``samfewshot propagate --engine`` values; what an engine still needs (PyTorch, a
checkpoint) is ``SAMFewShotLib.slicer_support.commands.engine_requirements``.
"""

from typing import Optional

from SAMFewShotLib.slicer_support import commands

#: Engines offered (name, description), in this order.
ENGINE_CHOICES = (
    ("auto", "auto: per structure, leave-one-drawn-slice-out validation picks register, interpolate or "
             "their fusion and reports the expected Dice"),
    ("register", "register: slice-to-slice registration (TV-L1 optical flow); continues beyond the outermost "
                 "drawn slice while the structure's intensities allow; works from one slice"),
    ("register:dis", "register with OpenCV DIS optical flow (3-5x faster than TV-L1)"),
    ("register:elastix", "register with elastix B-spline slice registration (slowest)"),
    ("interpolate", "interpolate: Slicer's Fill between slices (morphological contour interpolation); "
                    "fills only between the outermost drawn slices"),
    ("sam", "sam: SAM-MPA, the register mask turned into Segment Anything prompts and post-refined"),
    ("fewshot", "fewshot: SAM mask decoder fitted to the drawn slices' embeddings (few-shot prompt tokens)"),
    ("meta", "meta: SSM-SAM, adapters and self-sampling prompts adapted online from a meta-learned init "
             "(optional Meta init file)"),
)

#: The ``annotated axis`` choices of ``samfewshot propagate`` (``suggest`` uses axial for auto).
AXIS_CHOICES = ["auto", "axial", "coronal", "sagittal"]

#: Device choices (label, ``--device`` value) of the SAM engines.
DEVICE_CHOICES = (("auto", "auto"), ("CPU", "cpu"), ("CUDA", "cuda"), ("MPS (Apple)", "mps"))


def engineFamily(engine: str) -> Optional[str]:
    """The engine without its option (None for an empty name in an old scene)."""
    try:
        return commands.engine_family(engine)
    except ValueError:
        return None


def deviceProblem(device: str) -> Optional[str]:
    """Why ``device`` cannot be chosen yet (tooltip), or None."""
    if device in commands.CLI_DEVICES:
        return None
    return f"unknown device {device!r}"
