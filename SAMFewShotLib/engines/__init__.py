"""Propagation engines: one file per engine, one common interface (see base.py).

:func:`make_engine` builds an engine from its command-line name: ``interpolate``, ``register``
(slice-to-slice registration) or ``auto``. A suffix chooses the slice registration of
``register`` and ``auto``: ``register:dis``, ``auto:elastix`` (default TV-L1 optical flow, see
propagation/slice_registration.py). The SAM-family engines (``sam``, ``fewshot``, ``meta``)
need model weights and come with their own issues; asking for them says so.
"""

from __future__ import annotations

from ..propagation.slice_registration import DEFAULT_REGISTRAR, REGISTRARS
from .base import Engine

#: Engines that exist on the design card but are not built yet, with what they need.
PLANNED_ENGINES = {
    "sam": "the SAM engine (SAM-MPA auto-prompts) is not available in this version",
    "fewshot": "the few-shot decoder engine is not available in this version",
    "meta": "the meta-learned adapter engine is not available in this version",
}
ENGINE_NAMES = ("auto", "interpolate", "register", "register:dis", "register:elastix")


def make_engine(spec: str) -> Engine:
    """The engine named ``spec`` (see the module docstring); ValueError for unknown names."""
    name, _, option = spec.partition(":")
    if name == "interpolate" and not option:
        from .interpolate import InterpolateEngine

        return InterpolateEngine()
    if name in ("register", "auto") and (not option or option in REGISTRARS):
        from .auto import AutoEngine
        from .register import RegisterEngine

        engine_class = RegisterEngine if name == "register" else AutoEngine
        return engine_class(backend=option or DEFAULT_REGISTRAR)
    if name in PLANNED_ENGINES:
        raise ValueError(f"Engine {spec!r}: {PLANNED_ENGINES[name]}")
    raise ValueError(f"Engine must be one of {', '.join(ENGINE_NAMES)}, not {spec!r}")
