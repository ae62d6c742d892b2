"""The trained network as a bundle member (``weights/network.pt``).

One ``torch.save`` dict of plain values and tensors, read with ``weights_only=True``:
``{"format": "rrl_medsam", "version": 1, "config": RRLConfig.to_dict(), "label_values": [...],
"state_dict": {...}}``. Class i of the network's output is label ``label_values[i - 1]``.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import InputError
from ...torch_files import read_torch_file
from .checkpoint import save_checkpoint
from .model import RRLConfig, RRLMedSAM

NETWORK_MEMBER = "network.pt"
FORMAT = "rrl_medsam"
VERSION = 1


def save_network(path: Path, model: RRLMedSAM, label_values: list[int]) -> None:
    """Write ``model`` (weights moved to the CPU) and its class table to ``path`` atomically."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_checkpoint(
        path,
        {
            "format": FORMAT,
            "version": VERSION,
            "config": model.config.to_dict(),
            "label_values": [int(v) for v in label_values],
            "state_dict": state,
        },
    )


def load_network(path: Path) -> tuple[RRLMedSAM, list[int]]:
    """The network (CPU, eval mode) and its label values; ValueError (one line) for a bad file."""
    data = read_torch_file(path, "RRL-MedSAM network")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path}: is not an RRL-MedSAM network file")
    if data.get("version") != VERSION:
        raise InputError(
            f"{path}: RRL-MedSAM network version {data.get('version')!r} is not supported (expected {VERSION})"
        )
    config = RRLConfig.from_dict(data["config"])
    model = RRLMedSAM(config)
    try:
        model.load_state_dict(data["state_dict"])
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise InputError(f"{path}: the weights do not fit the recorded network ({first})") from None
    values = [int(v) for v in data["label_values"]]
    if len(values) + 1 != config.n_classes:
        raise InputError(f"{path}: {len(values)} label values for {config.n_classes} classes")
    return model.eval(), values
