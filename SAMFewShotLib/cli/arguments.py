"""What the ``samfewshot`` subcommands share: argument groups (SAM model, annotation, report,
progress) declared once, and the parsers of option values (label lists, integer lists, slice
ranges). Imports nothing heavy (no torch)."""

from __future__ import annotations

import argparse

from ..engines.catalog import DEFAULT_SUPPORT, DEVICES, SUPPORT_MODES
from ..errors import InputError
from ..progress import add_progress_argument
from ..volume import LabelVolume

__all__ = [
    "AXES",
    "add_annotation_arguments",
    "add_axis_argument",
    "add_checkpoint_argument",
    "add_device_argument",
    "add_model_type_argument",
    "add_progress_argument",
    "add_report_argument",
    "add_sam_model_arguments",
    "add_support_argument",
    "axis_or_auto",
    "parse_ints",
    "parse_label_values",
    "parse_labels",
    "parse_range",
]

#: Slice orientations by name -> the numpy axis of an image with identity direction (z, y, x).
AXES = {"axial": 0, "coronal": 1, "sagittal": 2}


# Argument groups ---------------------------------------------------------------------------------
def add_checkpoint_argument(
    parser: argparse.ArgumentParser,
    *,
    required: bool = False,
    help: str = "SAM checkpoint path or name (see samfewshot weights list)",
) -> None:
    """``--checkpoint PATH|NAME`` (default None unless ``required``)."""
    if required:
        parser.add_argument("--checkpoint", required=True, help=help)
    else:
        parser.add_argument("--checkpoint", default=None, help=help)


def add_model_type_argument(
    parser: argparse.ArgumentParser, *, help: str = "SAM architecture override: vit_b, vit_l, vit_h, vit_t"
) -> None:
    """``--model-type TYPE`` (default None: inferred from the weights)."""
    parser.add_argument("--model-type", default=None, metavar="TYPE", help=help)


def add_device_argument(parser: argparse.ArgumentParser, *, help: str | None = None) -> None:
    """``--device auto|cpu|cuda`` (default auto)."""
    parser.add_argument("--device", default="auto", choices=DEVICES, help=help)


def add_sam_model_arguments(
    parser: argparse.ArgumentParser,
    *,
    checkpoint_required: bool = False,
    checkpoint_help: str = "SAM checkpoint path or name (see samfewshot weights list)",
    model_type_help: str = "SAM architecture override: vit_b, vit_l, vit_h, vit_t",
    device_help: str | None = None,
) -> None:
    """The SAM model group: ``--checkpoint``, ``--model-type``, ``--device``."""
    add_checkpoint_argument(parser, required=checkpoint_required, help=checkpoint_help)
    add_model_type_argument(parser, help=model_type_help)
    add_device_argument(parser, help=device_help)


#: Image-encoder runtimes of ``--encoder-runtime`` (sam/onnx_encoder.ENCODER_RUNTIMES; listed
#: here so that parsing arguments imports no torch).
ENCODER_RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")


def add_encoder_runtime_argument(parser: argparse.ArgumentParser) -> None:
    """``--encoder-runtime auto|torch|onnx|onnx-int8`` (default auto), for the sam engine."""
    parser.add_argument(
        "--encoder-runtime",
        default="auto",
        choices=ENCODER_RUNTIMES,
        help="sam engine: SAM image-encoder runtime; onnx = ONNX Runtime fp32 on the CPU (exported once per "
        "checkpoint, cached), onnx-int8 = its dynamic int8 quantisation (faster, masks differ slightly); "
        "needs pip install 'samfewshot[onnx]'; auto = onnx on the CPU when installed, else torch (default: auto)",
    )


def add_max_encode_argument(parser: argparse.ArgumentParser) -> None:
    """``--max-encode N`` (default None: no limit), for the sam engine."""
    parser.add_argument(
        "--max-encode",
        type=int,
        default=None,
        metavar="N",
        help="sam engine: refuse the run, before any SAM encoding, when more than N slices are not cached yet",
    )


def add_sam_slices_argument(parser: argparse.ArgumentParser) -> None:
    """``--sam-slices all|uncertain`` (default all), for the sam engine (sam/slice_selection.py)."""
    parser.add_argument(
        "--sam-slices",
        default="all",
        choices=("all", "uncertain"),
        help="sam engine: refine every slice the coarse mask covers (all), or only where it is uncertain (low "
        "confidence, fast area change) and keep the coarse mask elsewhere: fewer slices to encode (default: all)",
    )


def add_report_argument(
    parser: argparse.ArgumentParser, *, help: str = "write a JSON report: seconds per stage, counters"
) -> None:
    """``--report PATH`` (default None: no report)."""
    parser.add_argument("--report", default=None, metavar="PATH", help=help)


def add_support_argument(parser: argparse.ArgumentParser) -> None:
    """``--support nearest|kcentroid|kcentroid-direct`` (default None: the engine's own, which is
    nearest unless its name says otherwise, e.g. ``register:kcentroid``)."""
    parser.add_argument(
        "--support",
        default=None,
        choices=SUPPORT_MODES,
        help="register/auto: which drawn slice each slice takes its mask from: nearest (the drawn slices "
        "next to it, both sides fused), kcentroid (SAM-MPA: the drawn slice nearest in appearance, chained "
        "from it), kcentroid-direct (the same, registered directly onto it) "
        f"(default: {DEFAULT_SUPPORT})",
    )


def add_axis_argument(parser: argparse.ArgumentParser, *, auto: bool = True, help: str | None = None) -> None:
    """``--axis`` by name; with ``auto`` the default is "auto" (the annotation's axis), else "axial"."""
    choices = ("auto", *AXES) if auto else tuple(AXES)
    parser.add_argument("--axis", default=choices[0], choices=choices, help=help)


def add_annotation_arguments(parser: argparse.ArgumentParser) -> None:
    """The sparse-annotation group: ``--axis auto|axial|coronal|sagittal`` and ``--empty-slices SPEC``."""
    add_axis_argument(parser, auto=True)
    parser.add_argument(
        "--empty-slices",
        default=None,
        metavar="SPEC",
        help='slices declared free of a structure: "12,40" (all labels) or "5:12,40;1:3" (per label); '
        "indices along the annotated axis",
    )


# Value parsers -----------------------------------------------------------------------------------
def axis_or_auto(name: str, direction) -> int | None:
    """The numpy axis of the ``name``d orientation for an image of ``direction`` (9 row-major
    cosines); None for "auto"."""
    from ..annotation import axis_from_name

    return None if name == "auto" else axis_from_name(name, direction)


def parse_labels(text: str, reference: LabelVolume) -> dict[int, str]:
    """``--labels "5=liver,1,3=kidney_left"`` -> {5: "liver", 1: <name from reference>, ...}."""
    labels: dict[int, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        value_text, _, name = part.partition("=")
        try:
            value = int(value_text)
        except ValueError:
            raise InputError(f"Labels must be integers (optionally VALUE=NAME), not {part!r}") from None
        segment = reference.segment(value)
        labels[value] = name.strip() or (segment.name if segment.name else f"label {value}")
    if not labels:
        raise InputError(f"No label given in {text!r}")
    return labels


def parse_label_values(text: str | None) -> list[int] | None:
    """``--labels "1,2"`` -> [1, 2] (values >= 1); None -> None (all labels)."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--labels must be comma-separated integers, not {text!r}") from None
    if not values or min(values) < 1:
        raise InputError(f"--labels must list label values >= 1, not {text!r}")
    return values


def parse_ints(text: str, what: str) -> list[int]:
    """``"1,3,5"`` -> [1, 3, 5]; InputError naming ``what`` and the bad value."""
    values = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            value = int(part)
        except ValueError:
            raise InputError(f"{what} must be positive integers, not {part!r}") from None
        if value < 1:
            raise InputError(f"{what} must be positive integers, not {value}")
        values.append(value)
    if not values:
        raise InputError(f"No {what} given in {text!r}")
    return values


def parse_range(text: str | None, n_slices: int) -> range:
    """``"z0:z1"`` (inclusive, as slice numbers) -> range(z0, z1 + 1); None -> every slice."""
    if text is None:
        return range(n_slices)
    try:
        first, last = (int(part) for part in text.split(":"))
    except ValueError:
        raise InputError(f"--range must be FIRST:LAST slice numbers, not {text!r}") from None
    if not 0 <= first <= last < n_slices:
        raise InputError(f"--range {text} is outside the volume's slices 0..{n_slices - 1}")
    return range(first, last + 1)
