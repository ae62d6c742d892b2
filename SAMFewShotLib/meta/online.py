"""Algorithm 1 of SSM-SAM: the online fast gradient-descent optimiser.

Given the K annotated slices of a structure (the support pairs: image slice, mask), the
trainable tensors start from an init (the plain init or a meta-learned one) and take S steps:

    for s in 1..S:
        L = mean over the training pairs of (balanced BCE + IoU loss)
        g = dL/dtheta
        d = Adam direction of g (bias-corrected first / second moments)
        theta_t <- theta_t - alpha[s, t] * d_t        for every trainable tensor t

``alpha`` (S x tensors) is the plain init's constant step size or the meta-learner's per-step,
per-tensor step sizes (MAML++'s learned step sizes).

Training pairs: with K >= 2 every support slice is a query whose support (keys/values of the
mask attention, and the prior its prompt points are sampled from) is the nearest other support
slice; a slice declared empty for the structure is a query (empty target) with the nearest
support. With K = 1 the query is a copy of the support slice shifted by a random offset of up
to ``config.max_shift`` of its size, new at every step (without it, the decoder could learn to
copy the support's mask).
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
    network: SSMSam, pairs: Sequence[tuple[SliceExample, SliceExample]], cache: PatchCache
) -> tuple[torch.Tensor, int]:
    """Mean segmentation loss of the pairs (every distinct slice encoded once) and the number of
    encoder forward passes."""
    features: dict[int, EncoderFeatures] = {}
    for example in dict.fromkeys(e for pair in pairs for e in pair):
        features[id(example)] = network.features(cache.get(example))
    losses = [
        segmentation_loss(network.decode_example(features[id(q)], q, features[id(s)], s), q.mask) for q, s in pairs
    ]
    return torch.stack(losses).mean(), len(features)


class InnerAdam:
    """Adam update directions for tensors whose step sizes are given per step from outside.

    ``direction(grads)`` updates the moments and returns ``m_hat / (sqrt(v_hat) + eps)`` per
    tensor; the caller multiplies by its step size.
    """

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
            m_hat = m / (1 - b1**self.count)
            v_hat = v / (1 - b2**self.count)
            out.append(m_hat / (v_hat.sqrt() + self.eps))
        return out


def gradients(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """d loss / d params (zeros for tensors the loss does not reach)."""
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@torch.no_grad()
def apply_step(params: Sequence[torch.Tensor], directions: Sequence[torch.Tensor], rates: torch.Tensor) -> None:
    """theta_t -= rates[t] * direction_t for every tensor t (in place)."""
    for p, d, rate in zip(params, directions, rates.tolist()):
        p.sub_(d, alpha=rate)


@dataclass
class OnlineResult:
    """What one online adaptation did.

    Attributes:
        losses: the support loss before each step (S values).
        final_loss: the support loss after the last step (without the random shift's
            randomness only when K >= 2); None when not evaluated.
        seconds: wall time of the steps (and of the final evaluation).
        encoder_passes: adapted-encoder forward passes (with gradients).
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
    """Run Algorithm 1 on ``network``'s trainable tensors, in place.

    Args:
        network: the network, holding the init to start from.
        support_set: the K support pairs (and declared-empty slices).
        learning_rates: (S, T) float step sizes, T = number of trainable tensors in
            ``network.trainable()`` order; S = the number of steps.
        rng: draws the shifts of a single support slice.
        cache: patch embeddings already computed (a new cache otherwise).
        evaluate_final: also compute the support loss after the last step.
        stage, progress: ``progress(stage, step, S)`` after every step.
        cancel: polled before every step.
    """
    start = time.perf_counter()
    params = list(network.trainable().values())
    if learning_rates.ndim != 2 or learning_rates.shape[1] != len(params):
        raise ValueError(
            f"learning_rates must have shape (steps, {len(params)}), not {tuple(learning_rates.shape)}"
        )
    cache = cache or PatchCache(network)
    optimiser = InnerAdam(params)
    steps = int(learning_rates.shape[0])
    losses, passes = [], 0
    progress(stage, 0, steps)
    for step in range(steps):
        if cancel is not None:
            cancel.raise_if_cancelled()
        loss, used = pairs_loss(network, support_set.pairs(network.sam, rng), cache)
        apply_step(params, optimiser.direction(gradients(loss, params)), learning_rates[step])
        losses.append(float(loss.detach()))
        passes += used
        progress(stage, step + 1, steps)
    final = None
    if evaluate_final:
        with torch.no_grad():
            final = float(pairs_loss(network, support_set.pairs(network.sam, rng), cache)[0])
    return OnlineResult(losses, final, time.perf_counter() - start, passes)
