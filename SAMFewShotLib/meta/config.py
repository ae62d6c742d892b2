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
        global_queries: learnable global query tokens of the self-sampling prompt encoder.
        positive_points, negative_points: points the self-sampling prompt encoder samples inside
            the prior mask and around it (features interpolated there become the point tokens).
        heads: attention heads of the prompt encoder and of the flexible mask attention (at
            most; see :meth:`attention_heads`).
        mask_heads: attention heads of the flexible mask attention (1: the paper's single map;
            each head compares d / mask_heads channels).
        decoder_dim: d, channels of each flexible mask attention output and of the fusion.
        temperature: tau of the flexible mask attention (Eq. 8: softmax(Q K^T / tau) of
            l2-normalised Q and K).
        norm_eps: epsilon of the instance norm of Eq. 10: the variance floor below which a
            slice's mask evidence is not blown up to unit variance (a slice without the target
            has almost none; 1e-5, PyTorch's default, turns its noise into a full-contrast map).
        key_pool: average-pooling factor of the support features and mask used as keys and
            values (2: a 64x64 embedding gives 32x32 = 1024 keys; 1: the paper's full grid).
        steps: S, passes of the online optimiser over the K support pairs (Algorithm 1).
        learning_rate: alpha, the SGD step size of every per-pair update (Algorithm 1).
        max_shift: with a single support slice, the online optimiser trains on copies of it shifted
            by up to this fraction of the slice size (each step draws a new shift).
        seed: seed of the plain init's random weights, the shifts and the sampled points.
        prior_in_fusion: deviation from the paper (off by default): the prior mask is also an
            input channel of the FMAD's fusion convolution (see the README's A/B).
        online_optimizer: "sgd" (the paper's Algorithm 1) or "adam" (deviation: every per-pair
            update follows Adam's direction; see the README's A/B).
        checkpointing: recompute each ViT block in the backward pass instead of keeping its
            activations (the full-size encoder's attention maps do not fit in 8 GB otherwise).
    """

    adapter_rank: int = 32
    global_queries: int = 4
    positive_points: int = 4
    negative_points: int = 4
    heads: int = 8
    mask_heads: int = 1
    decoder_dim: int = 32
    temperature: float = 0.05
    norm_eps: float = 1.0
    key_pool: int = 2
    steps: int = 24
    learning_rate: float = 0.05
    max_shift: float = 0.08
    seed: int = 0
    checkpointing: bool = True
    prior_in_fusion: bool = False
    online_optimizer: str = "sgd"

    def __post_init__(self) -> None:
        integers = ("adapter_rank", "global_queries", "positive_points", "heads", "mask_heads", "decoder_dim")
        for name in (*integers, "key_pool", "steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"MetaConfig.{name} must be an integer >= 1, not {value!r}")
        if not isinstance(self.negative_points, int) or self.negative_points < 0:
            raise InputError(f"MetaConfig.negative_points must be an integer >= 0, not {self.negative_points!r}")
        for name in ("temperature", "norm_eps", "learning_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InputError(f"MetaConfig.{name} must be a positive number, not {value!r}")
        if self.online_optimizer not in ("sgd", "adam"):
            raise InputError(f"MetaConfig.online_optimizer must be 'sgd' or 'adam', not {self.online_optimizer!r}")
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
    """Settings of Algorithm 2 (the inner loop's S and alpha come from the network's config).

    Attributes:
        iterations: N, meta-steps.
        tasks_per_step: T, tasks (organs) per meta-step; their query gradients are averaged.
        shots: K, support slices per task episode.
        queries: Q, query slices inside the structure per episode (plus one just outside).
        meta_lr: AdamW step size of theta_0 at the start (the paper's 2e-4), cosine-annealed.
        min_meta_lr: the step size reached at the last meta-step.
        weight_decay: AdamW's decoupled weight decay.
        seed: seed of the task and episode sampling.
    """

    iterations: int = 200
    tasks_per_step: int = 4
    shots: int = 3
    queries: int = 2
    meta_lr: float = 2e-4
    min_meta_lr: float = 1e-6
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("iterations", "tasks_per_step", "shots", "queries"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, not {getattr(self, name)!r}")
        if not self.meta_lr > 0:
            raise InputError(f"meta_lr must be positive, not {self.meta_lr!r}")
        if not self.weight_decay >= 0:
            raise InputError(f"weight_decay must be >= 0, not {self.weight_decay!r}")
