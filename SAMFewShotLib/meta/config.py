"""Hyper-parameters of the ``meta`` engine (SSM-SAM), stored in every meta-learned init file."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from ..errors import InputError


@dataclass(frozen=True)
class MetaConfig:
    """Sizes of the trainable modules and settings of the online optimiser (Algorithm 1).

    Attributes:
        adapter_rank: width of the adapters' bottleneck (shared down-projection, per-block tune
            MLPs, shared up-projection).
        global_queries: learnable global query tokens of the self-sampling prompt module.
        heads: attention heads of the prompt module and of the mask attention sub-blocks (at
            most; see :meth:`attention_heads`).
        key_pool: average-pooling factor of the support features used as keys and values by the
            mask attention sub-blocks (2: a 64x64 embedding gives 32x32 = 1024 keys).
        mask_sigma: Gaussian blur of the support mask, in embedding-grid cells (1 cell = 16 input
            pixels of SAM's 1024-pixel frame).
        steps: S, gradient steps of the online optimiser over the K support pairs.
        learning_rate: the plain init's step size of every parameter tensor at every step (a
            meta-learned init replaces it by learned per-step, per-tensor step sizes).
        max_shift: with a single support slice, the online optimiser trains on copies of it shifted
            by up to this fraction of the slice size (each step draws a new shift).
        seed: seed of the plain init's random weights and of the shifts.
        checkpointing: recompute each ViT block in the backward pass instead of keeping its
            activations (the full-size encoder's attention maps do not fit in 8 GB otherwise).
    """

    adapter_rank: int = 32
    global_queries: int = 4
    heads: int = 8
    key_pool: int = 2
    mask_sigma: float = 1.0
    steps: int = 24
    learning_rate: float = 2e-3
    max_shift: float = 0.08
    seed: int = 0
    checkpointing: bool = True

    def __post_init__(self) -> None:
        for name in ("adapter_rank", "global_queries", "heads", "key_pool", "steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"MetaConfig.{name} must be an integer >= 1, not {value!r}")
        for name in ("mask_sigma", "learning_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InputError(f"MetaConfig.{name} must be a positive number, not {value!r}")
        if not 0 <= self.max_shift < 0.5:
            raise InputError(f"MetaConfig.max_shift must be in [0, 0.5), not {self.max_shift!r}")

    def attention_heads(self, width: int) -> int:
        """Heads for attention over ``width`` channels projected to ``width // 2``: at most
        ``heads``, dividing ``width // 2``, at least 16 channels per head where possible."""
        internal = max(1, width // 2)
        heads = math.gcd(self.heads, internal)
        while heads > 1 and internal // heads < 16:
            heads = math.gcd(heads // 2, internal)
        return heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> MetaConfig:
        """The config of an init file; ValueError naming an unknown field."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"Unknown meta config field {unknown[0]!r}")
        return cls(**values)


@dataclass(frozen=True)
class MetaTrainingSettings:
    """Outer-loop settings (the inner loop's S and step sizes come from the network's config).

    Attributes:
        iterations: N, outer iterations (one episode each).
        shots: K, support slices per episode.
        queries: Q, query slices inside the structure per episode (plus one just outside).
        meta_lr: Adam step size of theta_0 at the start (cosine-annealed).
        rate_lr: Adam step size of log alpha at the start (cosine-annealed).
        min_meta_lr: step size both reach at the last iteration.
        msl_fraction: share of the iterations with the multi-step loss.
        seed: seed of the episode sampling.
    """

    iterations: int = 200
    shots: int = 3
    queries: int = 2
    meta_lr: float = 1e-3
    rate_lr: float = 1e-2
    min_meta_lr: float = 1e-5
    msl_fraction: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("iterations", "shots", "queries"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, not {getattr(self, name)!r}")
        for name in ("meta_lr", "rate_lr"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be positive, not {getattr(self, name)!r}")
        if not 0 <= self.msl_fraction <= 1:
            raise InputError(f"msl_fraction must be in [0, 1], not {self.msl_fraction!r}")
