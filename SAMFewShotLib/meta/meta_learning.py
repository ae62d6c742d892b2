"""Algorithm 2 of SSM-SAM (Leng et al.): meta-training of the online optimiser's starting point.

First-order, over tasks (one structure of one labelled volume each, see tasks.py):

    theta_0 <- plain init
    for i in 1..N (meta-steps):
        sample T tasks (organs; distinct when there are at least T)
        for every task tau:
            theta <- theta_0
            Algorithm 1 on tau's supports: S sweeps of per-pair updates at rate alpha
            g_tau = dL_query(theta) / dtheta     (query slices of tau, at the adapted theta)
        theta_0 <- AdamW(theta_0, mean over tau of g_tau)   lr 2e-4, cosine-annealed to ``min_meta_lr``

``alpha`` stays the configured step size (the meta-learner does not learn step sizes); the
init file stores it per step and tensor. First order: second derivatives through the inner
loop would need a double backward through SAM's checkpointed ViT. Leave-one-organ-out (the
paper's protocol) is chosen where the tasks are made (``samfewshot meta-train --held-out``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..progress import CancelToken, Progress, no_progress
from .config import MetaTrainingSettings  # noqa: F401 (re-exported)
from .network import SSMSam
from .online import PatchCache, adapt, gradients, pairs_loss
from .tasks import Task, sample_episode

STAGE = "meta-train"


@dataclass
class MetaTrainingResult:
    """The meta-learned starting point and the run's record.

    Attributes:
        state: {name: tensor} theta_0.
        learning_rates: (S, T) float32 alpha (the configured step size: not learned).
        query_losses: per meta-step, the mean query loss after adaptation over its T tasks.
        support_losses: per meta-step, the mean support loss of the first inner sweep.
        seconds: wall time; iterations: N; tasks: task names.
    """

    state: dict[str, torch.Tensor]
    learning_rates: torch.Tensor
    query_losses: list[float] = field(default_factory=list)
    support_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    iterations: int = 0
    tasks: list[str] = field(default_factory=list)


def pick_tasks(tasks: Sequence[Task], count: int, rng: np.random.Generator) -> list[Task]:
    """``count`` tasks of one meta-step: distinct when there are enough, else with repeats."""
    picks = rng.choice(len(tasks), size=count, replace=len(tasks) < count)
    return [tasks[int(i)] for i in picks]


def meta_train(
    network: SSMSam,
    tasks: Sequence[Task],
    settings: MetaTrainingSettings,
    *,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> MetaTrainingResult:
    """Meta-learn theta_0 from ``network``'s current (plain) init over ``tasks`` (Algorithm 2).

    The network's trainable tensors are used as the fast weights and hold theta_0 again at
    the end. Progress: ``(STAGE, meta-step, N)``; cancel is polled before every inner sweep.
    """
    if not tasks:
        raise ValueError("Meta-training needs at least one task")
    start = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    named = network.trainable()
    params = list(named.values())
    config = network.config
    rates = torch.full((config.steps, len(params)), float(config.learning_rate))
    theta0 = [p.detach().clone().requires_grad_(True) for p in params]
    outer = torch.optim.AdamW(theta0, lr=settings.meta_lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        outer, T_max=settings.iterations, eta_min=settings.min_meta_lr
    )
    result = MetaTrainingResult(state={}, learning_rates=rates, tasks=[t.name for t in tasks])
    progress(STAGE, 0, settings.iterations)
    for iteration in range(settings.iterations):
        meta_grads = [torch.zeros_like(p) for p in params]
        query_losses, support_losses = [], []
        for task in pick_tasks(tasks, settings.tasks_per_step, rng):
            episode = sample_episode(network.sam, task, settings.shots, settings.queries, config.max_shift, rng)
            with torch.no_grad():
                for p, p0 in zip(params, theta0):
                    p.copy_(p0)
            cache = PatchCache(network)
            online = adapt(network, episode.support_set, rates, rng=rng, cache=cache, evaluate_final=False,
                           stage=STAGE + ": inner", cancel=cancel)
            support_losses.append(online.losses[0])
            query_loss, _ = pairs_loss(network, episode.queries, cache, rng)
            with torch.no_grad():
                for total, g in zip(meta_grads, gradients(query_loss, params)):
                    total.add_(g, alpha=1.0 / settings.tasks_per_step)
            query_losses.append(float(query_loss.detach()))
        for p0, g in zip(theta0, meta_grads):
            p0.grad = g.to(p0.device)
        outer.step()
        outer.zero_grad(set_to_none=True)
        schedule.step()
        result.query_losses.append(float(np.mean(query_losses)))
        result.support_losses.append(float(np.mean(support_losses)))
        progress(STAGE, iteration + 1, settings.iterations)
    with torch.no_grad():
        for p, p0 in zip(params, theta0):
            p.copy_(p0)
    result.state = {name: p0.detach().cpu().clone() for name, p0 in zip(named, theta0)}
    result.iterations = settings.iterations
    result.seconds = time.perf_counter() - start
    return result
