"""``samfewshot atlas info | apply``: the command lines of the Slicer module's Atlas panel, and
the bundle description it shows.

``atlas info BUNDLE --json`` prints one JSON object::

    {"format_version": 1, "name": str, "modality": str, "engine": str, "atlases": int,
     "labels": [{"value": int, "name": str, "color": [r, g, b], "terminology": str | null}],
     "weights": [{"member": str, "sha256": str}], "parameters": {...}}

``atlas apply IMAGE BUNDLE -o OUT.seg.nrrd`` writes the structures as segments with their names,
colours and terminology (on IMAGE's grid), JSON progress on stdout and a JSON report.
``atlas create IMAGE LABELS -o BUNDLE`` makes a one-atlas bundle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from .commands import CLI_DEVICES, PathLike, base_command
from .progress_lines import parse_json_output

if TYPE_CHECKING:
    from ..atlas.bundle import AtlasLabel

#: ``--fusion`` choices of ``atlas apply`` (how several atlases' labels are combined).
FUSION_METHODS = ("majority", "staple", "local")
#: ``--refine`` choices (SAM refinement from atlas prompts; needs ``--checkpoint``).
REFINE_METHODS = ("sam",)
#: ``--device`` choices.
DEVICES = CLI_DEVICES


@dataclass(frozen=True)
class AtlasInfo:
    """What ``samfewshot atlas info --json`` says of a bundle.

    Attributes:
        name, modality: the bundle's name and image modality (``CT``, ``MR``).
        engine: ``registration`` (atlas registration) or ``rrl_medsam`` (trained network).
        atlases: number of labelled atlas images.
        labels: the structures (:class:`~SAMFewShotLib.atlas.bundle.AtlasLabel`: value, name,
            colour, terminology), in the bundle's order.
        weights: member names of the network weights it carries.
    """

    name: str
    modality: str
    engine: str
    atlases: int
    labels: tuple["AtlasLabel", ...]
    weights: tuple[str, ...] = ()

    def summary(self) -> str:
        """Two readable lines: ``"abdomen (CT, registration, 3 atlases)"`` and the label names."""
        count = f"{self.atlases} atlas" + ("es" if self.atlases != 1 else "")
        names = ", ".join(label.name for label in self.labels) or "(none)"
        return f"{self.name} ({self.modality}, {self.engine}, {count})\n{len(self.labels)} structures: {names}"


def atlas_info_command(python_executable: PathLike, bundle: PathLike) -> list[str]:
    """argv of ``samfewshot atlas info BUNDLE --json`` (stdout: the JSON object, read it with
    :func:`parse_atlas_info`).

    Raises:
        ValueError: an empty bundle path.
    """
    return base_command(python_executable, "atlas", "info", _path_text(bundle, "atlas bundle"), "--json")


def atlas_apply_command(
    python_executable: PathLike,
    image_path: PathLike,
    bundle: PathLike,
    output_path: PathLike,
    report_path: PathLike,
    fusion: str | None = None,
    refine: str | None = None,
    checkpoint: str | None = None,
    device: str = "auto",
) -> list[str]:
    """argv of ``samfewshot atlas apply IMAGE BUNDLE -o OUT --progress json --report R ...``.

    Args:
        image_path: the exported volume (LPS file).
        bundle: the atlas bundle (.zip or folder).
        output_path: where the segments go (``.seg.nrrd`` keeps names, colours, terminology).
        report_path: the ``--report`` JSON.
        fusion: one of :data:`FUSION_METHODS`; None leaves the command's default (majority).
        refine: ``"sam"`` for SAM refinement from atlas prompts (needs ``checkpoint``) or None.
        checkpoint: SAM checkpoint name or path, passed only with ``refine``.
        device: one of :data:`DEVICES`; ``auto`` is the command's default and is left out.

    Raises:
        ValueError: an unknown fusion, refine or device value; ``refine`` without a checkpoint.
    """
    if fusion is not None and fusion not in FUSION_METHODS:
        raise ValueError(f"Fusion must be one of {', '.join(FUSION_METHODS)}, not {fusion!r}")
    if refine is not None and refine not in REFINE_METHODS:
        raise ValueError(f"Refinement must be one of {', '.join(REFINE_METHODS)} or None, not {refine!r}")
    if refine is not None and not checkpoint:
        raise ValueError(f"Refinement {refine!r} needs a SAM checkpoint: import one under Model")
    if device not in DEVICES:
        raise ValueError(f"Device must be one of {', '.join(DEVICES)}, not {device!r}")
    argv = base_command(
        python_executable,
        "atlas",
        "apply",
        _path_text(image_path, "image"),
        _path_text(bundle, "atlas bundle"),
        "-o",
        _path_text(output_path, "output"),
        "--progress",
        "json",
        "--report",
        _path_text(report_path, "report"),
    )
    if fusion is not None:
        argv += ["--fusion", fusion]
    if refine is not None:
        argv += ["--refine", refine, "--checkpoint", os.fspath(checkpoint)]
    if device != "auto":
        argv += ["--device", device]
    return argv


def atlas_create_command(
    python_executable: PathLike,
    image_path: PathLike,
    labels_path: PathLike,
    bundle: PathLike,
    name: str | None = None,
    modality: str | None = None,
) -> list[str]:
    """argv of ``samfewshot atlas create IMAGE LABELS -o BUNDLE [--name N] [--modality M]``: a
    one-atlas bundle (``.zip`` file or folder) from an image and its label map on the same grid
    (a ``.seg.nrrd`` keeps the structures' names, colours and terminology).

    Raises:
        ValueError: an empty path, name or modality.
    """
    argv = base_command(
        python_executable,
        "atlas",
        "create",
        _path_text(image_path, "atlas image"),
        _path_text(labels_path, "atlas labels"),
        "-o",
        _path_text(bundle, "bundle"),
    )
    for option, value in (("--name", name), ("--modality", modality)):
        if value is not None:
            if not value.strip():
                raise ValueError(f"The atlas {option[2:]} must not be empty, not {value!r}")
            argv += [option, value.strip()]
    return argv


def parse_atlas_info(atlas_info_json: str | Mapping) -> AtlasInfo:
    """The :class:`AtlasInfo` of ``atlas info --json`` output (a JSON text or the parsed object).

    Raises:
        ValueError: not JSON, not an object, a field missing or of the wrong type, or a bad
            label entry (one line naming the field or the entry).
    """
    payload = parse_json_output(atlas_info_json, "atlas info")
    texts = {}
    for key in ("name", "modality", "engine"):
        value = payload.get(key)
        if not isinstance(value, str):
            raise ValueError(f"The atlas info field {key!r} must be a string, not {value!r}")
        texts[key] = value
    atlases = payload.get("atlases")
    if isinstance(atlases, bool) or not isinstance(atlases, int) or atlases < 0:
        raise ValueError(f"The atlas info field 'atlases' must be an integer >= 0, not {atlases!r}")
    from ..atlas.bundle import labels_from_json  # validates every entry (numpy-backed: imported late)

    labels = labels_from_json(payload.get("labels"))
    weights = payload.get("weights") or []
    if not isinstance(weights, list):
        raise ValueError(f"The atlas info field 'weights' must be a list, not {weights!r}")
    return AtlasInfo(
        name=texts["name"],
        modality=texts["modality"],
        engine=texts["engine"],
        atlases=atlases,
        labels=labels,
        weights=tuple(str(entry.get("member", "")) for entry in weights if isinstance(entry, Mapping)),
    )


def _path_text(path: PathLike, what: str) -> str:
    text = os.fspath(path) if path is not None else ""
    if not str(text).strip():
        raise ValueError(f"The {what} path must not be empty, not {path!r}")
    return str(text)
