"""The 3D segmentation network of a study model: a MONAI U-Net (default) or V-Net, its JSON
configuration, and the weights file of a bundle (versioned, atomic, ``weights_only`` reads)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ..torch_files import read_versioned_file, save_torch_file

ARCHITECTURES = ("unet", "vnet")
#: Name of the network member in an ``sfr`` bundle's weights folder.
NETWORK_MEMBER = "sfr_network.pt"
NETWORK_FORMAT = "samfewshot-sfr-network"
NETWORK_VERSION = 1


@dataclass(frozen=True)
class NetworkConfig:
    """How the network is built.

    Attributes:
        architecture: "unet" (``monai.networks.nets.UNet``) or "vnet" (``monai.networks.nets.VNet``,
            fixed widths 16..256, patches multiple of 16, heavier).
        classes: output channels (background + one per label value).
        channels: U-Net feature widths per level.
        strides: U-Net down-sampling per level (len(channels) - 1 entries).
        num_res_units: residual units per U-Net block.
        dropout: dropout probability.
    """

    architecture: str = "unet"
    classes: int = 2
    channels: tuple[int, ...] = (8, 16, 32, 64)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = 1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"The architecture must be one of {', '.join(ARCHITECTURES)}, not {self.architecture!r}")
        if self.classes < 2:
            raise ValueError(f"A network needs at least 2 classes (background + a label), not {self.classes}")
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        if len(self.strides) != len(self.channels) - 1:
            raise ValueError(f"A U-Net needs len(channels) - 1 strides, not {self.strides} for {self.channels}")

    @property
    def divisor(self) -> int:
        """Patch edges must be multiples of this."""
        if self.architecture == "vnet":
            return 16
        out = 1
        for s in self.strides:
            out *= s
        return out

    def to_dict(self) -> dict:
        out = asdict(self)
        out["channels"], out["strides"] = list(self.channels), list(self.strides)
        return out

    @classmethod
    def from_dict(cls, values: dict) -> NetworkConfig:
        try:
            return cls(**values)
        except TypeError as error:
            raise ValueError(f"Bad network configuration {values!r}: {error}") from None


def build_network(config: NetworkConfig):
    """The MONAI network of ``config`` (1 input channel, ``config.classes`` output logits)."""
    from monai.networks.nets import UNet, VNet

    if config.architecture == "vnet":
        return VNet(spatial_dims=3, in_channels=1, out_channels=config.classes, dropout_prob_down=config.dropout,
                    dropout_prob_up=(config.dropout, config.dropout))
    return UNet(
        spatial_dims=3, in_channels=1, out_channels=config.classes, channels=config.channels, strides=config.strides,
        num_res_units=config.num_res_units, norm="INSTANCE", dropout=config.dropout,
    )


def save_network(path: str | os.PathLike, network, config: NetworkConfig, label_values: Sequence[int]) -> None:
    """Write the network's weights with its configuration and class -> label value table."""
    save_torch_file(path, {
        "format": NETWORK_FORMAT, "version": NETWORK_VERSION, "config": config.to_dict(),
        "label_values": [int(v) for v in label_values], "state": network.state_dict(),
    })


def load_network(path: str | os.PathLike):
    """(network in eval mode on the CPU, config, label values) from :func:`save_network`'s file;
    ValueError (one line) for a missing, corrupt or foreign file."""
    payload = read_versioned_file(path, kind=NETWORK_FORMAT, version=NETWORK_VERSION, what="SFR network file",
                                  made_by="samfewshot sfr train")
    config = NetworkConfig.from_dict(dict(payload["config"]))
    network = build_network(config)
    network.load_state_dict(payload["state"])
    return network.eval(), config, [int(v) for v in payload["label_values"]]
