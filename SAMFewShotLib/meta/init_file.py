"""Meta-learned init files (``samfewshot meta-train ... -o INIT.pt``): save, load, check.

An init file is a ``torch.save`` of a plain dict (read back with ``weights_only=True``: no
pickled code runs):

    format "samfewshot-meta-init", version 2,
    base: {sha256, name, model_type, architecture}   the SAM checkpoint it was trained on,
    config: MetaConfig fields,
    names: the trainable tensors' names (network order),
    state: {name: tensor}, learning_rates: (S, T) float32 per-step, per-tensor step sizes,
    training: what the meta-learner did (iterations, tasks, seconds, losses, ...).

Version 2 is the network as published (self-sampling prompt encoder, FMAD; issue 17); a version 1
file (the previous network: SAM's prompt encoder and mask decoder) is refused with one line.

An init belongs to one base checkpoint: the adapters and decoders were trained on its frozen
features, so an init is refused (one line) for any other checkpoint, with both named.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import InputError
from ..torch_files import read_versioned_file, save_torch_file
from .config import MetaConfig

FORMAT = "samfewshot-meta-init"
VERSION = 2


@dataclass
class MetaInit:
    """A meta-learned (or plain) starting point of the online optimiser.

    Attributes:
        config: module sizes and online-optimiser settings.
        names: trainable tensor names in network order (T of them).
        state: {name: float tensor}.
        learning_rates: (S, T) float32 step sizes (S = ``config.steps``).
        base_sha256, base_name, model_type, architecture: the SAM checkpoint it belongs to.
        training: a JSON-able summary of the meta-training run.
    """

    config: MetaConfig
    names: list[str]
    state: dict[str, torch.Tensor]
    learning_rates: torch.Tensor
    base_sha256: str
    base_name: str
    model_type: str
    architecture: str
    training: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = (self.config.steps, len(self.names))
        if tuple(self.learning_rates.shape) != expected:
            raise ValueError(f"learning_rates must have shape {expected}, not {tuple(self.learning_rates.shape)}")
        if set(self.names) != set(self.state):
            raise ValueError("The init's tensor names and state differ")

    def check_base(self, sha256: str, architecture: str, checkpoint: str, source: str = "the init") -> None:
        """ValueError (one line) unless this init was made for the checkpoint with this digest."""
        if sha256 == self.base_sha256:
            return
        theirs = f"{self.base_name} (sha256 {self.base_sha256[:12]}..., {self.architecture})"
        ours = f"{checkpoint} (sha256 {sha256[:12]}..., {architecture})"
        kind = (
            "another architecture"
            if architecture != self.architecture
            else "another checkpoint of the same architecture"
        )
        raise InputError(
            f"{source} was meta-trained for base model {theirs}, not for {ours}: {kind}; "
            "meta-train an init for this checkpoint or use its own"
        )


def save_init(init: MetaInit, path: str | os.PathLike) -> Path:
    """Write ``init`` to ``path`` atomically (temporary file + rename); returns the path."""
    target = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "base": {
            "sha256": init.base_sha256,
            "name": init.base_name,
            "model_type": init.model_type,
            "architecture": init.architecture,
        },
        "config": init.config.to_dict(),
        "names": list(init.names),
        "state": {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in init.state.items()},
        "learning_rates": init.learning_rates.detach().to("cpu", torch.float32).contiguous(),
        "training": init.training,
    }
    return save_torch_file(target, payload)


def load_init(path: str | os.PathLike) -> MetaInit:
    """Read an init file; ValueError (one line) for a missing, corrupt or foreign file."""
    payload = read_versioned_file(
        path, kind=FORMAT, version=VERSION, what="meta init file", made_by="samfewshot meta-train"
    )
    try:
        base = payload["base"]
        init = MetaInit(
            config=MetaConfig.from_dict(dict(payload["config"])),
            names=[str(n) for n in payload["names"]],
            state={str(k): v for k, v in payload["state"].items()},
            learning_rates=payload["learning_rates"],
            base_sha256=str(base["sha256"]),
            base_name=str(base["name"]),
            model_type=str(base["model_type"]),
            architecture=str(base["architecture"]),
            training=dict(payload.get("training") or {}),
        )
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise InputError(f"Meta init {path} is incomplete or inconsistent ({error})") from None
    if not all(isinstance(v, torch.Tensor) for v in init.state.values()):
        raise InputError(f"Meta init {path} holds a state entry that is not a tensor")
    return init
