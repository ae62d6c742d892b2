"""Propagation engines: one file per engine, one common interface (see base.py).

:func:`make_engine` builds an engine from its command-line name: ``interpolate``, ``register``
(slice-to-slice registration), ``auto``, and the engines that need SAM weights: ``sam``
(SAM-MPA refinement), ``fewshot`` (mask decoder fine-tuned on the annotated slices' embeddings,
Xie et al.) and ``meta`` (adapters and self-sampling prompts adapted online, SSM-SAM). A suffix
chooses the slice registration of ``register`` and ``auto``: ``register:dis``, ``auto:elastix``
(default DIS optical flow, see propagation/registrar_names.py), and a further one how slices
take their masks from the drawn ones: ``register:kcentroid``, ``auto:elastix:kcentroid`` (SAM-MPA's
cluster-centre propagation; default nearest, see propagation/support_names.py). The names live in
catalog.py (no heavy imports); the SAM-based engines' shared options in options.py.
"""

from __future__ import annotations

from ..errors import InputError
from .base import Engine
from .catalog import ENGINE_NAMES, WEIGHTED_ENGINES, parse_engine

__all__ = ["ENGINE_NAMES", "WEIGHTED_ENGINES", "Engine", "make_engine"]


def make_engine(spec: str, **options) -> Engine:
    """The engine named ``spec`` (see the module docstring); InputError for unknown names.

    ``options`` go to the engines that use weights (``sam``: checkpoint, refine, model_type,
    device, window, cache, batch_size); ``sam:interpolate`` refines Fill-between-slices instead
    of the registration."""
    engine = parse_engine(spec)
    if engine.family == "sam":
        from .sam import SamEngine

        coarse = engine.coarse
        assert coarse is not None  # the catalogue fills in the default coarse engine of sam
        return SamEngine(options.pop("checkpoint", None), coarse=coarse, **options)
    if engine.family == "fewshot":
        from .fewshot import FewShotEngine

        return FewShotEngine(options.pop("checkpoint", None), **options)
    if engine.family == "meta":
        from .meta import MetaEngine

        return MetaEngine(options.pop("checkpoint", None), **options)
    if options:
        raise InputError(f"Engine {spec!r} takes no options ({', '.join(options)})")
    if engine.family == "interpolate":
        from .interpolate import InterpolateEngine

        return InterpolateEngine()
    from ..propagation.mask_chain import ChainSettings
    from .auto import AutoEngine
    from .register import RegisterEngine

    registrar, support = engine.registrar, engine.support
    assert registrar is not None and support is not None  # the catalogue fills in register/auto defaults
    if engine.family == "register":
        return RegisterEngine(backend=registrar, settings=ChainSettings(support=support))
    return AutoEngine(backend=registrar, settings=ChainSettings(support=support))
