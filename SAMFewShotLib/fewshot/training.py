"""Training the few-shot decoder on cached image embeddings.

Joint pass (``TrainingConfig(joint=True)``, Xie et al.'s multi-label decoding): an example is one slice with the
targets of every label (:class:`JointExample`), decoded by one pass holding all labels' tokens;
the loss is summed over the (slice, label) pairs whose target is known (drawn or declared empty)
and divided by their number. Per-label pass (``TrainingConfig(joint=False)``): an example is one
slice of one label (:class:`Example`), the default (see ``TrainingConfig.joint``).

One iteration is one Adam step (lr 1e-4, betas 0.9/0.99, as Xie et al.) on the mean loss of
every training example (all shots of all labels in one batch). The loss of an example is the
two-channel cross-entropy (= binary cross-entropy of fg - bg) plus the soft Dice loss of the
fg probability, over the output pixels that cover the image (the padding is left out).

Iterations scale with the number of shots k (drawn slices of the label with most): 50, 80, 100
at k = 5, 20, 50 (the paper's schedule), linear in between, 50 below 5 and 100 above 50.

Light augmentation, drawn afresh each iteration: a random shift of the embedding grid by one
cell (16 input pixels; the target moves with it) with probability ``shift_probability``, and
Gaussian noise of ``noise`` times the standard deviation on image embeddings and prompt tokens.

Early stopping (leave-one-slice-out): the validation examples (one held-out drawn slice per
label, predicted from the other slices' target embeddings) are scored before training and every
``eval_every`` iterations; training stops after ``patience`` scores without improvement of the
validation loss, and the decoder state with the best validation loss is kept. Without
validation examples every planned iteration runs and the last state is kept.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import InputError
from ..progress import CancelToken, Progress, no_progress
from ..sam.encoder import _autocast, torch_threads
from .decoder import FewShotMaskDecoder

#: Progress stage of training.
STAGE = "fewshot: train"
#: Training precisions: name -> autocast dtype of the forward pass.
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
#: (shots, iterations) points of the schedule (Xie et al.: 5, 20, 50 shots).
SCHEDULE = ((5, 50), (20, 80), (50, 100))


def default_iterations(shots: int) -> int:
    """Planned iterations for ``shots`` drawn slices (see the module doc)."""
    if shots < 1:
        raise ValueError(f"shots must be >= 1, not {shots}")
    x, y = zip(*SCHEDULE)
    return int(round(float(np.interp(shots, x, y))))


@dataclass(frozen=True)
class TrainingConfig:
    """How the decoder is trained.

    Attributes:
        iterations: Adam steps at most; None: :func:`default_iterations` of the shot count.
        learning_rate: Adam learning rate.
        betas: Adam (beta1, beta2).
        eval_every: iterations between two validation scores.
        patience: validation scores without improvement before stopping.
        shift_probability: chance of a one-cell random shift of an example per iteration.
        noise: Gaussian noise on embeddings and tokens, in units of their standard deviation.
        seed: seed of the augmentation's random numbers.
        num_threads: torch CPU threads while training (None: torch's current setting).
        precision: "fp32", or "bf16" to run the decoder's forward pass under bfloat16 autocast
            (weights, loss and Adam stay float32); opt-in, see benchmarks/bench_fewshot_cost.py.
        joint: True: all labels in one decoder pass (Xie et al.); False (default): one pass per
            label, which separated two touching same-intensity structures better on the tiny
            random SAM (mean Dice 0.94 vs 0.33 after 60 iterations; benchmarks/bench_fewshot_joint.py).
    """

    iterations: int | None = None
    learning_rate: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    eval_every: int = 5
    patience: int = 4
    shift_probability: float = 0.5
    noise: float = 0.05
    seed: int = 0
    num_threads: int | None = None
    precision: str = "fp32"
    joint: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.iterations is not None and self.iterations < 0:
            raise InputError(f"iterations must be >= 0, not {self.iterations}")
        if not self.learning_rate > 0:
            raise InputError(f"learning_rate must be > 0, not {self.learning_rate}")
        if self.eval_every < 1 or self.patience < 1:
            raise InputError(f"eval_every and patience must be >= 1, not {self.eval_every} and {self.patience}")
        if not 0.0 <= self.shift_probability <= 1.0:
            raise InputError(f"shift_probability must be in [0, 1], not {self.shift_probability}")
        if self.noise < 0:
            raise InputError(f"noise must be >= 0, not {self.noise}")


@dataclass(frozen=True, eq=False)
class Example:
    """One slice of one label, as the decoder sees it.

    Attributes:
        label_index: the label's index in the decoder (0..n_labels-1).
        slice_index: the slice (along the annotated axis), for reports.
        embedding: (C, h, w) float32 SAM image embedding.
        target: (4h, 4w) float32 in [0, 1], the part of each low-resolution pixel inside the mask.
        valid: (4h, 4w) bool, the low-resolution pixels that cover the image.
        tokens: (N, C) float32 prompt tokens (target embeddings of other slices of the label).
    """

    label_index: int
    slice_index: int
    embedding: torch.Tensor
    target: torch.Tensor
    valid: torch.Tensor
    tokens: torch.Tensor


@dataclass(frozen=True, eq=False)
class JointExample:
    """One slice with every label, as the joint decoder pass sees it.

    Attributes:
        slice_index: the slice (along the annotated axis), for reports.
        embedding: (C, h, w) float32 SAM image embedding.
        targets: (L, 4h, 4w) float32 in [0, 1] per label index (zeros where not supervised).
        valid: (4h, 4w) bool, the low-resolution pixels that cover the image.
        tokens: per label index, (N_l, C) float32 prompt tokens.
        supervised: (L,) bool, the labels whose target is known on this slice.
    """

    slice_index: int
    embedding: torch.Tensor
    targets: torch.Tensor
    valid: torch.Tensor
    tokens: tuple
    supervised: torch.Tensor


@dataclass
class TrainingResult:
    """What training did.

    Attributes:
        iterations: Adam steps run.
        planned_iterations: steps planned (the schedule or the config).
        best_iteration: steps of the decoder state kept.
        seconds: wall time of training (validation included).
        losses: training loss of each step.
        validation: (step, validation loss, validation Dice) of each score.
        stopped_early: whether early stopping ended training before the plan.
    """

    iterations: int = 0
    planned_iterations: int = 0
    best_iteration: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    validation: list[tuple[int, float, float]] = field(default_factory=list)
    stopped_early: bool = False

    def summary(self) -> dict:
        """JSON-ready summary (the head file and the reports keep it)."""
        return {
            "iterations": self.iterations,
            "planned_iterations": self.planned_iterations,
            "best_iteration": self.best_iteration,
            "seconds": round(self.seconds, 3),
            "seconds_per_iteration": round(self.seconds / self.iterations, 4) if self.iterations else None,
            "first_loss": self.losses[0] if self.losses else None,
            "last_loss": self.losses[-1] if self.losses else None,
            "validation": [list(v) for v in self.validation],
            "stopped_early": self.stopped_early,
        }


def example_losses(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example loss and hard Dice.

    Args:
        logits: (B, 2, H, W) fg/bg logits; target: (B, H, W) float in [0, 1]; valid: (B, H, W) bool.

    Returns:
        ((B,) cross-entropy + soft Dice loss, (B,) Dice of fg - bg > 0 against target > 0.5,
        1 when both are empty).
    """
    difference = logits[:, 0] - logits[:, 1]
    weight = valid.float()
    count = weight.sum(dim=(1, 2)).clamp_min(1.0)
    bce = F.binary_cross_entropy_with_logits(difference, target, reduction="none")
    cross_entropy = (bce * weight).sum(dim=(1, 2)) / count
    probability = torch.sigmoid(difference) * weight
    truth = target * weight
    overlap = (probability * truth).sum(dim=(1, 2))
    soft_dice = (2 * overlap + 1.0) / (probability.sum(dim=(1, 2)) + truth.sum(dim=(1, 2)) + 1.0)
    predicted, reference = (difference > 0) & valid, (target > 0.5) & valid
    both = (predicted & reference).sum(dim=(1, 2)).float()
    sizes = (predicted.sum(dim=(1, 2)) + reference.sum(dim=(1, 2))).float()
    dice = torch.where(sizes > 0, 2 * both / sizes.clamp_min(1.0), torch.ones_like(sizes))
    return cross_entropy + (1.0 - soft_dice), dice


def _groups(examples: Sequence) -> list[list]:
    """Examples that can share a decoder call: same label and the same number of tokens (per
    label), or for joint examples the same number of tokens of every label."""
    groups: dict[tuple, list] = {}
    for example in examples:
        if isinstance(example, JointExample):
            key = tuple(int(t.shape[0]) for t in example.tokens)
        else:
            key = (example.label_index, int(example.tokens.shape[0]))
        groups.setdefault(key, []).append(example)
    return list(groups.values())


def _random_shift(
    embedding: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    target_dims: tuple[int, int],
    config: TrainingConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """With probability ``config.shift_probability``, roll the embedding (C, h, w) by one cell in
    y and x (-1, 0 or +1 each) and the target (rows/cols on ``target_dims``) and valid mask
    (4h, 4w) by the same shift in their own pixels; otherwise return them unchanged."""
    if float(torch.rand((), generator=generator)) < config.shift_probability:
        dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=generator))
        scale = target.shape[-1] // embedding.shape[-1]
        embedding = torch.roll(embedding, (dy, dx), dims=(1, 2))
        target = torch.roll(target, (dy * scale, dx * scale), dims=target_dims)
        valid = torch.roll(valid, (dy * scale, dx * scale), dims=(0, 1))
    return embedding, target, valid


def _joint_augmented(group: list[JointExample], config: TrainingConfig, generator: torch.Generator):
    """(embeddings (B, C, h, w), tokens per label (B, N_l, C), targets (B, L, 4h, 4w), valid
    (B, 4h, 4w)): :func:`_augmented` for joint examples (one shift per slice, all labels)."""
    shifted, targets, valids = [], [], []
    for example in group:
        embedding, target, valid = _random_shift(
            example.embedding, example.targets, example.valid, (1, 2), config, generator
        )
        shifted.append(embedding)
        targets.append(target)
        valids.append(valid)
    embeddings = torch.stack(shifted)
    tokens = [torch.stack([e.tokens[i] for e in group]) for i in range(len(group[0].tokens))]
    if config.noise > 0:
        embeddings = embeddings + config.noise * embeddings.std() * torch.randn(embeddings.shape, generator=generator)
        tokens = [t + config.noise * t.std() * torch.randn(t.shape, generator=generator) for t in tokens]
    return embeddings, tokens, torch.stack(targets), torch.stack(valids)


def _joint_losses(decoder, embeddings, tokens, targets, valid, supervised, precision: str = "fp32"):
    """(losses, dices) of the supervised (slice, label) pairs of one joint decoder call."""
    with _autocast(embeddings.device.type, PRECISIONS[precision]):
        logits = decoder.forward_joint(embeddings, tokens)
    b, n_labels = logits.shape[:2]
    flat_valid = valid.unsqueeze(1).expand(-1, n_labels, -1, -1).reshape(b * n_labels, *valid.shape[1:])
    losses, dices = example_losses(
        logits.float().reshape(b * n_labels, *logits.shape[2:]), targets.reshape(b * n_labels, *targets.shape[2:]),
        flat_valid,
    )
    keep = supervised.reshape(-1)
    return losses[keep], dices[keep]


def _augmented(group: list[Example], config: TrainingConfig, generator: torch.Generator):
    """(embeddings (B, C, h, w), tokens (B, N, C), targets (B, 4h, 4w), valid (B, 4h, 4w)), each
    example shifted by one embedding cell with probability ``shift_probability`` and noised."""
    shifted, prompts, targets, valids = [], [], [], []
    for example in group:
        embedding, target, valid = _random_shift(
            example.embedding, example.target, example.valid, (0, 1), config, generator
        )
        shifted.append(embedding)
        prompts.append(example.tokens)
        targets.append(target)
        valids.append(valid)
    embeddings, tokens = torch.stack(shifted), torch.stack(prompts)
    if config.noise > 0:
        embeddings = embeddings + config.noise * embeddings.std() * torch.randn(embeddings.shape, generator=generator)
        tokens = tokens + config.noise * tokens.std() * torch.randn(tokens.shape, generator=generator)
    return embeddings, tokens, torch.stack(targets), torch.stack(valids)


def _batch_loss(decoder: FewShotMaskDecoder, examples: Sequence, config, generator) -> torch.Tensor:
    """Mean training loss over ``examples`` (augmented), with the autograd graph."""
    device = decoder.output_tokens.device
    total = torch.zeros((), device=device)
    if isinstance(examples[0], JointExample):
        pairs = 0
        for group in _groups(examples):
            embeddings, tokens, targets, valid = _joint_augmented(group, config, generator)
            supervised = torch.stack([e.supervised for e in group]).to(device)
            losses, _ = _joint_losses(decoder, embeddings.to(device), [t.to(device) for t in tokens],
                                      targets.to(device), valid.to(device), supervised, config.precision)
            total = total + losses.sum()
            pairs += int(supervised.sum())
        return total / max(pairs, 1)
    for group in _groups(examples):
        embeddings, tokens, targets, valid = (t.to(device) for t in _augmented(group, config, generator))
        with _autocast(device.type, PRECISIONS[config.precision]):
            logits = decoder(embeddings, tokens, group[0].label_index)
        losses, _ = example_losses(logits.float(), targets, valid)
        total = total + losses.sum()
    return total / len(examples)


def evaluate(decoder: FewShotMaskDecoder, examples: Sequence[Example] | Sequence[JointExample]) -> tuple[float, float]:
    """(mean loss, mean hard Dice) of ``examples`` without augmentation or gradients."""
    device = decoder.output_tokens.device
    losses, dices = [], []
    with torch.no_grad():
        for group in _groups(examples):
            if isinstance(group[0], JointExample):
                loss, dice = _joint_losses(
                    decoder, torch.stack([e.embedding for e in group]).to(device),
                    [torch.stack([e.tokens[i] for e in group]).to(device) for i in range(len(group[0].tokens))],
                    torch.stack([e.targets for e in group]).to(device),
                    torch.stack([e.valid for e in group]).to(device),
                    torch.stack([e.supervised for e in group]).to(device),
                )
                losses.append(loss)
                dices.append(dice)
                continue
            embeddings = torch.stack([e.embedding for e in group]).to(device)
            tokens = torch.stack([e.tokens for e in group]).to(device)
            targets = torch.stack([e.target for e in group]).to(device)
            valid = torch.stack([e.valid for e in group]).to(device)
            loss, dice = example_losses(decoder(embeddings, tokens, group[0].label_index), targets, valid)
            losses.append(loss)
            dices.append(dice)
    return float(torch.cat(losses).mean()), float(torch.cat(dices).mean())


def train_decoder(
    decoder: FewShotMaskDecoder,
    examples: Sequence[Example] | Sequence[JointExample],
    validation: Sequence[Example] | Sequence[JointExample] = (),
    config: TrainingConfig | None = None,
    *,
    shots: int = 1,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> TrainingResult:
    """Train ``decoder`` in place on ``examples``; early stopping on ``validation``.

    Args:
        decoder: the decoder to train (its device is used); it is left in eval mode holding
            the kept state (the best-validation one, or the last without validation).
        examples: training examples (at least one), all :class:`Example` (per-label pass) or
            all :class:`JointExample` (joint pass).
        validation: held-out examples for early stopping (may be empty).
        config: the settings; None: :class:`TrainingConfig` defaults.
        shots: number of drawn slices, for the default iteration schedule.
        progress: called ``(STAGE, step, planned steps)``.
        cancel: polled before every step.
    """
    if not examples:
        raise ValueError("Training needs at least one example")
    config = config or TrainingConfig()
    planned = config.iterations if config.iterations is not None else default_iterations(shots)
    result = TrainingResult(planned_iterations=planned)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=config.learning_rate, betas=config.betas)
    best_loss, best_state, since_best = float("inf"), None, 0

    def score(step: int) -> bool:
        """Score the validation examples; True when training should stop."""
        nonlocal best_loss, best_state, since_best
        decoder.eval()
        loss, dice = evaluate(decoder, validation)
        decoder.train()
        result.validation.append((step, round(loss, 5), round(dice, 4)))
        if loss < best_loss - 1e-4:
            best_loss, best_state, since_best = loss, copy.deepcopy(decoder.state_dict()), 0
            result.best_iteration = step
            return False
        since_best += 1
        return since_best >= config.patience

    progress(STAGE, 0, planned)
    with torch_threads(config.num_threads):
        decoder.train()
        if validation:
            score(0)
        for step in range(1, planned + 1):
            if cancel is not None:
                cancel.raise_if_cancelled()
            optimizer.zero_grad(set_to_none=True)
            loss = _batch_loss(decoder, examples, config, generator)
            loss.backward()
            optimizer.step()
            result.losses.append(round(loss.detach().item(), 5))
            result.iterations = step
            progress(STAGE, step, planned)
            if validation and (step % config.eval_every == 0 or step == planned) and score(step):
                result.stopped_early = step < planned
                break
        progress(STAGE, planned, planned)
        if best_state is not None:
            decoder.load_state_dict(best_state)
        elif not validation:
            result.best_iteration = result.iterations
    decoder.eval()
    result.seconds = time.perf_counter() - start
    return result
