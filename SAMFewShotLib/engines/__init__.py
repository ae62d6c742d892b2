"""Propagation engines: one file per engine, one common interface (see base.py).

:func:`make_engine` builds an engine from its command-line name: ``interpolate``, ``register``
(slice-to-slice registration), ``auto``, and the engines that need SAM weights: ``sam``
(SAM-MPA refinement), ``fewshot`` (mask decoder fine-tuned on the annotated slices' embeddings,
Xie et al.) and ``meta`` (adapters and self-sampling prompts adapted online, SSM-SAM). A suffix
chooses the slice registration of ``register`` and ``auto``: ``register:dis``, ``auto:elastix``
(default TV-L1 optical flow, see propagation/slice_registration.py).
"""

from __future__ import annotations

from ..propagation.slice_registration import DEFAULT_REGISTRAR, REGISTRARS
from .base import Engine

ENGINE_NAMES = (
    "auto",
    "interpolate",
    "register",
    "register:dis",
    "register:elastix",
    "sam",
    "sam:interpolate",
    "fewshot",
    "meta",
)
#: Engines that use model weights (and so the --checkpoint, --device, --model-type options).
WEIGHTED_ENGINES = ("sam", "fewshot", "meta")


def make_engine(spec: str, **options) -> Engine:
    """The engine named ``spec`` (see the module docstring); ValueError for unknown names.

    ``options`` go to the engines that use weights (``sam``: checkpoint, refine, model_type,
    device, window, cache, batch_size); ``sam:interpolate`` refines Fill-between-slices instead
    of the registration."""
    name, _, option = spec.partition(":")
    if name == "sam" and option in ("", "register", "interpolate"):
        from .sam import SamEngine

        return SamEngine(options.pop("checkpoint", None), coarse=option or "register", **options)
    if name == "fewshot" and not option:
        from .fewshot import FewShotEngine

        return FewShotEngine(options.pop("checkpoint", None), **options)
    if name == "meta" and not option:
        from .meta import MetaEngine

        return MetaEngine(options.pop("checkpoint", None), **options)
    if options:
        raise ValueError(f"Engine {spec!r} takes no options ({', '.join(options)})")
    if name == "interpolate" and not option:
        from .interpolate import InterpolateEngine

        return InterpolateEngine()
    if name in ("register", "auto") and (not option or option in REGISTRARS):
        from .auto import AutoEngine
        from .register import RegisterEngine

        engine_class = RegisterEngine if name == "register" else AutoEngine
        return engine_class(backend=option or DEFAULT_REGISTRAR)
    raise ValueError(f"Engine must be one of {', '.join(ENGINE_NAMES)}, not {spec!r}")
