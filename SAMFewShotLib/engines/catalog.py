"""The engine catalogue: every engine name the backend knows, in one place, with no heavy imports
(no torch, no itk), so the command line can build its parser and check names before any work.

An engine is named ``FAMILY`` or ``FAMILY:OPTION``:

- ``interpolate``: Fill-between-slices; no option.
- ``register``, ``auto``: slice-to-slice registration; the option picks the registrar
  (``register:dis``, ``auto:elastix``; default :data:`DEFAULT_REGISTRAR`), the support mode
  (``register:kcentroid``: SAM-MPA's cluster-centre propagation; default :data:`DEFAULT_SUPPORT`)
  or both, registrar first (``register:elastix-mpa:kcentroid``).
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
from ..propagation.support_names import DEFAULT_SUPPORT, SUPPORT_MODES
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
    *(f"register:{mode}" for mode in SUPPORT_MODES if mode != DEFAULT_SUPPORT),
    "sam",
    "sam:interpolate",
    "fewshot",
    "meta",
)

__all__ = [
    "DEFAULT_REGISTRAR",
    "DEFAULT_SUPPORT",
    "DEVICES",
    "ENGINE_NAMES",
    "FUSION_METHODS",
    "REGISTRAR_NAMES",
    "SAM_COARSE_ENGINES",
    "SUPPORT_MODES",
    "WEIGHTED_ENGINES",
    "WEIGHTLESS_ENGINES",
    "EngineSpec",
    "engine_family",
    "needs_weights",
    "parse_engine",
    "with_support",
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
        named = [part for part in self.option.split(":") if part in REGISTRAR_NAMES]
        return named[0] if named else DEFAULT_REGISTRAR

    @property
    def support(self) -> str | None:
        """The support mode of ``register`` / ``auto`` (default filled in); None for the others."""
        if self.family not in ("register", "auto"):
            return None
        named = [part for part in self.option.split(":") if part in SUPPORT_MODES]
        return named[0] if named else DEFAULT_SUPPORT

    @property
    def coarse(self) -> str | None:
        """The coarse engine the ``sam`` engine refines (default filled in); None for the others."""
        if self.family != "sam":
            return None
        return self.option or SAM_COARSE_ENGINES[0]


def _valid(family: str, option: str) -> bool:
    if family in ("register", "auto"):
        if not option:
            return True
        parts = option.split(":")
        if len(parts) == 1:
            return parts[0] in REGISTRAR_NAMES or parts[0] in SUPPORT_MODES
        return len(parts) == 2 and parts[0] in REGISTRAR_NAMES and parts[1] in SUPPORT_MODES
    if family == "sam":
        return not option or option in SAM_COARSE_ENGINES
    return family in ("interpolate", "fewshot", "meta") and not option


def parse_engine(spec: str) -> EngineSpec:
    """``"register:dis"`` -> EngineSpec("register", "dis"), ``"auto:elastix:kcentroid"`` ->
    EngineSpec("auto", "elastix:kcentroid"); InputError naming the known engines for anything
    else."""
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


def with_support(spec: str, support: str | None) -> str:
    """``spec`` with the support mode ``support`` (``--support``) added to its option: ``("auto",
    "kcentroid")`` -> ``"auto:kcentroid"``; None or the mode the spec already has leaves it as it
    is. InputError for an unknown mode, an engine without support modes, or a spec naming another
    mode."""
    if support is None:
        return spec
    if support not in SUPPORT_MODES:
        raise InputError(f"--support must be one of {', '.join(SUPPORT_MODES)}, not {support!r}")
    parsed = parse_engine(spec)
    if parsed.support is None:
        if support == DEFAULT_SUPPORT:
            return spec
        raise InputError(f"--support is for the register and auto engines, not {spec!r}")
    named = [part for part in parsed.option.split(":") if part in SUPPORT_MODES]
    if named:
        if named[0] != support:
            raise InputError(f"--support {support} contradicts the engine {spec!r}")
        return spec
    return f"{parsed.family}:{':'.join(filter(None, (parsed.option, support)))}"
