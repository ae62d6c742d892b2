"""3D re-training (SFR's third stage): a MONAI network trained on the labelled volume, the
(selected) pseudo-labelled volumes and, through a semi-supervised method (:mod:`.semi_supervised`,
Mean Teacher by default), the unlabelled images.

Every iteration is one Adam step on

    L = DiceCE(student(labelled patch), labels)
      + DiceCE_w(student(pseudo-labelled patch), pseudo-labels)   [or a second labelled patch]
      + method.unsupervised_loss(student, unlabelled patch)

DiceCE is MONAI's soft Dice (``monai.losses.DiceLoss``, softmax probabilities and one-hot targets
both multiplied by the voxel weight) plus voxel-weighted cross-entropy; weights are 1 except
where SFR+ dropped unconfident pseudo-label voxels, and 0 on padding. Patches are drawn and
augmented by :mod:`.augmentation` from ``numpy.random.RandomState(seed + iteration)``.

A checkpoint (student, method state, optimiser, iteration, seconds, run identity) is written
atomically to the work folder every ``checkpoint_every`` iterations, at the end and when
cancelled; ``resume`` continues that run exactly (the patches are a function of the seed and the
iteration), also to a larger iteration count.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..atlas.normalisation import normalise
from ..errors import InputError, require_finite_loss
from ..progress import Cancelled, CancelToken, Progress, no_progress
from ..torch_files import read_torch_file, save_torch_file
from ..volume import LabelVolume, Volume
from . import CHECKPOINT_NAME
from .augmentation import augment, random_crop
from .network import NetworkConfig, build_network
from .resampling import onto_grid, to_spacing
from .semi_supervised import METHODS, make_method

STAGE = "sfr: re-training"
CHECKPOINT_VERSION = 2
LR_SCHEDULES = ("constant", "poly")


@dataclass(frozen=True)
class RetrainSettings:
    """Hyper-parameters of the re-training (recorded in bundles and checkpoints).

    Attributes:
        iterations: Adam steps.
        patch: patch edge in working-grid voxels (a multiple of the network's divisor).
        learning_rate: Adam learning rate.
        method: semi-supervised method (:data:`~.semi_supervised.METHODS`).
        ema_alpha, consistency_weight, consistency_rampup, consistency_noise: Mean Teacher.
        augment: MONAI augmentation of the supervised patches.
        elastic: MONAI random elastic deformation (``Rand3DElasticd``) of the supervised patches
            besides the affine.
        balanced_sampling: class-balanced patch centres (MONAI ``RandCropByLabelClassesd``)
            instead of half foreground-centred (:func:`~.augmentation.random_crop`).
        lr_schedule: "constant" or "poly" (``lr * (1 - t / iterations) ** 0.9``, as the
            semi-supervised segmentation codes the SFR paper builds on; a resume to more
            iterations stretches it).
        agreement_select: SFR+ by teacher agreement: at ``agreement_at * iterations`` the
            teacher segments each pseudo-labelled volume; the ``agreement_select`` fraction of the
            volumes whose pseudo-labels agree best with it (mean Dice over the classes) stay, and
            inside them the voxels where teacher and pseudo-label disagree are ignored from then on.
            None: no selection during training.
        agreement_at: when that selection happens, as a fraction of ``iterations``.
        checkpoint_every: iterations between checkpoints.
        seed: network initialisation and patch draws.
    """

    iterations: int = 300
    patch: int = 48
    learning_rate: float = 3e-3
    method: str = "mean_teacher"
    ema_alpha: float = 0.99
    consistency_weight: float = 1.0
    consistency_rampup: int = 100
    consistency_noise: float = 0.1
    augment: bool = True
    elastic: bool = False
    balanced_sampling: bool = False
    lr_schedule: str = "constant"
    agreement_select: float | None = None
    agreement_at: float = 0.5
    checkpoint_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("iterations", "patch", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, not {value!r}")
        if self.method not in METHODS:
            raise InputError(f"The semi-supervised method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if not self.learning_rate > 0:
            raise InputError(f"The learning rate must be positive, not {self.learning_rate!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"The learning-rate schedule must be one of {', '.join(LR_SCHEDULES)}, "
                             f"not {self.lr_schedule!r}")
        if self.agreement_select is not None and not 0.0 < self.agreement_select <= 1.0:
            raise InputError(f"The kept fraction must be in (0, 1], not {self.agreement_select!r}")
        if not 0.0 < self.agreement_at < 1.0:
            raise InputError(f"agreement_at must be in (0, 1), not {self.agreement_at!r}")


@dataclass
class TrainingVolume:
    """One volume on the working grid.

    Attributes:
        image: (1, z, y, x) float32 normalised intensities.
        target: (z, y, x) int64 class indices (0 background, i + 1 for label_values[i]).
        weight: (z, y, x) float32 voxel weights of the target.
    """

    image: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor

    def digest(self) -> str:
        h = hashlib.sha256()
        for tensor in (self.image, self.target, self.weight):
            h.update(str(tuple(tensor.shape)).encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()


def class_indices(labels: np.ndarray, label_values: Sequence[int]) -> np.ndarray:
    """(z, y, x) int64 class index per voxel: i + 1 where labels == label_values[i], else 0."""
    out = np.zeros(labels.shape, dtype=np.int64)
    for i, value in enumerate(label_values):
        out[labels == value] = i + 1
    return out


def prepare_volume(
    image: Volume, labels: LabelVolume | None, weight: np.ndarray | None, *, spacing: Sequence[float],
    normalisation: dict, label_values: Sequence[int],
) -> TrainingVolume:
    """``image`` (and its labels and voxel weights, on its grid) resampled to ``spacing`` (x, y, z mm),
    normalised; without labels the target is all background with weight 0."""
    working = to_spacing(image, spacing)
    array = normalise(working.array, normalisation)
    if labels is None:
        target = np.zeros(working.shape, dtype=np.int64)
        weights = np.zeros(working.shape, dtype=np.float32)
    else:
        image.require_same_grid(labels.volume, "label map")
        target = class_indices(onto_grid(labels.volume, working).array, label_values)
        w = np.ones(image.shape, dtype=np.float32) if weight is None else np.asarray(weight, dtype=np.float32)
        weights = onto_grid(image.with_array(w), working).array.astype(np.float32)
    return TrainingVolume(torch.from_numpy(array[None].copy()), torch.from_numpy(target), torch.from_numpy(weights))


def dice_ce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Voxel-weighted MONAI soft Dice + cross-entropy.

    Args:
        logits: (B, C, z, y, x).
        target: (B, z, y, x) int64 class indices.
        weight: (B, z, y, x) float voxel weights (0 = ignored).
    """
    from monai.losses import DiceLoss

    classes = logits.shape[1]
    probability = torch.softmax(logits, dim=1)
    one_hot = F.one_hot(target, classes).permute(0, 4, 1, 2, 3).float()
    w = weight[:, None]
    dice_loss = DiceLoss(include_background=False, softmax=False, to_onehot_y=False, batch=True)
    dice = dice_loss(probability * w, one_hot * w)
    ce = F.cross_entropy(logits, target, reduction="none")
    ce = (ce * weight).sum() / weight.sum().clamp_min(1.0)
    return dice + ce


@dataclass
class RetrainResult:
    """What :func:`retrain` gives: the inference network (eval mode, CPU), the counters, the SFR+
    agreement selection (kept indices, scores of every pseudo-label) when one was made."""

    network: torch.nn.Module
    iterations: int
    seconds: float
    last_losses: dict = field(default_factory=dict)
    agreement: dict | None = None


class Trainer:
    """The state of one re-training run (see the module doc)."""

    def __init__(self, labelled: Sequence[TrainingVolume], pseudo: Sequence[TrainingVolume],
                 unlabelled: Sequence[torch.Tensor], config: NetworkConfig, settings: RetrainSettings,
                 device: torch.device) -> None:
        if not labelled:
            raise InputError("Re-training needs at least one labelled volume")
        if settings.patch % config.divisor or settings.patch < 2 * config.divisor:
            raise InputError(f"The patch edge must be a multiple of {config.divisor} and at least {2 * config.divisor} "
                             f"for this network, not {settings.patch}")
        self.labelled, self.pseudo, self.unlabelled = list(labelled), list(pseudo), list(unlabelled)
        self.config, self.settings, self.device = config, settings, device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            self.student = build_network(config).to(device)
        self.method = make_method(
            settings.method, self.student,
            **({} if settings.method == "supervised" else dict(
                alpha=settings.ema_alpha, weight=settings.consistency_weight, rampup=settings.consistency_rampup,
                noise=settings.consistency_noise)),
        )
        self.optimizer = torch.optim.Adam(self.student.parameters(), lr=settings.learning_rate)
        self.iteration = 0
        self.seconds = 0.0
        self.last_losses: dict = {}
        self.updating = False
        #: SFR+ by teacher agreement once made: kept indices, agreement per volume, agreement masks
        self.agreement: dict | None = None
        self.active_pseudo = list(self.pseudo)

    def identity(self) -> dict:
        h = hashlib.sha256()
        for volume in self.labelled + self.pseudo:
            h.update(volume.digest().encode())
        for image in self.unlabelled:
            h.update(hashlib.sha256(image.contiguous().numpy().tobytes()).hexdigest().encode())
        settings = asdict(self.settings)
        settings.pop("iterations")  # a run may be resumed to more iterations
        return {"settings": settings, "config": self.config.to_dict(), "data": h.hexdigest()}

    def state(self) -> dict:
        return {"version": CHECKPOINT_VERSION, "identity": self.identity(), "iteration": self.iteration,
                "seconds": self.seconds, "last_losses": dict(self.last_losses),
                "student": self.student.state_dict(), "method": self.method.state_dict(),
                "optimizer": self.optimizer.state_dict(), "agreement": self.agreement}

    def load_state(self, state: dict, source: Path) -> None:
        if (not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION
                or state.get("identity") != self.identity()):
            raise InputError(f"{source}: the checkpoint belongs to another run (other inputs or settings); "
                             "use another --work-dir or train without --resume")
        self.student.load_state_dict(state["student"])
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration, self.seconds = int(state["iteration"]), float(state["seconds"])
        self.last_losses = dict(state["last_losses"])
        if state.get("agreement") is not None:
            self._apply_agreement(state["agreement"])

    def _apply_agreement(self, agreement: dict) -> None:
        self.agreement = agreement
        self.active_pseudo = [
            TrainingVolume(self.pseudo[i].image, self.pseudo[i].target, self.pseudo[i].weight * agreement["masks"][k])
            for k, i in enumerate(agreement["indices"])]

    @torch.no_grad()
    def select_by_agreement(self) -> dict:
        """SFR+ by teacher agreement (:class:`RetrainSettings`): the inference network segments
        every pseudo-labelled volume; keeps the best-agreeing fraction, masks the disagreeing voxels."""
        from .inference import window_logits

        assert self.settings.agreement_select is not None
        network = self.method.inference_network(self.student)
        network.eval()
        scores, masks = [], []
        for volume in self.pseudo:
            logits = window_logits(network, volume.image[None].to(self.device), self.settings.patch)
            prediction = logits[0].argmax(dim=0).cpu()
            valid = volume.weight > 0
            dices = []
            for c in range(1, self.config.classes):
                a, b = (prediction == c) & valid, (volume.target == c) & valid
                total = int(a.sum()) + int(b.sum())
                if total:
                    dices.append(2.0 * int((a & b).sum()) / total)
            scores.append(float(np.mean(dices)) if dices else 0.0)
            masks.append((prediction == volume.target).to(torch.float32))
        keep = max(1, int(np.ceil(self.settings.agreement_select * len(self.pseudo) - 1e-9)))
        indices = sorted(sorted(range(len(self.pseudo)), key=lambda i: -scores[i])[:keep])
        self.student.train()
        return {"indices": indices, "scores": scores, "masks": [masks[i] for i in indices]}

    def _patch(self, volume: TrainingVolume, rng: np.random.RandomState, augmented: bool):
        size = (self.settings.patch,) * 3
        image, target, weight = random_crop(volume.image, volume.target, volume.weight, size, rng,
                                            classes=self.config.classes if self.settings.balanced_sampling else None)
        if augmented and self.settings.augment:
            image, target, weight = augment(image, target, weight, rng)
        return image, target, weight

    def step(self) -> dict:
        """One iteration; returns the losses (floats)."""
        rng = np.random.RandomState((self.settings.seed * 1_000_003 + self.iteration) % (2**32))
        generator = torch.Generator().manual_seed(int(rng.randint(2**31)))
        first = self.labelled[rng.randint(len(self.labelled))]
        second = (self.active_pseudo[rng.randint(len(self.active_pseudo))] if self.active_pseudo
                  else self.labelled[rng.randint(len(self.labelled))])
        patches = [self._patch(first, rng, True), self._patch(second, rng, True)]
        images = torch.stack([p[0] for p in patches]).to(self.device)
        targets = torch.stack([p[1] for p in patches]).to(self.device)
        weights = torch.stack([p[2] for p in patches]).to(self.device)
        self.student.train()
        supervised = dice_ce(self.student(images), targets, weights)
        losses = {"supervised": supervised}
        total = supervised
        if self.method.uses_unlabelled:
            pool = self.unlabelled or [v.image for v in self.labelled]
            source = pool[rng.randint(len(pool))]
            dummy = TrainingVolume(source, torch.zeros(source.shape[1:], dtype=torch.int64),
                                   torch.zeros(source.shape[1:]))
            image = self._patch(dummy, rng, False)[0][None].to(self.device)
            losses["consistency"] = self.method.unsupervised_loss(self.student, image, self.iteration, generator)
            total = total + losses["consistency"]
        if self.settings.lr_schedule == "poly":
            fraction = min(self.iteration / float(self.settings.iterations), 1.0)
            for group in self.optimizer.param_groups:
                group["lr"] = self.settings.learning_rate * (1.0 - fraction) ** 0.9
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.updating = True  # an interrupt from here to the end of the update leaves no consistent state
        self.optimizer.step()
        self.method.after_step(self.student, self.iteration)
        self.iteration += 1
        self.updating = False
        losses["total"] = total
        return {k: float(v.detach()) for k, v in losses.items()}

    def train(self, progress: Progress, cancel: CancelToken | None, save) -> None:
        total = self.settings.iterations
        progress(STAGE, min(self.iteration, total), total)
        while self.iteration < total:
            if cancel is not None:
                cancel.raise_if_cancelled()
            start = time.perf_counter()
            if (self.settings.agreement_select is not None and self.agreement is None and self.pseudo
                    and self.iteration >= int(self.settings.agreement_at * total)):
                self._apply_agreement(self.select_by_agreement())
            self.last_losses = self.step()
            require_finite_loss(self.last_losses["total"], self.iteration, "SFR re-training")
            self.seconds += time.perf_counter() - start
            progress(STAGE, self.iteration, total)
            if save is not None and self.iteration % self.settings.checkpoint_every == 0:
                save()

    def inference_network(self) -> torch.nn.Module:
        return self.method.inference_network(self.student).eval()


def retrain(
    labelled: Sequence[TrainingVolume],
    pseudo: Sequence[TrainingVolume],
    unlabelled: Sequence[torch.Tensor],
    *,
    config: NetworkConfig,
    settings: RetrainSettings,
    work_dir: Path | None = None,
    resume: bool = False,
    device: str = "cpu",
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> RetrainResult:
    """Train the 3D network (see the module doc).

    Args:
        labelled: truly labelled volumes (weight 1).
        pseudo: pseudo-labelled volumes (weights from SFR+ selection); empty for supervised-only
            or plain Mean Teacher.
        unlabelled: (1, z, y, x) normalised images for the semi-supervised term.
        config, settings: network and hyper-parameters.
        work_dir: folder of the checkpoint (None: no checkpoints).
        resume: continue from ``work_dir``'s checkpoint (ValueError when absent or of another run).
        device: "cpu", "cuda" or "auto".
        progress: ``(STAGE, iteration, iterations)``.
        cancel: polled between iterations; on cancel (or a KeyboardInterrupt, the CLI's SIGTERM) a
            checkpoint of the last finished iteration is written and the exception re-raised.
    """
    from ..atlas.rrl.training import resolve_device

    trainer = Trainer(labelled, pseudo, unlabelled, config, settings, resolve_device(device))
    path = Path(work_dir) / CHECKPOINT_NAME if work_dir is not None else None
    if resume:
        if path is None or not path.is_file():
            raise InputError(f"{path}: no checkpoint to resume from (train without --resume first)")
        trainer.load_state(read_torch_file(path, "SFR checkpoint"), path)

    save = None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)

        def save() -> None:
            save_torch_file(path, trainer.state())

    try:
        trainer.train(progress, cancel, save)
    except (Cancelled, KeyboardInterrupt):  # the CLI turns SIGTERM / Ctrl-C into KeyboardInterrupt mid-step
        if save is not None and not trainer.updating:  # else the last periodic checkpoint stays
            save()
        raise
    if save is not None:
        save()
    network = trainer.inference_network().cpu()
    agreement = None if trainer.agreement is None else {
        "indices": list(trainer.agreement["indices"]), "scores": list(trainer.agreement["scores"])}
    return RetrainResult(network, trainer.iteration, trainer.seconds, trainer.last_losses, agreement)
