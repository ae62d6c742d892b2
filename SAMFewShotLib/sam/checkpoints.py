"""Registry of known SAM checkpoints: where each file comes from, what it is, and its digest.

Pure data: importing this module needs neither torch nor the network. The loader
(:mod:`.model_loading`) and the weights cache (:mod:`.weights_store`) read it.

Reference digests were not computed here (no weights exist on the development machines);
each one is the value published by several independent projects that verify these exact
files (sources in the comment above each entry). Meta's file names carry the first six hex
digits of the file's MD5 (``sam_vit_b_01ec64.pth``: MD5 ``01ec64d2...``), which those
published MD5 values confirm. An entry whose SHA-256 could not be found in a trustworthy
source stores ``sha256=None``; the cache then checks its MD5 where one is published, and
records the SHA-256 it computes on first use (trust on first use), saying so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InputError

MODEL_TYPES = (
    "vit_b",
    "vit_l",
    "vit_h",
    "vit_t",
    "efficientvit_l0",
    "efficientvit_l1",
    "efficientvit_l2",
    "efficientvit_xl0",
    "efficientvit_xl1",
)
"""Architectures the loader builds: SAM's three ViT image encoders, MobileSAM's TinyViT and
EfficientViT-SAM's five encoders (package ``efficientsam``)."""

FAMILIES = ("sam", "medsam", "mobile_sam", "efficientvit_sam")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Checkpoint:
    """One known checkpoint file.

    ``size`` is in bytes. ``sha256``/``md5`` are lower-case hex digests of the whole file, or
    None where no trustworthy published value was found. ``filename`` is the name the
    publisher gives the file, also its name inside the weights cache.
    """

    name: str
    model_type: str
    family: str
    url: str
    sha256: str | None
    size: int | None
    licence: str
    filename: str
    md5: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"Model type must be one of {', '.join(MODEL_TYPES)}, not {self.model_type!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"Family must be one of {', '.join(FAMILIES)}, not {self.family!r}")
        if self.sha256 is not None and not _HEX64.match(self.sha256):
            raise ValueError(f"sha256 of {self.name} must be 64 lower-case hex digits, not {self.sha256!r}")
        if self.md5 is not None and not _HEX32.match(self.md5):
            raise ValueError(f"md5 of {self.name} must be 32 lower-case hex digits, not {self.md5!r}")

    @property
    def has_reference_digest(self) -> bool:
        """True when the file can be verified against a published digest (SHA-256 or MD5)."""
        return self.sha256 is not None or self.md5 is not None


_META_LICENCE = "Apache-2.0 (segment-anything README: 'The model is licensed under the Apache 2.0 license')"

_EFFICIENTVIT_LICENCE = "Apache-2.0 (mit-han-lab/efficientvit repository, efficientsam package)"


def _efficientvit_sam(variant: str, sha256: str, description: str) -> Checkpoint:
    """An EfficientViT-SAM entry (``variant``: l0, l1, l2, xl0, xl1): file, URL and model type
    follow the variant's name on the mit-han-lab/efficientvit-sam model repository."""
    filename = f"efficientvit_sam_{variant}.pt"
    return Checkpoint(
        name=f"efficientvit_sam_{variant}",
        model_type=f"efficientvit_{variant}",
        family="efficientvit_sam",
        url=f"https://huggingface.co/mit-han-lab/efficientvit-sam/resolve/main/{filename}",
        sha256=sha256,
        size=None,
        licence=_EFFICIENTVIT_LICENCE,
        filename=filename,
        md5=None,
        description=description,
    )

REGISTRY: dict[str, Checkpoint] = {
    # SHA-256 of Meta's three files: computational-cell-analytics/micro-sam micro_sam/util.py
    # (pooch registry), mazurowski-lab/SlicerSegmentWithSAM SegmentWithSAM/SegmentWithSAM.py
    # (Slicer downloadFileIntoCache checksums) and many others; sizes: dafne-imaging/dafne
    # src/dafne/utils/sam_mask_refine.py and independent download logs; MD5: Sanster/IOPaint
    # iopaint/plugins/interactive_seg.py.
    "sam_vit_b": Checkpoint(
        name="sam_vit_b",
        model_type="vit_b",
        family="sam",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        size=375_042_383,
        licence=_META_LICENCE,
        filename="sam_vit_b_01ec64.pth",
        md5="01ec64d29a2fca3f0661936605ae66f8",
        description="Segment Anything ViT-B (Meta)",
    ),
    "sam_vit_l": Checkpoint(
        name="sam_vit_l",
        model_type="vit_l",
        family="sam",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
        sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        size=1_249_524_607,
        licence=_META_LICENCE,
        filename="sam_vit_l_0b3195.pth",
        md5="0b3195507c641ddb6910d2bb5adee89c",
        description="Segment Anything ViT-L (Meta)",
    ),
    "sam_vit_h": Checkpoint(
        name="sam_vit_h",
        model_type="vit_h",
        family="sam",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
        sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        size=2_564_550_879,
        licence=_META_LICENCE,
        filename="sam_vit_h_4b8939.pth",
        md5="4b8939a88964f0f4ff5f5b2642c598a6",
        description="Segment Anything ViT-H (Meta)",
    ),
    # MedSAM (bowang-lab/MedSAM, Nature Communications 2024): SAM ViT-B fine-tuned on 1.5 M
    # medical image-mask pairs; the official file is on Zenodo (record 10689643, also linked
    # from the MedSAM README via Google Drive). No published SHA-256 was found: sha256=None
    # (trust on first use). Zenodo lists the MD5 below, quoted identically by several
    # projects that verify this file; size from dafne-imaging/dafne sam_mask_refine.py.
    # Licence: the MedSAM repository is Apache-2.0; the Zenodo record carries its own terms
    # (reported as CC-BY-4.0), so check them before redistributing the weights.
    "medsam_vit_b": Checkpoint(
        name="medsam_vit_b",
        model_type="vit_b",
        family="medsam",
        url="https://zenodo.org/records/10689643/files/medsam_vit_b.pth",
        sha256=None,
        size=375_049_145,
        licence="Apache-2.0 (MedSAM code); Zenodo record 10689643 terms for the weights (reported CC-BY-4.0)",
        filename="medsam_vit_b.pth",
        md5="3bb6db55bd0c9ca30b61248bca72f8d6",
        description="MedSAM ViT-B (bowang-lab), SAM fine-tuned on medical images",
    ),
    # MobileSAM (ChaoningZhang/MobileSAM, Apache-2.0): TinyViT-5M image encoder distilled from
    # SAM ViT-H, SAM's prompt encoder and mask decoder. SHA-256 and size: micro-sam
    # micro_sam/util.py ("vit_t") and several projects pinning weights/mobile_sam.pt at
    # commit f706ad9c (40,728,226 bytes).
    "mobile_sam": Checkpoint(
        name="mobile_sam",
        model_type="vit_t",
        family="mobile_sam",
        url="https://raw.githubusercontent.com/ChaoningZhang/MobileSAM/"
        "f706ad9c4eb7f219c00d9050e46328518ffb65d2/weights/mobile_sam.pt",
        sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        size=40_728_226,
        licence="Apache-2.0 (MobileSAM repository)",
        filename="mobile_sam.pt",
        md5=None,
        description="MobileSAM (TinyViT encoder), light and fast on the CPU",
    ),
    # EfficientViT-SAM (mit-han-lab/efficientvit, arXiv 2402.05008; code: the efficientsam
    # package, Apache-2.0): SAM's prompt encoder and mask decoder behind EfficientViT image
    # encoders (L: 512-pixel input, XL: 1024). Files on the mit-han-lab/efficientvit-sam model
    # repository. SHA-256 of all five: the weights manifest of InterDigitalInc's CompressAI-Vision
    # install script (scripts/install.sh); L0's is also pinned by two independent projects (a
    # SAM-variant benchmark README and a Python SAM model table). No trustworthy published byte
    # size was found: size=None (the SHA-256 decides). Licence: Apache-2.0 (efficientvit
    # repository and the efficientsam package; check the model card before redistributing).
    "efficientvit_sam_l0": _efficientvit_sam(
        "l0", "c4f994b01a16d48bcf2fbbb089448cfbf58fae5811edfa8113c953b8b8cc64b8",
        "EfficientViT-SAM-L0, 512-pixel input, 34.8 M parameters; the lightest",
    ),
    "efficientvit_sam_l1": _efficientvit_sam(
        "l1", "fa151df2b9b96896accd505470755cdd293a4c50cdabac95478f3fbd86d9152b",
        "EfficientViT-SAM-L1, 512-pixel input, 47.7 M parameters",
    ),
    "efficientvit_sam_l2": _efficientvit_sam(
        "l2", "d4bfd842224cbb99de09acc3325e81ac5b7e8725c8fbdab152305e5d934bfe4a",
        "EfficientViT-SAM-L2, 512-pixel input, 61.3 M parameters",
    ),
    "efficientvit_sam_xl0": _efficientvit_sam(
        "xl0", "9bc2f87bd23d6e6d1f7b5beff910f98835c7c333fac73e695bac0bec685968f8",
        "EfficientViT-SAM-XL0, 1024-pixel input, 117 M parameters",
    ),
    "efficientvit_sam_xl1": _efficientvit_sam(
        "xl1", "10f42277679427c1183dcff19758e536aa86bcc4304e4b387ff48865784be05c",
        "EfficientViT-SAM-XL1, 1024-pixel input, 203 M parameters",
    ),
}


def known_names() -> tuple[str, ...]:
    """Names of the registry entries, in registry order."""
    return tuple(REGISTRY)


def get_checkpoint(name: str) -> Checkpoint:
    """The registry entry called ``name``; ValueError naming the known ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(f"Unknown checkpoint name {name!r}; known checkpoints: {', '.join(REGISTRY)}") from None


def entry_for_filename(filename: str) -> Checkpoint | None:
    """The registry entry whose published file name is ``filename`` (exact match), if any."""
    for entry in REGISTRY.values():
        if entry.filename == filename:
            return entry
    return None


def entries_of_size(size: int) -> list[Checkpoint]:
    """Registry entries whose published size is ``size`` bytes, and those with a published
    SHA-256 but no published size (candidates for a hash match)."""
    return [
        entry
        for entry in REGISTRY.values()
        if entry.size == size or (entry.size is None and entry.sha256 is not None)
    ]


def match_digest(entry: Checkpoint, sha256: str, md5: str | None = None) -> bool | None:
    """Whether a file with these digests is ``entry``: True/False, or None when the entry has
    no reference digest to compare with (trust on first use)."""
    if entry.sha256 is not None:
        return sha256 == entry.sha256
    if entry.md5 is not None and md5 is not None:
        return md5 == entry.md5
    if entry.md5 is not None:
        raise ValueError(f"Checkpoint {entry.name} is verified by MD5: compute the file's MD5 too")
    return None
