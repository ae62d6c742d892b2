"""Training an RRL-MedSAM bundle from one labelled atlas and unlabelled images.

Two stages (the paper's dual-stage knowledge distillation):

1. *Distillation* (whenever a teacher checkpoint is given; ``distill_iterations`` >= 1 steps of
   one slice): the general lightweight encoder's neck learns SAM's image embeddings by MSE
   (:mod:`.distillation`) on the working-grid slices the 3D model feeds it, then the medical
   encoder starts as its copy. Without a teacher the encoders start from random weights. The
   bundle records ``distilled`` (whether stage 1 ran), its iterations and the teacher's sha256.
2. *Joint registration-segmentation*, alternating as the paper does: each iteration takes the
   atlas and one unlabelled image (drawn with a seeded generator), augments the pair
   (:mod:`.augmentation`: mirroring, rotation, scaling, elastic; ``augment``) on the working grid
   (the network's input: the cube 2x average-pooled once, at the start), then

   a. *medical step* (medical encoder, registration decoder, auto-prompt decoder; the general
      branch's coarse mask enters as the prompt without gradients), minimising::

          lambda1 * smoothness(flow) + lambda2 * NCC(warped atlas, target)
            + lambda3 * ramp(t) * Dice(warped atlas labels, medical segmentation (detached))
            + seg(medical logits, warped atlas labels (detached))
            [+ seg(medical logits on the atlas image, true atlas labels)]   (atlas_supervision)

   b. mutual EMA (:mod:`.ema`, Eq. 2-3, alpha 0.99);
   c. *general step* (general encoder and segmentation decoder)::

          seg(general logits, the same warped atlas labels (detached))
            [+ seg(general logits on the atlas image, true atlas labels)]

   d. mutual EMA again.

   seg = soft Dice + cross-entropy. *Loss schedule*: ramp(t) = clip(t / dice_warmup - 1, 0, 1)
   for iteration t (counted from 0): the registration's Dice term is off for the first
   ``dice_warmup`` iterations (default 100), then rises linearly to its full weight lambda3 at
   2 x ``dice_warmup`` (200) and stays there; every other term has its full weight from the
   start. The warm-up keeps the registration from following an untrained segmentation
   (measured before the alternating scheme on the abdominal CT with known deformations,
   64^3 cube, 300 iterations, 5 targets: ramped in over the first 100 iterations the learnt
   flow lowered the organ Dice against the zero flow, 0.770 -> 0.746, without it it raised it,
   0.770 -> 0.780). ``alternate=False`` (a deviation, off by default) takes one joint step on
   the sum of both steps' losses followed by one EMA, the layout before issue 17.

All losses are computed on the working grid (size / 2), with denormal numbers flushed to zero
(:func:`flushed_denormals`: late in a run they made each step 1.25x slower). A checkpoint
(model, optimisers, counters, generator states, settings, data digest) is written atomically
to the work folder every ``checkpoint_every`` iterations, at the end, and when cancelled;
``resume=True`` continues that run exactly (same iteration count, optimiser state and random
draws), also to a larger ``iterations``. The bundle is written only when training completes.

Two guards stop a run with :class:`~SAMFewShotLib.errors.TrainingDiverged` before anything is
saved: a loss that is not finite, and a *collapsed registration*: when the NCC loss of the
warped atlas, averaged over the last :data:`COLLAPSE_WINDOW` iterations, exceeds that of no
registration at all (the zero displacement, the same augmented pairs) by more than
:data:`COLLAPSE_MARGIN`. Measured: a 1,000-iteration run at 128^3 on the abdominal CT (learning
rate 1e-3, default schedule) ended with an NCC loss of 0.93 against about 0.45 unregistered and
every output below Dice 0.3, without any loss turning NaN.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ...errors import InputError, TrainingDiverged, require_finite_loss
from ...progress import Cancelled, CancelToken, Progress, no_progress
from ...sam.preprocess import looks_like_ct
from ...volume import LabelVolume, Volume
from ...volume_io import PathLike
from ..normalisation import default_normalisation
from .augmentation import augment_pair
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from .data import TrainingData, prepare_training_data
from .defaults import DEFAULT_ITERATIONS, DEFAULT_SIZE
from .ema import DEFAULT_ALPHA, mutual_ema_
from .losses import dice_loss, ncc_loss, segmentation_loss, smoothness_loss
from .model import RRLConfig, RRLMedSAM
from .network_file import NETWORK_MEMBER, save_network
from .spatial_transformer import warp

logger = logging.getLogger(__name__)

STAGE_DISTILL = "RRL-MedSAM distillation"
STAGE_TRAIN = "RRL-MedSAM training"
CHECKPOINT_VERSION = 2
#: Iterations over which the collapse guard averages (module docstring).
COLLAPSE_WINDOW = 50
#: How much worse than no registration (NCC loss, 0-1) the window's mean may be.
COLLAPSE_MARGIN = 0.05


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of a run (recorded in the bundle's parameters and in checkpoints).

    Attributes:
        lambda_smooth, lambda_ncc, lambda_dice: the paper's lambda1..3 (registration losses).
        dice_warmup: iterations without the registration Dice term; it then ramps up linearly
            over as many iterations (the loss schedule, module docstring).
        learning_rate: Adam learning rate of the joint stage. 5e-4: measured on the abdominal
            CT (128^3, 1,000 iterations, the default schedule), 1e-3 collapsed the registration
            (every output below Dice 0.3) and 2e-3 turned the weights to NaN by iteration 200,
            while 5e-4 trained without either (README, RRL-MedSAM quality on real CT).
        ema_alpha: mutual-EMA coefficient (Eq. 2-3).
        ncc_window: local NCC window (working-grid voxels, odd).
        atlas_supervision: also segment the atlas image against its true labels.
        alternate: the paper's alternating medical / general steps, each followed by the mutual
            EMA (False: one joint step, one EMA; a deviation kept for A/B).
        augment: the paper's augmentation (:mod:`.augmentation`).
        distill_iterations, distill_slices, distill_learning_rate: stage 1 (with a teacher).
        checkpoint_every: iterations between checkpoints.
        seed: seeds the network initialisation and the target / slice draws.
    """

    lambda_smooth: float = 1.0
    lambda_ncc: float = 1.0
    lambda_dice: float = 1.0
    dice_warmup: int = 100
    learning_rate: float = 5e-4
    ema_alpha: float = DEFAULT_ALPHA
    ncc_window: int = 9
    atlas_supervision: bool = True
    alternate: bool = True
    augment: bool = True
    distill_iterations: int = 200
    distill_slices: int = 8
    distill_learning_rate: float = 1e-3
    checkpoint_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, not {self.checkpoint_every}")
        if self.distill_iterations < 0 or self.distill_slices < 1 or self.dice_warmup < 0:
            raise ValueError(
                "distill_iterations and dice_warmup must be >= 0 and distill_slices >= 1, not "
                f"{self.distill_iterations}, {self.dice_warmup}, {self.distill_slices}"
            )


def resolve_device(device: str) -> torch.device:
    """The torch device of ``--device`` (see :func:`SAMFewShotLib.sam.device.torch_device`)."""
    from ...sam.device import torch_device

    return torch_device(device)


@contextlib.contextmanager
def flushed_denormals():
    """Within: CPU float operations flush denormal numbers (magnitude < 1.2e-38) to zero.

    Measured (``benchmarks/bench_rrl_step.py --bundle ... --denormals both``, 128^3 real CT,
    2 threads, idle): with the weights of a 1,000-iteration run a training step takes 2.37 s
    with denormals kept and 1.90 s flushed (random weights: about 1.5 s); kept, the slowdown
    grew through the run (1.6 -> 2.3 s per iteration) and pushed it past 30 minutes (1899 s;
    flushed: 1708 s, identical Dice). Values that small change no result. torch has no getter
    for the mode: on exit it is switched off again (its default).
    """
    supported = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if supported:
            torch.set_flush_denormal(False)


def dice_ramp(iteration: int, warmup: int) -> float:
    """The registration Dice term's weight factor at ``iteration`` (0 for ``warmup`` iterations,
    then linear up to 1 at 2 x ``warmup``)."""
    return min(1.0, max(0.0, iteration / warmup - 1.0)) if warmup else 1.0


def medical_losses(
    model: RRLMedSAM, atlas: torch.Tensor, atlas_onehot: torch.Tensor, target: torch.Tensor,
    settings: TrainSettings, iteration: int, general_grad: bool = False,
) -> dict:
    """The medical step's losses for one pair (module docstring, step a) of working-grid
    ``atlas`` and ``target`` (1, 1, S/2, S/2, S/2) and ``atlas_onehot`` (1, C, S/2, S/2, S/2);
    ``"total"`` is the one to minimise, ``"pseudo"`` the detached warped atlas labels
    (1, C, S/2, S/2, S/2) and ``"output"`` the forward pass. With ``general_grad`` the general
    branch keeps its graph and ``"seg_general"`` is added (the joint, non-alternating step).
    ``"ncc_identity"`` (no gradient) is the NCC loss of the unwarped atlas: the collapse guard's
    reference."""
    out = model.forward_working(atlas, target, segment_moving=settings.atlas_supervision, prompt_grad=general_grad)
    flow, moving = out.flow, out.moving
    assert flow is not None and moving is not None  # a registration pass
    warped = warp(moving, flow)
    warped_labels = warp(atlas_onehot, flow)
    medical_target = torch.softmax(out.medical_logits[:1], dim=1)
    pseudo = warped_labels.detach()
    losses: dict = {
        "smooth": smoothness_loss(flow),
        "ncc": ncc_loss(out.fixed, warped, settings.ncc_window),
        "ncc_identity": ncc_loss(out.fixed.detach(), moving.detach(), settings.ncc_window),
        "dice": dice_loss(warped_labels, medical_target.detach()),
        "seg_medical": segmentation_loss(out.medical_logits[:1], pseudo),
    }
    if settings.atlas_supervision:
        losses["seg_medical"] = losses["seg_medical"] + segmentation_loss(out.medical_logits[1:], atlas_onehot)
    losses["total"] = (
        settings.lambda_smooth * losses["smooth"]
        + settings.lambda_ncc * losses["ncc"]
        + settings.lambda_dice * dice_ramp(iteration, settings.dice_warmup) * losses["dice"]
        + losses["seg_medical"]
    )
    if general_grad:
        losses["seg_general"] = general_loss(out.general_logits, pseudo, atlas_onehot, settings)
        losses["total"] = losses["total"] + losses["seg_general"]
    losses["pseudo"] = pseudo
    losses["output"] = out
    return losses


def general_loss(logits: torch.Tensor, pseudo: torch.Tensor, atlas_onehot: torch.Tensor, settings: TrainSettings):
    """The general step's loss (module docstring, step c): ``logits`` (B', C, ...) of the
    target (then the atlas with ``atlas_supervision``)."""
    loss = segmentation_loss(logits[:1], pseudo)
    if settings.atlas_supervision:
        loss = loss + segmentation_loss(logits[1:], atlas_onehot)
    return loss


class Trainer:
    """The training state of one run: model, optimisers, counters, generator; see the module docstring.

    Args:
        data: the prepared inputs (on any device; moved to ``device``).
        config: the network's configuration.
        settings: hyper-parameters.
        device: torch device.
        teacher: (Sam, sha256) for stage 1, or None.
        cache_dir: where teacher embeddings are cached (None: memory only).
    """

    def __init__(
        self,
        data: TrainingData,
        config: RRLConfig,
        settings: TrainSettings,
        device: torch.device,
        teacher=None,
        cache_dir: Path | None = None,
    ):
        self.settings = settings
        self.config = config
        self.device = device
        self.data = data.to(device)
        self.data_digest = data.digest()
        with torch.random.fork_rng(devices=[]):  # seeded initialisation, the caller's RNG untouched
            torch.manual_seed(settings.seed)
            self.model = RRLMedSAM(config).to(device)
        model = self.model
        # the network sees only the working grid: pool the (constant) inputs once, not every step
        with torch.no_grad():
            self.working_atlas = model.to_working(self.data.atlas)
            self.working_targets = [model.to_working(t) for t in self.data.targets]
        general = [*model.general_encoder.parameters(), *model.general_segmentation.parameters()]
        medical = [
            *model.medical_encoder.parameters(), *model.registration.parameters(),
            *model.medical_segmentation.parameters(),
        ]
        joint = list(model.parameters())
        # foreach: one multi-tensor update instead of a Python loop over ~200 tensors (CPU default)
        adam = lambda params, lr: torch.optim.Adam(params, lr=lr, foreach=True)  # noqa: E731
        self.optimizer = adam(medical if settings.alternate else joint, settings.learning_rate)
        self.general_optimizer = adam(general, settings.learning_rate)
        self.distill_optimizer = adam(self.model.general_encoder.parameters(), settings.distill_learning_rate)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.teacher = teacher
        self.cache_dir = cache_dir
        self.distill_total = settings.distill_iterations if teacher is not None else 0
        self.distill_iteration = 0
        self.iteration = 0
        self.seconds = 0.0
        self.last_losses: dict[str, float] = {}
        self.ncc_excess: deque[float] = deque(maxlen=COLLAPSE_WINDOW)  # the collapse guard's window

    # Checkpoints ---------------------------------------------------------------------------------
    def identity(self) -> dict:
        """What must match for a checkpoint to be resumed: settings, network, data, teacher."""
        return {
            "settings": asdict(self.settings),
            "config": self.config.to_dict(),
            "data": self.data_digest,
            "teacher": self.teacher[1] if self.teacher is not None else None,
        }

    def state(self) -> dict:
        return {
            "version": CHECKPOINT_VERSION,
            "identity": self.identity(),
            "iteration": self.iteration,
            "distill_iteration": self.distill_iteration,
            "seconds": self.seconds,
            "last_losses": dict(self.last_losses),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "general_optimizer": self.general_optimizer.state_dict(),
            "distill_optimizer": self.distill_optimizer.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state(self, state: dict, source: Path) -> None:
        """Continue from a :meth:`state`; ValueError when it belongs to another run."""
        if state.get("version") != CHECKPOINT_VERSION or state.get("identity") != self.identity():
            raise InputError(
                f"{source}: the checkpoint belongs to another run (other inputs, size, teacher or settings); "
                "use another --work-dir or train without --resume"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.general_optimizer.load_state_dict(state["general_optimizer"])
        self.distill_optimizer.load_state_dict(state["distill_optimizer"])
        self.generator.set_state(state["generator"])
        self.iteration = int(state["iteration"])
        self.distill_iteration = int(state["distill_iteration"])
        self.seconds = float(state["seconds"])
        self.last_losses = dict(state["last_losses"])

    # Stages ---------------------------------------------------------------------------------------
    def distill(self, progress: Progress, cancel: CancelToken | None, save) -> None:
        """Stage 1 up to ``distill_total`` steps; then the medical encoder starts as a copy."""
        if self.distill_iteration >= self.distill_total:
            return
        from ...sam.embedding_cache import EmbeddingCache
        from .distillation import distillation_loss, prepare_distillation, working_volume

        sam, digest = self.teacher
        cache = EmbeddingCache(self.cache_dir) if self.cache_dir is not None else EmbeddingCache.memory_only()
        volumes = [working_volume(cube) for cube in self.data.cubes]  # the slices the 3D model encodes
        dataset = prepare_distillation(
            sam, digest, volumes, self.settings.distill_slices, cache, progress=progress, cancel=cancel
        )
        encoder = self.model.general_encoder
        encoder.train()
        while self.distill_iteration < self.distill_total:
            if cancel is not None:
                cancel.raise_if_cancelled()
            index = int(torch.randint(len(dataset), (1,), generator=self.generator))
            loss = distillation_loss(encoder, dataset, [index])
            self.distill_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.distill_optimizer.step()
            self.distill_iteration += 1
            self.last_losses = {"distill_mse": float(loss.detach())}
            if self.distill_iteration == self.distill_total:
                self.model.medical_encoder.load_state_dict(encoder.state_dict())
            progress(STAGE_DISTILL, self.distill_iteration, self.distill_total)
            if self.distill_iteration % self.settings.checkpoint_every == 0:
                save()

    def step(self) -> dict[str, float]:
        """One joint iteration (module docstring, steps a-d); returns its losses."""
        settings, model, data = self.settings, self.model, self.data
        index = int(torch.randint(len(data.targets), (1,), generator=self.generator))
        atlas, onehot, target = self.working_atlas, data.atlas_onehot, self.working_targets[index]
        if settings.augment:
            atlas, onehot, target = augment_pair(atlas, onehot, target, self.generator)
            atlas, target = (t.contiguous(memory_format=torch.channels_last_3d) for t in (atlas, target))
        ema = lambda: mutual_ema_(model.general_encoder, model.medical_encoder, settings.ema_alpha)  # noqa: E731
        losses = medical_losses(model, atlas, onehot, target, settings, self.iteration, not settings.alternate)
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        self.optimizer.step()
        ema()
        if settings.alternate:
            out = losses["output"]
            images = torch.cat([out.fixed, out.moving]) if settings.atlas_supervision else out.fixed
            general = general_loss(model.general_logits(images), losses["pseudo"], onehot, settings)
            self.general_optimizer.zero_grad(set_to_none=True)
            general.backward()
            self.general_optimizer.step()
            ema()
            losses["seg_general"] = general
            losses["total"] = losses["total"] + general
        return {k: float(v.detach()) for k, v in losses.items() if k not in ("pseudo", "output")}

    def check_registration(self) -> None:
        """TrainingDiverged when the registration has collapsed (module docstring) by the last step."""
        losses = self.last_losses
        self.ncc_excess.append(losses["ncc"] - losses["ncc_identity"])
        excess = sum(self.ncc_excess) / len(self.ncc_excess)
        if len(self.ncc_excess) == COLLAPSE_WINDOW and excess > COLLAPSE_MARGIN:
            raise TrainingDiverged(
                f"RRL-MedSAM training collapsed at iteration {self.iteration + 1}: over the last {COLLAPSE_WINDOW} "
                f"iterations the registration matched the images worse than no registration (NCC loss "
                f"{excess:+.3f} against the unwarped atlas); no bundle was written; train again with a lower "
                "learning rate or fewer iterations"
            )

    def train(self, iterations: int, progress: Progress, cancel: CancelToken | None, save) -> None:
        """The joint stage up to ``iterations`` (counted over the whole run)."""
        self.model.train()
        progress(STAGE_TRAIN, min(self.iteration, iterations), iterations)
        while self.iteration < iterations:
            if cancel is not None:
                cancel.raise_if_cancelled()
            start = time.perf_counter()
            self.last_losses = self.step()
            require_finite_loss(self.last_losses["total"], self.iteration + 1, "RRL-MedSAM training")
            self.check_registration()
            self.iteration += 1
            self.seconds += time.perf_counter() - start
            progress(STAGE_TRAIN, self.iteration, iterations)
            if self.iteration % self.settings.checkpoint_every == 0:
                save()


def _teacher(checkpoint: str | None, device: torch.device, progress: Progress, cancel: CancelToken | None):
    """(Sam on ``device`` in eval mode, its sha256) or None."""
    if checkpoint is None:
        return None
    from ...sam.model_loading import load_sam

    sam, loaded = load_sam(checkpoint, progress=progress, cancel=cancel)
    return sam.to(device).eval(), loaded.sha256


def train_rrl_bundle(
    atlas_image: Volume,
    atlas_labels: LabelVolume,
    unlabeled: Sequence[Volume],
    output: PathLike,
    *,
    name: str | None = None,
    size: int = DEFAULT_SIZE,
    iterations: int = DEFAULT_ITERATIONS,
    teacher_checkpoint: str | None = None,
    resume: bool = False,
    work_dir: PathLike | None = None,
    device: str = "auto",
    settings: TrainSettings | None = None,
    config: RRLConfig | None = None,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> Path:
    """Train RRL-MedSAM on one atlas and unlabelled images; write an ``rrl_medsam`` bundle.

    Args:
        atlas_image, atlas_labels: the labelled atlas (one grid); every label value present is a class.
        unlabeled: images of the same modality and body region (any grids).
        output: the bundle (``.zip`` or folder), written atomically at the end.
        name: bundle name (default: the output's name without extensions).
        size: cube edge the volumes are resampled to (multiple of 32; the paper uses 128).
        iterations: joint-stage iterations (over the whole run when resuming).
        teacher_checkpoint: SAM checkpoint path or registry name for stage 1 (None: no stage 1).
        resume: continue from the work folder's checkpoint (ValueError when absent or of another run).
        work_dir: folder for checkpoints and cached teacher embeddings (default ``<output>.work``).
        device: "auto", "cpu" or "cuda".
        settings: hyper-parameters (default :class:`TrainSettings`()).
        config: network layout; ``size``, ``n_classes`` and ``embed_dim`` are set from the data
            and the teacher.
        progress: called with (stage, done, total) for reading the teacher, encoding its slices,
            distillation and training iterations.
        cancel: polled between iterations; on cancel a checkpoint is written and ``Cancelled`` raised.

    Returns:
        The bundle's path. Its parameters hold the network configuration, the class -> label
        value table, the settings, iterations, seconds per iteration and the last losses.
    """
    from ..bundle import check_bundle_output, write_bundle

    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise InputError(f"iterations must be a positive integer, not {iterations!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 32 or size % 32:
        raise InputError(f"size must be a multiple of 32 (32, 64, 96, 128, ...), not {size!r}")
    settings = settings or TrainSettings()
    if teacher_checkpoint is not None and settings.distill_iterations < 1:
        raise InputError(
            f"distill_iterations must be >= 1 when a teacher is given (stage 1 always runs with one), "
            f"not {settings.distill_iterations}"
        )
    if settings.augment:
        try:
            import torchio  # noqa: F401
        except ImportError:
            raise InputError(
                "RRL-MedSAM's augmentation needs TorchIO: pip install 'samfewshot[rrl]' "
                "(or train with TrainSettings(augment=False))"
            ) from None
    output = Path(output).expanduser()
    check_bundle_output(output)  # before hours of training, not only when the bundle is written
    work = Path(work_dir).expanduser() if work_dir is not None else output.with_name(output.name + ".work")
    checkpoint_path = work / CHECKPOINT_NAME
    if resume and not checkpoint_path.is_file():
        raise InputError(f"{checkpoint_path}: no checkpoint to resume from (train without --resume first)")
    torch_device = resolve_device(device)
    modality = "CT" if looks_like_ct(atlas_image) else "MR"
    normalisation = default_normalisation(modality)
    data = prepare_training_data(atlas_image, atlas_labels, unlabeled, size, normalisation)
    teacher = _teacher(teacher_checkpoint, torch_device, progress, cancel)
    embed_dim = int(teacher[0].prompt_encoder.embed_dim) if teacher is not None else (config or RRLConfig()).embed_dim
    config = replace(config or RRLConfig(), size=size, n_classes=len(data.label_values) + 1, embed_dim=embed_dim)
    work.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(data, config, settings, torch_device, teacher, work / "embeddings")
    if resume:
        trainer.load_state(load_checkpoint(checkpoint_path), checkpoint_path)
        logger.info("Resuming at iteration %d (distillation %d)", trainer.iteration, trainer.distill_iteration)

    def save() -> None:
        save_checkpoint(checkpoint_path, trainer.state())

    try:
        with flushed_denormals():
            trainer.distill(progress, cancel, save)
            trainer.train(iterations, progress, cancel, save)
    except Cancelled:
        save()
        raise
    save()
    network = work / NETWORK_MEMBER
    save_network(network, trainer.model, data.label_values)
    parameters = {
        "network": config.to_dict(),
        "label_values": data.label_values,
        "iterations": trainer.iteration,
        "distill_iterations": trainer.distill_iteration,
        "distilled": trainer.distill_iteration > 0,
        "teacher_sha256": teacher[1] if teacher is not None else None,
        "seconds_per_iteration": trainer.seconds / max(trainer.iteration, 1),
        "device": torch_device.type,
        "settings": asdict(settings),
        "last_losses": trainer.last_losses,
    }
    bundle_name = name or output.name.split(".")[0] or "rrl_medsam"
    return write_bundle(
        output, name=bundle_name, atlases=[(atlas_image, atlas_labels)], modality=modality,
        normalisation=normalisation, engine="rrl_medsam", parameters=parameters, weights={NETWORK_MEMBER: network},
    )
