"""Build the SSM-SAM network on a SAM checkpoint and set its starting point (init).

Without an init file the network starts from the plain init (see network.py) with every
tensor's step size ``config.learning_rate`` at every step; with one, from the meta-learned
tensors and step sizes, after checking that the init belongs to this checkpoint.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..progress import CancelToken, Progress, no_progress
from ..sam.device import torch_device
from .config import MetaConfig
from .init_file import MetaInit, load_init
from .network import SSMSam

#: What reports say when no meta-learned init was given.
PLAIN_INIT = "plain (no meta-learned init; make one with `samfewshot meta-train`)"


@dataclass
class MetaModel:
    """A ready network and the starting point of every online adaptation.

    Attributes:
        network: the SSM-SAM network (holding the starting point).
        start: {name: tensor} the trainable tensors' starting values.
        learning_rates: (S, T) float32 step sizes of the online optimiser.
        init: path of the init file, or :data:`PLAIN_INIT`.
        loaded: the SAM checkpoint's :class:`~SAMFewShotLib.sam.model_loading.LoadedModel`.
    """

    network: SSMSam
    start: dict[str, torch.Tensor]
    learning_rates: torch.Tensor
    init: str
    loaded: object

    @property
    def is_plain(self) -> bool:
        return self.init == PLAIN_INIT

    def reset(self) -> None:
        """Put the starting point back into the network (before adapting to a new structure)."""
        self.network.load_trainable_state(self.start)


def resized_rates(rates: torch.Tensor, steps: int) -> torch.Tensor:
    """(S, T) step sizes for ``steps`` steps: the first ``steps`` rows, the last row repeated."""
    if steps < 1:
        raise InputError(f"Online steps must be >= 1, not {steps}")
    if steps <= rates.shape[0]:
        return rates[:steps].clone()
    return torch.cat([rates, rates[-1:].expand(steps - rates.shape[0], -1)]).clone()


def load_meta_model(
    checkpoint: str | os.PathLike,
    *,
    init: str | os.PathLike | None = None,
    model_type: str | None = None,
    device: str = "auto",
    steps: int | None = None,
    config: MetaConfig | None = None,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> MetaModel:
    """Load SAM, build the network, set the init.

    Args:
        checkpoint: SAM checkpoint path or name (see ``samfewshot weights``).
        init: a meta-learned init file, or None for the plain init.
        model_type: architecture override for the loader.
        device: "auto", "cpu" or "cuda".
        steps: online steps (None: the init's S, or ``config.steps``).
        config: the plain init's config (ignored with an init file, which carries its own).
    """
    from ..sam.model_loading import load_sam

    target = torch_device(device)
    meta_init: MetaInit | None = load_init(init) if init is not None else None  # a bad file fails before SAM loads
    sam, loaded = load_sam(checkpoint, model_type=model_type, progress=progress, cancel=cancel)
    if meta_init is not None:
        meta_init.check_base(loaded.sha256, loaded.architecture.describe(), str(checkpoint), source=f"Meta init {init}")
        config = meta_init.config
    config = config or MetaConfig()
    network = SSMSam(sam.to(target), config)
    names = list(network.trainable())
    if meta_init is not None:
        if meta_init.names != names:
            raise InputError(f"Meta init {init} does not fit this SSM-SAM network (its tensors differ)")
        network.load_trainable_state(meta_init.state, source=f"Meta init {init}")
        rates = meta_init.learning_rates.float()
    else:
        rates = torch.full((config.steps, len(names)), float(config.learning_rate))
    if steps is not None:
        rates = resized_rates(rates, steps)
    if not all(math.isfinite(v) and v >= 0 for v in rates.flatten().tolist()):
        raise InputError("The online step sizes must be finite and non-negative")
    return MetaModel(
        network=network,
        start=network.trainable_state(),
        learning_rates=rates,
        init=str(init) if init is not None else PLAIN_INIT,
        loaded=loaded,
    )
