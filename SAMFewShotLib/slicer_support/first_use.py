"""First use of the Slicer module, as SlicerTotalSegmentator does it: one confirmation that lists
what will be installed and how big it is, torch checked against the version the engines need
(installed or not), and before a SAM run on the CPU an estimate of how long it will take.

Sizes and encoder times below are measurements, with where they come from; they are shown as
"about", never as promises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from .requirements import TORCH_VERSION_REQUIREMENT, requirement_name

#: Disk space (MB) a requirement takes once installed, its own dependencies included
#: (sum of the installed files of each distribution; measured with importlib.metadata on Linux
#: x86_64, Python 3.11, 2026-12: itk-elastix pulls ITK 5.4's core, numerics, filtering,
#: registration, segmentation and io wheels).
INSTALLED_SIZE_MB = {
    "itk-elastix": 1668.0,
    "itk-morphologicalcontourinterpolation": 8.0,
    "nibabel": 12.0,
    "opencv-python-headless": 180.0,
    "pillow": 22.0,
    "scipy": 143.0,
    "scikit-image": 54.0,
    "slicerio": 1.0,
    "tqdm": 1.0,
    "segment-anything": 1.0,
    "mobilesam-mirror": 1.0,
    "efficientsam": 1.0,  # 0.6 MB installed (measured here)
    "timm": 17.0,
    "platformdirs": 1.0,
    "dask": 23.0,
    "monai": 14.0,  # monai 1.6.1 alone (its required dependencies are torch and numpy), 2026-12-04
    "torch": 1205.0,
    "torchvision": 23.0,
}
#: The ITK wheels itk-elastix brings are shared with itk-morphologicalcontourinterpolation:
#: counted once, under itk-elastix.
TORCH_NOTE = "torch and torchvision (PyTorch extension; about 1.2 GB for CPU, several GB with CUDA)"

#: Image-encoder CPU seconds per slice (1024 x 1024 input, batch 1, torch 2 threads), measured
#: with random weights (speed does not depend on them) by Testing/slicer_support/encoder_cpu_timing.py
#: on the project's 2-core build machine (2026-12-03, load average 1-6: wall 6.3 s and 51 s per
#: slice). vit_l and vit_h are vit_b scaled by image-encoder parameters (89 M, 308 M, 637 M), not
#: measured. A recent 8-core desktop is several times faster: the figure is an upper bound.
ENCODER_CPU_SECONDS_PER_SLICE = {"vit_t": 4.9, "vit_b": 33.5, "vit_l": 116.0, "vit_h": 240.0}
#: Engines offered instead of a slow SAM run on the CPU (no weights, seconds to a minute).
LIGHTER_ENGINES = ("register:dis", "auto")
#: Slices beyond the drawn range that a SAM engine also encodes (fraction of the drawn range,
#: at least MIN_MARGIN_SLICES on each side).
MARGIN_FRACTION = 0.25
MIN_MARGIN_SLICES = 3


def installed_size_mb(requirement: str) -> float | None:
    """About how many MB ``requirement`` takes once installed (None when not measured)."""
    return INSTALLED_SIZE_MB.get(requirement_name(requirement).lower())


def install_plan(missing: Sequence[str], need_torch: bool = False) -> list:
    """One line per item to install, with its size: ``"scipy>=1.10 (about 143 MB)"``; the torch
    line (PyTorch extension) last when ``need_torch``."""
    lines = []
    for requirement in missing:
        size = installed_size_mb(requirement)
        lines.append(requirement + (f" (about {_size_text(size)})" if size else ""))
    if need_torch:
        lines.append(TORCH_NOTE)
    return lines


def plan_total_mb(missing: Sequence[str], need_torch: bool = False) -> float:
    """Total of :func:`install_plan`'s sizes in MB (unmeasured items count 0)."""
    total = sum(installed_size_mb(r) or 0.0 for r in missing)
    return total + (INSTALLED_SIZE_MB["torch"] + INSTALLED_SIZE_MB["torchvision"] if need_torch else 0.0)


def _size_text(mb: float) -> str:
    return f"{mb / 1000:.1f} GB" if mb >= 1000 else f"{mb:.0f} MB"


def confirmation_text(missing: Sequence[str], need_torch: bool = False) -> str:
    """The one question asked before installing (the PyTorch extension is then told not to ask
    again)."""
    lines = install_plan(missing, need_torch)
    return (
        "SAMFewShot needs these Python packages, which are not installed yet:\n\n  "
        + "\n  ".join(lines)
        + f"\n\nAbout {_size_text(plan_total_mb(missing, need_torch))} in all, downloaded from the internet; "
        "installation may take several minutes. Slicer's own SimpleITK and numpy are kept as they are.\n\nInstall now?"
    )


def _version_tuple(version: str) -> tuple:
    parts = []
    for piece in re.split(r"[.+]", version.strip()):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    return tuple(parts)


def version_satisfies(version: str, specifier: str) -> bool:
    """Whether ``version`` ("2.3.1+cu121") meets ``specifier`` (">=2.1,<2.15"); ``packaging`` is
    used when importable, else the numeric parts are compared (>=, >, <=, <, ==, !=)."""
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version

        return SpecifierSet(specifier).contains(Version(version), prereleases=True)
    except ImportError:  # pragma: no cover - packaging ships with pip and Slicer
        pass
    have = _version_tuple(version)
    for clause in (c.strip() for c in specifier.split(",") if c.strip()):
        match = re.match(r"(>=|<=|==|!=|>|<)\s*(.+)", clause)
        if not match:
            raise ValueError(f"Version specifier must be like '>=2.1', not {clause!r}")
        op, wanted = match.group(1), _version_tuple(match.group(2))
        width = max(len(have), len(wanted))
        a, b = have + (0,) * (width - len(have)), wanted + (0,) * (width - len(wanted))
        ok = {">=": a >= b, "<=": a <= b, "==": a == b, "!=": a != b, ">": a > b, "<": a < b}[op]
        if not ok:
            return False
    return True


def torch_version_problem(installed_version: str | None, requirement: str = TORCH_VERSION_REQUIREMENT) -> str | None:
    """Why the installed torch cannot run the SAM engines, or None when it can.

    Args:
        installed_version: ``torch.__version__`` (or importlib.metadata's), None when absent.
        requirement: the specifier the engines need (``torch.load(..., mmap=)`` needs 2.1).
    """
    if installed_version is None:
        return f"PyTorch is not installed (the SAM engines need torch{requirement})"
    if not version_satisfies(installed_version, requirement):
        return (f"PyTorch {installed_version} is installed, but the SAM engines need torch{requirement}: "
                "update it with the PyTorch extension (PyTorch Utils module)")
    return None


def slices_to_encode(first_drawn: int, last_drawn: int, slice_count: int) -> int:
    """How many slices a SAM engine encodes: the drawn range plus a margin on each side
    (:data:`MARGIN_FRACTION` of the range, at least :data:`MIN_MARGIN_SLICES`), within the volume."""
    if not 0 <= first_drawn <= last_drawn < slice_count:
        raise ValueError(
            f"Drawn range must satisfy 0 <= first <= last < {slice_count}, not ({first_drawn}, {last_drawn})"
        )
    margin = max(MIN_MARGIN_SLICES, int(round(MARGIN_FRACTION * (last_drawn - first_drawn + 1))))
    return min(slice_count - 1, last_drawn + margin) - max(0, first_drawn - margin) + 1


def cpu_seconds_estimate(model_type: str, slice_count: int,
                         table: Mapping[str, float] = ENCODER_CPU_SECONDS_PER_SLICE) -> float | None:
    """Encoder seconds for ``slice_count`` slices on the CPU (None for an unmeasured model type)."""
    per_slice = table.get(model_type)
    if not per_slice:
        return None
    return per_slice * int(slice_count)


def cpu_warning(model_type: str, slice_count: int, threshold_seconds: float = 60.0) -> str | None:
    """The question shown before a SAM run on the CPU that would take longer than
    ``threshold_seconds`` (None: just run it)."""
    seconds = cpu_seconds_estimate(model_type, slice_count)
    if seconds is None or seconds < threshold_seconds:
        return None
    minutes = seconds / 60.0
    return (f"On the CPU, the {model_type} image encoder needs about {minutes:.0f} min for the {slice_count} slices to "
            f"encode (about {seconds / slice_count:.1f} s per slice). A GPU or a lighter engine "
            f"({' or '.join(LIGHTER_ENGINES)}, seconds, no weights) is much faster. Run {model_type} anyway?")


def needs_of(missing: Iterable[str]) -> list:
    """Distribution names of ``missing`` requirement strings (for status lines)."""
    return [requirement_name(r) for r in missing]
