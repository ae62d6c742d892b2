"""Algorithm 1 of SSM-SAM (Leng et al.): the online fast gradient-descent optimiser.

Given the K annotated slices of a structure (the support pairs: image slice, mask), the
trainable tensors start from an init (the plain init or a meta-learned one) and take S x K
plain SGD updates, one per training pair, as the paper's Algorithm 1:

    for s in 1..S:
        for every training pair (query q, support p):
            L = balanced BCE + IoU loss of the prediction of q (given p) against q's mask
            theta_t <- theta_t - alpha[s, t] * dL/dtheta_t        for every trainable tensor t

``alpha`` (S x tensors) is the plain init's constant step size (``config.learning_rate``), or
the meta-learned init's. Deviation, off by default (``config.online_optimizer = "adam"``): each
per-pair update follows Adam's bias-corrected direction instead of the raw gradient (from the
plain init, plain SGD does not fit the supports in tens of updates; see the README's A/B).

Training pairs: with K >= 2 every support slice is a query whose support (keys and mask values
of the flexible mask attention, and the prior its prompt points are sampled from) is the
nearest other support slice; a slice declared empty for the structure is a query (empty target)
with the nearest support. With K = 1 the query is a copy of the support slice shifted by a
random offset of up to ``config.max_shift`` of its size, new at every step.

Cost: only the query side is differentiated; the support's features are the detached output of
that slice's latest adapted-encoder pass (its own query pass in this or the previous sweep; a
no-gradient pass at the start, and every sweep for a support that is never a query), so an
update costs one adapted-encoder pass with gradients.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..progress import CancelToken, Progress, no_progress
from ..sam.preprocess import Preprocessing
from ..volume import Volume
from .losses import segmentation_loss
from .model import EncoderFeatures
from .network import SSMSam
from .slices import SliceExample, shifted


def nearest(index: int, candidates: Sequence[SliceExample]) -> SliceExample:
    """The candidate whose slice index is nearest to ``index`` (the lower one on a tie)."""
    return min(candidates, key=lambda c: (abs(c.index - index), c.index))


@dataclass
class SupportSet:
    """The support pairs of one structure, and what is needed to make shifted copies.

    Attributes:
        supports: the drawn slices with their masks (K >= 1), sorted by index.
        negatives: slices declared empty for the structure (empty masks).
        volume, axis, preprocessing: where the slices come from (for shifted copies).
        max_shift: largest shift of a copy, as a fraction of the slice size.
    """

    supports: list[SliceExample]
    negatives: list[SliceExample]
    volume: Volume
    axis: int
    preprocessing: Preprocessing
    max_shift: float

    def __post_init__(self) -> None:
        if not self.supports:
            raise ValueError("The online optimiser needs at least one support slice with a mask")

    def pairs(self, sam, rng: np.random.Generator) -> list[tuple[SliceExample, SliceExample]]:
        """(query, support) training pairs of one step (see the module docstring)."""
        pairs = []
        if len(self.supports) == 1:
            support = self.supports[0]
            rows, cols = support.mask.shape
            limit = (max(1, int(rows * self.max_shift)), max(1, int(cols * self.max_shift)))
            dr, dc = (int(rng.integers(-n, n + 1)) for n in limit)
            shift = (dr, dc)
            pairs.append((shifted(sam, self.volume, self.axis, support, shift, self.preprocessing), support))
        else:
            for query in self.supports:
                others = [s for s in self.supports if s is not query]
                pairs.append((query, nearest(query.index, others)))
        pairs.extend((negative, nearest(negative.index, self.supports)) for negative in self.negatives)
        return pairs


@dataclass
class PatchCache:
    """Frozen patch embeddings of the examples of one run, computed once each."""

    network: SSMSam
    patches: dict[int, torch.Tensor] = field(default_factory=dict)
    computed: int = 0

    def get(self, example: SliceExample) -> torch.Tensor:
        key = id(example)
        if key not in self.patches:
            if example.index < 0:  # a shifted copy: used once, never kept
                return self.network.embed([example.item])
            self.patches[key] = self.network.embed([example.item])
            self.computed += 1
        return self.patches[key]


def pairs_loss(
    network: SSMSam, pairs: Sequence[tuple[SliceExample, SliceExample]], cache: PatchCache,
    rng: np.random.Generator | None = None,
) -> tuple[torch.Tensor, int]:
    """Mean segmentation loss of the pairs at the current tensors (every distinct slice encoded
    once, with gradients) and the number of encoder forward passes."""
    features: dict[int, EncoderFeatures] = {}
    for example in dict.fromkeys(e for pair in pairs for e in pair):
        features[id(example)] = network.features(cache.get(example))
    losses = [
        segmentation_loss(network.decode_example(features[id(q)], q, features[id(s)], s, rng=rng), q.mask)
        for q, s in pairs
    ]
    return torch.stack(losses).mean(), len(features)


def detached(features: EncoderFeatures) -> EncoderFeatures:
    """``features`` without their autograd history."""
    return EncoderFeatures([s.detach() for s in features.stages], features.image_embedding.detach())


def gradients(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """d loss / d params (zeros for tensors the loss does not reach)."""
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@torch.no_grad()
def apply_step(params: Sequence[torch.Tensor], directions: Sequence[torch.Tensor], rates: torch.Tensor) -> None:
    """theta_t -= rates[t] * direction_t for every tensor t (in place; ``rates`` (T,))."""
    for p, d, rate in zip(params, directions, rates.tolist()):
        p.sub_(d, alpha=rate)


class InnerAdam:
    """Adam update directions (the ``online_optimizer = "adam"`` deviation): ``direction(grads)``
    updates the moments and returns ``m_hat / (sqrt(v_hat) + eps)`` per tensor; the caller
    multiplies by its step size."""

    def __init__(self, params: Sequence[torch.Tensor], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.betas, self.eps, self.count = betas, eps, 0
        self.first = [torch.zeros_like(p) for p in params]
        self.second = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def direction(self, grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        self.count += 1
        b1, b2 = self.betas
        out = []
        for m, v, g in zip(self.first, self.second, grads):
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            out.append((m / (1 - b1**self.count)) / ((v / (1 - b2**self.count)).sqrt() + self.eps))
        return out


def sgd_sweep(
    network: SSMSam,
    pairs: Sequence[tuple[SliceExample, SliceExample]],
    params: Sequence[torch.Tensor],
    rates: torch.Tensor,
    cache: PatchCache,
    support_features: dict[int, EncoderFeatures],
    rng: np.random.Generator,
    adam: InnerAdam | None = None,
) -> tuple[float, int]:
    """One s of Algorithm 1: an SGD update per pair, in place. Returns the pairs' mean loss
    (each before its update) and the adapted-encoder passes made.

    ``support_features`` ({id(example): detached features}) is read for the supports and updated
    with every query's pass (see the module docstring). ``adam``: the deviation's moments (None:
    plain SGD, the paper's update)."""
    queries = {id(q) for q, _ in pairs}
    passes = 0
    for _, support in pairs:
        if id(support) not in support_features or id(support) not in queries:
            with torch.no_grad():
                support_features[id(support)] = network.features(cache.get(support))
            passes += 1
    losses = []
    for query, support in pairs:
        features = network.features(cache.get(query))
        passes += 1
        loss = segmentation_loss(
            network.decode_example(features, query, support_features[id(support)], support, rng=rng), query.mask
        )
        grads = gradients(loss, params)
        apply_step(params, grads if adam is None else adam.direction(grads), rates)
        support_features[id(query)] = detached(features)
        losses.append(float(loss.detach()))
    return float(np.mean(losses)), passes


@dataclass
class OnlineResult:
    """What one online adaptation did.

    Attributes:
        losses: per s, the mean over the pairs of each pair's loss before its update (S values).
        final_loss: the support loss after the last step (without the random shift's
            randomness only when K >= 2); None when not evaluated.
        seconds: wall time of the steps (and of the final evaluation).
        encoder_passes: adapted-encoder forward passes (with gradients, and the detached support
            passes).
    """

    losses: list[float]
    final_loss: float | None
    seconds: float
    encoder_passes: int


def adapt(
    network: SSMSam,
    support_set: SupportSet,
    learning_rates: torch.Tensor,
    *,
    rng: np.random.Generator,
    cache: PatchCache | None = None,
    evaluate_final: bool = True,
    stage: str = "meta: online steps",
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> OnlineResult:
    """Run Algorithm 1 (S sweeps of per-pair SGD updates) on ``network``'s trainable tensors, in place.

    Args:
        network: the network, holding the init to start from.
        support_set: the K support pairs (and declared-empty slices).
        learning_rates: (S, T) float step sizes alpha, T = number of trainable tensors in
            ``network.trainable()`` order; S = the number of sweeps.
        rng: draws the shifts of a single support slice and the self-sampled prompt points.
        cache: patch embeddings already computed (a new cache otherwise).
        evaluate_final: also compute the support loss after the last sweep.
        stage, progress: ``progress(stage, s, S)`` after every sweep.
        cancel: polled before every sweep.
    """
    start = time.perf_counter()
    params = list(network.trainable().values())
    if learning_rates.ndim != 2 or learning_rates.shape[1] != len(params):
        raise ValueError(
            f"learning_rates must have shape (steps, {len(params)}), not {tuple(learning_rates.shape)}"
        )
    cache = cache or PatchCache(network)
    steps = int(learning_rates.shape[0])
    losses, passes = [], 0
    support_features: dict[int, EncoderFeatures] = {}
    adam = InnerAdam(params) if network.config.online_optimizer == "adam" else None
    progress(stage, 0, steps)
    for step in range(steps):
        if cancel is not None:
            cancel.raise_if_cancelled()
        pairs = support_set.pairs(network.sam, rng)
        loss, used = sgd_sweep(network, pairs, params, learning_rates[step], cache, support_features, rng, adam)
        losses.append(loss)
        passes += used
        progress(stage, step + 1, steps)
    final = None
    if evaluate_final:
        with torch.no_grad():
            final = float(pairs_loss(network, support_set.pairs(network.sam, rng), cache, rng)[0])
    return OnlineResult(losses, final, time.perf_counter() - start, passes)
