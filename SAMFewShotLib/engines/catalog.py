"""The engine catalogue: every engine name the backend knows, in one place, with no heavy imports
(no torch, no itk), so the command line can build its parser and check names before any work.

An engine is named ``FAMILY`` or ``FAMILY:OPTION``:

- ``interpolate``: Fill-between-slices; no option.
- ``register``, ``auto``: slice-to-slice registration; the option picks the registrar
  (``register:dis``, ``auto:elastix``; default :data:`DEFAULT_REGISTRAR`).
- ``sam``: SAM-MPA refinement of a coarse engine (``sam:register`` = ``sam``, ``sam:interpolate``).
- ``fewshot``, ``meta``: SAM-based engines without option.

The SAM-based engines (:data:`WEIGHTED_ENGINES`) need model weights and take the SAM options
(see options.py: checkpoint, model type, device ...); the others run on the CPU without weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..atlas.fusion_methods import FUSION_METHODS
from ..errors import InputError
from ..propagation.registrar_names import DEFAULT_REGISTRAR, REGISTRAR_NAMES
from ..sam.device import DEVICES

#: Engines that need no weights and run on the CPU.
WEIGHTLESS_ENGINES = ("auto", "interpolate", "register")
#: Engines that use model weights (and so the --checkpoint, --device, --model-type options).
WEIGHTED_ENGINES = ("sam", "fewshot", "meta")
#: Slice registrars of ``register`` / ``auto`` (``register:NAME``).
#: Coarse engines the ``sam`` engine refines (``sam:NAME``; default the first).
SAM_COARSE_ENGINES = ("register", "interpolate")
#: Every engine name, as listed in messages (the registrar suffixes apply to ``auto`` too).
ENGINE_NAMES = (
    "auto",
    "interpolate",
    "register",
    *(f"register:{name}" for name in REGISTRAR_NAMES if name != DEFAULT_REGISTRAR),
    "sam",
    "sam:interpolate",
    "fewshot",
    "meta",
)

__all__ = [
    "DEFAULT_REGISTRAR",
    "DEVICES",
    "ENGINE_NAMES",
    "FUSION_METHODS",
    "REGISTRAR_NAMES",
    "SAM_COARSE_ENGINES",
    "WEIGHTED_ENGINES",
    "WEIGHTLESS_ENGINES",
    "EngineSpec",
    "engine_family",
    "needs_weights",
    "parse_engine",
]


@dataclass(frozen=True)
class EngineSpec:
    """A parsed engine name: ``family`` (e.g. ``register``) and ``option`` ("" when none given)."""

    family: str
    option: str = ""

    @property
    def needs_weights(self) -> bool:
        """True for the SAM-based engines (they take --checkpoint, --model-type, --device)."""
        return self.family in WEIGHTED_ENGINES

    @property
    def registrar(self) -> str | None:
        """The slice registrar of ``register`` / ``auto`` (default filled in); None for the others."""
        if self.family not in ("register", "auto"):
            return None
        return self.option or DEFAULT_REGISTRAR

    @property
    def coarse(self) -> str | None:
        """The coarse engine the ``sam`` engine refines (default filled in); None for the others."""
        if self.family != "sam":
            return None
        return self.option or SAM_COARSE_ENGINES[0]


def _valid(family: str, option: str) -> bool:
    if family in ("register", "auto"):
        return not option or option in REGISTRAR_NAMES
    if family == "sam":
        return not option or option in SAM_COARSE_ENGINES
    return family in ("interpolate", "fewshot", "meta") and not option


def parse_engine(spec: str) -> EngineSpec:
    """``"register:dis"`` -> EngineSpec("register", "dis"); InputError naming the known engines
    for anything else."""
    family, _, option = spec.partition(":")
    if not _valid(family, option):
        raise InputError(f"Engine must be one of {', '.join(ENGINE_NAMES)}, not {spec!r}")
    return EngineSpec(family, option)


def engine_family(spec: str) -> str:
    """``"register:dis"`` -> ``"register"`` (no validation)."""
    return spec.partition(":")[0]


def needs_weights(spec: str) -> bool:
    """True when the engine named ``spec`` is SAM-based (no validation of the rest of the name)."""
    return engine_family(spec) in WEIGHTED_ENGINES
