"""Semi-supervised methods for the 3D re-training, behind one small interface.

A method sees the student network and a batch of unlabelled patches each iteration and returns
its unsupervised loss; it is told after every optimiser step and names the network used for
inference. :class:`SupervisedOnly` adds nothing; :class:`MeanTeacher` (Tarvainen & Valpola,
NeurIPS 2017) keeps an exponential moving average of the student as teacher and penalises the
squared difference of their softmax outputs under independent input noise, weighted by a
sigmoid ramp-up ``w(t) = weight * exp(-5 (1 - t / rampup)^2)`` (Laine & Aila 2017), as the SFR
paper's re-training stage uses it. Others (UA-MT, ...) implement the same four methods.
"""

from __future__ import annotations

import copy
import math
from typing import Protocol

import torch
from torch import nn

METHODS = ("supervised", "mean_teacher")


def sigmoid_rampup(iteration: int, length: int) -> float:
    """exp(-5 (1 - t)^2) with t = clip(iteration / length, 0, 1); 1 when length is 0."""
    if length <= 0:
        return 1.0
    t = min(max(iteration / float(length), 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


class SemiSupervisedMethod(Protocol):
    name: str
    uses_unlabelled: bool

    def unsupervised_loss(self, student: nn.Module, images: torch.Tensor, iteration: int,
                          generator: torch.Generator) -> torch.Tensor: ...

    def after_step(self, student: nn.Module, iteration: int) -> None: ...

    def inference_network(self, student: nn.Module) -> nn.Module: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class SupervisedOnly:
    """No unsupervised term: the labelled (and pseudo-labelled) patches only."""

    name = "supervised"
    uses_unlabelled = False

    def unsupervised_loss(self, student, images, iteration, generator) -> torch.Tensor:
        return torch.zeros((), device=images.device)

    def after_step(self, student, iteration) -> None:
        pass

    def inference_network(self, student):
        return student

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class MeanTeacher:
    """Mean Teacher.

    Args:
        student: the network being trained (the teacher starts as its copy).
        alpha: EMA decay; the effective decay is ``min(1 - 1 / (step + 1), alpha)`` (the paper's
            warm start).
        weight: maximum consistency weight.
        rampup: iterations of the sigmoid ramp-up.
        noise: standard deviation of the Gaussian input noise (normalised intensities).
    """

    name = "mean_teacher"
    uses_unlabelled = True

    def __init__(self, student: nn.Module, alpha: float = 0.99, weight: float = 1.0, rampup: int = 200,
                 noise: float = 0.1) -> None:
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"The EMA decay must be in [0, 1), not {alpha}")
        self.alpha, self.weight, self.rampup, self.noise = float(alpha), float(weight), int(rampup), float(noise)
        self.teacher = copy.deepcopy(student)
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)

    def unsupervised_loss(self, student, images, iteration, generator) -> torch.Tensor:
        def noisy() -> torch.Tensor:
            noise = torch.randn(images.shape, generator=generator).to(images.device)
            return images + self.noise * noise

        student_probability = torch.softmax(student(noisy()), dim=1)
        self.teacher.train(student.training)
        with torch.no_grad():
            teacher_probability = torch.softmax(self.teacher(noisy()), dim=1)
        consistency = torch.mean((student_probability - teacher_probability) ** 2)
        return self.weight * sigmoid_rampup(iteration, self.rampup) * consistency

    @torch.no_grad()
    def after_step(self, student, iteration) -> None:
        alpha = min(1.0 - 1.0 / (iteration + 1.0), self.alpha)
        for t, s in zip(self.teacher.state_dict().values(), student.state_dict().values()):
            if torch.is_floating_point(t):
                t.mul_(alpha).add_(s, alpha=1.0 - alpha)
            else:
                t.copy_(s)

    def inference_network(self, student):
        return self.teacher

    def state_dict(self) -> dict:
        return {"teacher": self.teacher.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.teacher.load_state_dict(state["teacher"])


def make_method(name: str, student: nn.Module, **options) -> SemiSupervisedMethod:
    """The method ``name`` (:data:`METHODS`) for ``student``; options go to its constructor."""
    if name == "supervised":
        return SupervisedOnly()
    if name == "mean_teacher":
        return MeanTeacher(student, **options)
    raise ValueError(f"The semi-supervised method must be one of {', '.join(METHODS)}, not {name!r}")
