"""Algorithm 2 of SSM-SAM: the offline meta-learner of the online optimiser's starting point.

MAML++-style, first-order:

    theta_0 <- plain init;  log alpha <- log(config.learning_rate)  (S x tensors)
    for i in 1..N (outer iterations):
        sample a task and an episode (K supports, Q queries, see tasks.py)
        theta <- theta_0
        for s in 1..S: the online step of Algorithm 1 on the supports,
                       theta <- theta - alpha[s] * d_s   (d_s: Adam direction, kept)
                       if w_s > 0: L_s = query loss at theta (balanced BCE + IoU)
        meta-gradients (first order): dtheta_0 = sum_s w_s dL_s/dtheta,
                       dalpha[t] = -sum_{s >= t} w_s <dL_s/dtheta, d_t>  (per tensor)
        Adam step on (theta_0, log alpha), meta step size cosine-annealed to ``min_meta_lr``

MAML++ pieces used: learned per-step, per-tensor step sizes (LSLR), the multi-step loss (MSL:
query losses after every inner step, weights annealed from uniform to the last step over the
first ``msl_fraction`` of the iterations), cosine annealing of the meta step size (CA).
Not used: second-order derivatives (derivative-order annealing) - the inner loop runs through
SAM's ViT with gradient checkpointing and would need its double backward - and per-step batch
norm (the network has no batch norm).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..progress import CancelToken, Progress, no_progress
from .config import MetaTrainingSettings  # noqa: F401 (re-exported)
from .network import SSMSam
from .online import InnerAdam, PatchCache, apply_step, gradients, pairs_loss
from .tasks import Task, sample_episode

STAGE = "meta-train"


@dataclass
class MetaTrainingResult:
    """The meta-learned starting point and the run's record.

    Attributes:
        state: {name: tensor} theta_0.
        learning_rates: (S, T) float32 alpha.
        query_losses: per iteration, the query loss after the last inner step.
        support_losses: per iteration, the support loss before the first inner step.
        seconds: wall time; iterations: N; tasks: task names.
    """

    state: dict[str, torch.Tensor]
    learning_rates: torch.Tensor
    query_losses: list[float] = field(default_factory=list)
    support_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    iterations: int = 0
    tasks: list[str] = field(default_factory=list)


def msl_weights(iteration: int, iterations: int, steps: int, fraction: float) -> np.ndarray:
    """MAML++ multi-step loss weights of the S inner steps at an outer iteration: uniform at
    the start, all on the last step after ``fraction`` of the iterations (non-final weights
    never below 0.03 / S before that)."""
    weights = np.zeros(steps)
    horizon = fraction * iterations
    if steps == 1 or iteration >= horizon:
        weights[-1] = 1.0
        return weights
    non_final = max((1.0 - iteration / horizon) / steps, 0.03 / steps)
    weights[:-1] = non_final
    weights[-1] = 1.0 - non_final * (steps - 1)
    return weights


def meta_train(
    network: SSMSam,
    tasks: Sequence[Task],
    settings: MetaTrainingSettings,
    *,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> MetaTrainingResult:
    """Meta-learn theta_0 and alpha from ``network``'s current (plain) init over ``tasks``.

    The network's trainable tensors are used as the fast weights and hold theta_0 again at
    the end. Progress: ``(STAGE, iteration, N)``; cancel is polled before every inner step.
    """
    if not tasks:
        raise ValueError("Meta-training needs at least one task")
    start = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    named = network.trainable()
    params = list(named.values())
    steps = network.config.steps
    theta0 = [p.detach().clone().requires_grad_(True) for p in params]
    log_rates = torch.full((steps, len(params)), math.log(network.config.learning_rate), requires_grad=True)
    outer = torch.optim.Adam(
        [{"params": theta0, "lr": settings.meta_lr}, {"params": [log_rates], "lr": settings.rate_lr}]
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        outer, T_max=settings.iterations, eta_min=settings.min_meta_lr
    )
    result = MetaTrainingResult(state={}, learning_rates=torch.empty(0), tasks=[t.name for t in tasks])
    progress(STAGE, 0, settings.iterations)
    for iteration in range(settings.iterations):
        task = tasks[int(rng.integers(len(tasks)))]
        episode = sample_episode(network.sam, task, settings.shots, settings.queries, network.config.max_shift, rng)
        with torch.no_grad():
            for p, p0 in zip(params, theta0):
                p.copy_(p0)
        cache = PatchCache(network)
        inner = InnerAdam(params)
        rates = log_rates.detach().exp()
        weights = msl_weights(iteration, settings.iterations, steps, settings.msl_fraction)
        meta_grads = [torch.zeros_like(p) for p in params]
        rate_grads = torch.zeros_like(log_rates)
        directions: list[list[torch.Tensor]] = []
        for step in range(steps):
            if cancel is not None:
                cancel.raise_if_cancelled()
            loss, _ = pairs_loss(network, episode.support_set.pairs(network.sam, rng), cache)
            if step == 0:
                result.support_losses.append(float(loss.detach()))
            directions.append(inner.direction(gradients(loss, params)))
            apply_step(params, directions[-1], rates[step])
            if weights[step] == 0:
                continue
            query_loss, _ = pairs_loss(network, episode.queries, cache)
            query_grads = gradients(query_loss, params)
            with torch.no_grad():
                for total, g in zip(meta_grads, query_grads):
                    total.add_(g, alpha=float(weights[step]))
                for earlier in range(step + 1):
                    products = torch.stack([(g * d).sum() for g, d in zip(query_grads, directions[earlier])])
                    rate_grads[earlier] -= float(weights[step]) * products.cpu()
            if step == steps - 1:
                result.query_losses.append(float(query_loss.detach()))
        for p0, g in zip(theta0, meta_grads):
            p0.grad = g.to(p0.device)
        log_rates.grad = rate_grads * rates  # d/dlog(alpha) = alpha * d/dalpha
        outer.step()
        outer.zero_grad(set_to_none=True)
        schedule.step()
        progress(STAGE, iteration + 1, settings.iterations)
    with torch.no_grad():
        for p, p0 in zip(params, theta0):
            p.copy_(p0)
    result.state = {name: p0.detach().cpu().clone() for name, p0 in zip(named, theta0)}
    result.learning_rates = log_rates.detach().exp().float()
    result.iterations = settings.iterations
    result.seconds = time.perf_counter() - start
    return result
