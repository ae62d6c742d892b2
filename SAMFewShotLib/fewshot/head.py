"""The reusable few-shot head: a trained decoder and its target embeddings, saved as ``.sfs``.

File format (version 1): one ``torch.save`` file of a plain dict, read back with
``torch.load(..., weights_only=True, map_location="cpu")`` (no code can run while it is read)::

    {"format": "samfewshot-fewshot-head", "version": 1,
     "manifest": JSON text,                      # see FewShotHead.manifest()
     "decoder": FewShotMaskDecoder state dict,   # tensors
     "targets": {"<label value>": (K, C) float32 target embeddings}}

The manifest holds the labels (value, name, colour, terminology), the base checkpoint's sha256
(plus its name and model type), the preprocessing (window, low, high, square pixels), the
annotated axis, SAM's input size and the training summary. Written atomically (temporary file,
then rename). Every problem reading a file is a one-line ValueError naming it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import InputError
from ..sam.preprocess import Preprocessing
from ..torch_files import first_sentence, read_versioned_file, save_torch_file
from ..volume import Segment
from .decoder import FewShotMaskDecoder

FORMAT = "samfewshot-fewshot-head"
FORMAT_VERSION = 1
#: File name suffix of a few-shot head.
SUFFIX = ".sfs"

PathLike = str | os.PathLike


@dataclass(frozen=True)
class BaseModel:
    """The SAM checkpoint a head was trained on.

    Attributes:
        sha256: the checkpoint file's digest (what loading compares).
        name: its registry or import name, or file name (for messages).
        model_type: vit_b, vit_l, vit_h, vit_t or custom.
    """

    sha256: str
    name: str = ""
    model_type: str = ""


@dataclass(eq=False)
class FewShotHead:
    """A trained few-shot head.

    Attributes:
        segments: the labels in decoder order (label index i = ``segments[i]``).
        targets: {label value: (K, C) float32 CPU target embeddings of its drawn slices}.
        decoder_state: :class:`FewShotMaskDecoder` state dict (CPU tensors).
        base_model: the SAM checkpoint it needs.
        preprocessing: how slices were turned into SAM images. A percentile window (MR) is
            recomputed on each new volume with the same percentiles; a CT window is used as is.
        axis: numpy axis (0 = z, 1 = y, 2 = x) of the slices it was trained on.
        image_size: SAM's input side (1024).
        training: the training summary (iterations, seconds, validation, ...).
        joint: True when the decoder decodes all labels in one pass (Xie et al.; heads trained
            since the joint pass), False for one pass per label (older heads, or
            ``TrainingConfig(joint=False)``).
    """

    segments: tuple[Segment, ...]
    targets: dict[int, torch.Tensor]
    decoder_state: dict[str, torch.Tensor]
    base_model: BaseModel
    preprocessing: Preprocessing
    axis: int
    image_size: int = 1024
    training: dict = field(default_factory=dict)
    joint: bool = False

    def __post_init__(self) -> None:
        values = [s.value for s in self.segments]
        if not values or sorted(set(values)) != sorted(values):
            raise ValueError(f"A head needs distinct label values, not {values}")
        if set(values) != set(self.targets):
            raise ValueError(f"Target embeddings for labels {sorted(self.targets)} do not match the labels {values}")
        if self.axis not in (0, 1, 2):
            raise ValueError(f"Axis must be 0, 1 or 2 (numpy z, y, x), not {self.axis!r}")

    @property
    def label_values(self) -> list[int]:
        return [s.value for s in self.segments]

    def tokens(self) -> list[torch.Tensor]:
        """(K, C) target embeddings per label index."""
        return [self.targets[value] for value in self.label_values]

    def build_decoder(self, sam: torch.nn.Module) -> FewShotMaskDecoder:
        """The trained decoder on ``sam``'s device (built from ``sam``, then loaded strictly).

        The caller checks first that ``sam`` is the base model (:func:`check_base_model`).
        """
        decoder = FewShotMaskDecoder.from_sam(sam, len(self.segments))
        state = dict(self.decoder_state)
        if "label_embeddings" not in state:  # a head written before the joint pass: no label embeddings
            state["label_embeddings"] = torch.zeros_like(decoder.label_embeddings)
        try:
            decoder.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise InputError(f"The head's decoder does not fit this SAM: {first_sentence(error)}") from None
        return decoder.eval()

    def manifest(self) -> dict:
        """The JSON part of the file."""
        p = self.preprocessing
        return {
            "labels": [
                {"value": s.value, "name": s.name, "color": list(s.color) if s.color else None,
                 "terminology": s.terminology}
                for s in self.segments
            ],
            "base_model": {"sha256": self.base_model.sha256, "name": self.base_model.name,
                           "model_type": self.base_model.model_type},
            "preprocessing": {"window": p.window, "low": p.low, "high": p.high, "square_pixels": p.square_pixels},
            "axis": self.axis,
            "image_size": self.image_size,
            "training": self.training,
            "joint": self.joint,
        }

    def preprocessing_for(self, volume) -> Preprocessing:
        """The preprocessing of a new volume: a percentile window recomputed on it, else as trained."""
        p = self.preprocessing
        if p.window.startswith("percentile-"):
            low, high = (float(v) for v in p.window.split("-")[1:3])
            return Preprocessing.from_percentiles(volume, (low, high), p.square_pixels)
        return p


def check_base_model(head: FewShotHead, sha256: str, checkpoint: str, source: str = "The few-shot head") -> None:
    """ValueError (one line) unless ``sha256`` is the head's base checkpoint digest."""
    if sha256 != head.base_model.sha256:
        base = head.base_model
        raise InputError(
            f"{source} was trained on base model {base.name or '?'} ({base.model_type or '?'}, sha256 "
            f"{base.sha256[:12]}...), not on {checkpoint} (sha256 {sha256[:12]}...): pass that checkpoint"
        )


def save_head(head: FewShotHead, path: PathLike) -> Path:
    """Write ``head`` to ``path`` atomically (see the module doc); returns the path."""
    target = Path(path)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "manifest": json.dumps(head.manifest()),
        "decoder": {k: v.detach().cpu() for k, v in head.decoder_state.items()},
        "targets": {str(value): tokens.detach().cpu().float() for value, tokens in head.targets.items()},
    }
    return save_torch_file(target, payload)


def load_head(path: PathLike) -> FewShotHead:
    """Read a head file; one-line ValueError for a missing, corrupt or foreign file."""
    payload = read_versioned_file(
        path, kind=FORMAT, version=FORMAT_VERSION, what="few-shot head file", made_by="samfewshot fewshot train"
    )
    try:
        return _head_from(payload)
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as error:
        raise InputError(f"{path} is a damaged few-shot head file ({first_sentence(error)})") from None


def _rgb(values) -> tuple[float, float, float]:
    """(r, g, b) floats of a stored colour; ValueError unless it has three."""
    r, g, b = (float(c) for c in values)
    return r, g, b


def _head_from(payload: Mapping) -> FewShotHead:
    manifest = json.loads(payload["manifest"])
    segments = tuple(
        Segment(
            value=int(label["value"]),
            name=str(label.get("name") or ""),
            color=_rgb(label["color"]) if label.get("color") else None,
            terminology=label.get("terminology"),
        )
        for label in manifest["labels"]
    )
    targets = {int(value): tokens for value, tokens in payload["targets"].items()}
    for value, tokens in targets.items():
        if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.shape[0] < 1:
            raise ValueError(f"target embeddings of label {value} are not a (K, C) tensor")
    decoder = payload["decoder"]
    if not isinstance(decoder, Mapping) or not all(isinstance(v, torch.Tensor) for v in decoder.values()):
        raise ValueError("the decoder state is not a dict of tensors")
    base, p = manifest["base_model"], manifest["preprocessing"]
    return FewShotHead(
        segments=segments,
        targets=targets,
        decoder_state=dict(decoder),
        base_model=BaseModel(str(base["sha256"]), str(base.get("name") or ""), str(base.get("model_type") or "")),
        preprocessing=Preprocessing(str(p["window"]), p["low"], p["high"], bool(p["square_pixels"])),
        axis=int(manifest["axis"]),
        image_size=int(manifest.get("image_size", 1024)),
        training=dict(manifest.get("training") or {}),
        joint=bool(manifest.get("joint", False)),
    )
