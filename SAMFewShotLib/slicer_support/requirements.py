"""The Python packages the Slicer module installs on first use, and how to tell what is missing.

The lists mirror ``pyproject.toml`` (``Testing/slicer_support/test_requirements.py`` keeps them in
sync) with the packages Slicer owns left out: Slicer ships its own SimpleITK (with Slicer's IO)
and numpy, and torch/torchvision come from the PyTorch extension. Those are pinned to their
installed version in a pip constraints file (:func:`pinned_package_constraints`), so installing
our requirements can never replace them.

Requirement strings are pip's (PEP 508): ``"timm>=0.9,<2"``, ``"dask[distributed]>=2024.1"``.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterable, Sequence

#: ``[project] dependencies`` of pyproject.toml without SimpleITK (the weightless engines).
PYTHON_REQUIREMENTS = (
    "itk-elastix>=0.20",
    "itk-morphologicalcontourinterpolation>=2.0",
    "nibabel>=4.0",
    "numpy>=1.24",
    "opencv-python-headless>=4.8",
    "pillow>=9",
    "scipy>=1.10",
    "scikit-image>=0.22",
    "slicerio>=1.0",
    "tqdm>=4.60",
)
#: The ``sam`` extra without torch and torchvision (the PyTorch extension installs those):
#: what the weighted engines (sam, fewshot, meta) and SAM refinement of an atlas need.
SAM_PYTHON_REQUIREMENTS = (
    "segment-anything>=1.0",
    "mobilesam-mirror==1.0.0",
    "timm>=0.9,<2",
    "efficientsam==1.0.0; python_version >= '3.10'",
    "platformdirs>=3",
)
#: The ``dist`` extra: ``samfewshot batch --scheduler tcp://HOST:PORT`` (dask.distributed).
DIST_PYTHON_REQUIREMENTS = ("dask[distributed]>=2024.1",)
#: The ``sfr`` extra: training a study model (``samfewshot sfr train``: MONAI networks, losses,
#: augmentation; torch from the PyTorch extension).
SFR_PYTHON_REQUIREMENTS = ("monai>=1.3",)
#: Bundle engines (the manifest's ``engine``) whose apply runs a torch network, and of those the
#: ones built on MONAI: applying them needs the SAM requirements (torch) and, for "sfr", MONAI.
TORCH_BUNDLE_ENGINES = ("rrl_medsam", "sfr")
MONAI_BUNDLE_ENGINES = ("sfr",)


def bundle_requirements(engine: str | None) -> tuple[bool, bool]:
    """(needs torch and the SAM packages, needs MONAI) to apply a bundle of this ``engine``
    (:func:`SAMFewShotLib.atlas.bundle.bundle_engine`; None: unknown, an elastix atlas's needs)."""
    return engine in TORCH_BUNDLE_ENGINES, engine in MONAI_BUNDLE_ENGINES


#: Version requirements passed to ``PyTorchUtilsLogic.installTorch`` (the ``sam`` extra's pins).
TORCH_VERSION_REQUIREMENT = ">=2.1,<2.15"
TORCHVISION_VERSION_REQUIREMENT = ">=0.16,<0.30"
#: Packages Slicer (or the PyTorch extension) already provides: never replaced by pip.
PINNED_PACKAGES = ("SimpleITK", "numpy", "torch", "torchvision")


def requirement_name(requirement: str) -> str:
    """The distribution name of a requirement string: ``"timm>=0.9,<2"`` -> ``"timm"``,
    ``"dask[distributed]>=2024.1"`` -> ``"dask"``.

    Raises:
        ValueError: the string does not start with a name (``">=1.0"``).
    """
    name = re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0]
    if not name:
        raise ValueError(f"Requirement must start with a package name, not {requirement!r}")
    return name


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def requirement_satisfied(requirement: str) -> bool:
    """Whether the installed distributions satisfy ``requirement``: name, version specifier and
    the packages its extras pull in (``dask[distributed]`` needs ``distributed`` too).

    Versions are compared with ``packaging`` when it is importable (it is in Slicer and in pip's
    environments); without it, presence of the distribution counts as satisfied.
    """
    if not _marker_applies(requirement):
        return True  # e.g. efficientsam on Slicer's Python 3.9: pip skips it, nothing is missing
    version = _installed_version(requirement_name(requirement))
    if version is None:
        return False
    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:
        return True
    try:
        parsed = Requirement(requirement)
    except InvalidRequirement as error:
        raise ValueError(f"Requirement must be a pip requirement string, not {requirement!r} ({error})") from None
    if not parsed.specifier.contains(version, prereleases=True):
        return False
    for extra in sorted(parsed.extras):
        for needed in importlib.metadata.requires(parsed.name) or []:
            dependency = Requirement(needed)
            if dependency.marker is None or not dependency.marker.evaluate({"extra": extra}):
                continue
            dependency.marker = None
            if not requirement_satisfied(str(dependency)):
                return False
    return True


def _marker_applies(requirement: str) -> bool:
    """Whether the environment marker after ``;`` holds here (True without one or without ``packaging``)."""
    if ";" not in requirement:
        return True
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return True
    marker = Requirement(requirement).marker
    return marker is None or marker.evaluate()


def missing_requirements(requirements: Iterable[str]) -> list[str]:
    """The requirement strings of ``requirements`` that are not satisfied, in their order."""
    return [requirement for requirement in requirements if not requirement_satisfied(requirement)]


def pinned_package_constraints(names: Sequence[str] = PINNED_PACKAGES) -> list[str]:
    """``name==version`` for every package of ``names`` that is installed (pip ``-c`` lines)."""
    constraints = []
    for name in names:
        version = _installed_version(name)
        if version is not None:
            constraints.append(f"{name}=={version}")
    return constraints


def pinned_conflicts(requirements: Iterable[str], names: Sequence[str] = PINNED_PACKAGES) -> list[str]:
    """The requirements of ``requirements`` that name a pinned package (they can only be met by
    a more recent Slicer, never by pip)."""
    pinned = {name.lower() for name in names}
    return [requirement for requirement in requirements if requirement_name(requirement).lower() in pinned]


def offline_install_instructions(requirements: Sequence[str]) -> str:
    """What to do when pip cannot reach a package index (a computer without network): download
    the wheels elsewhere with the same Slicer version and operating system, then install them
    from a folder. ``requirements`` are pip requirement strings."""
    packages = " ".join(f'"{requirement}"' for requirement in requirements)
    quoted = ", ".join(f"'{requirement}'" for requirement in requirements)
    return (
        "The Python packages could not be installed (is this computer offline?).\n\n"
        "To install them without network access:\n"
        "1. On a computer with network access and the same Slicer version and operating system, run\n"
        f"   PythonSlicer -m pip download -d samfewshot-wheels {packages}\n"
        "2. Copy the samfewshot-wheels folder to this computer.\n"
        "3. In Slicer's Python console run\n"
        f"   slicer.util.pip_install(['--no-index', '--find-links', '/path/to/samfewshot-wheels', {quoted}])\n"
        "4. Restart Slicer."
    )
