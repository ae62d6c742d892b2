"""Atlas bundles: one or more labelled atlas images, their label table and (optionally) network
weights, in a zip file or a folder.

Members::

    manifest.json                     format version, name, modality, intensity normalisation,
                                      labels (value, name, colour, terminology), engine and its
                                      parameters, atlas members, sha256 of every member
    atlases/atlas_<i>_image.nii.gz    atlas image i (geometry kept: spacing, origin, direction)
    atlases/atlas_<i>_labels.nii.gz   its label map, on the same grid
    weights/<member>                  optional network weights (engines "rrl_medsam", "sfr")

:func:`load_bundle` validates everything on load (format version, JSON, every member present,
every sha256) and raises a one-line ``ValueError`` naming the bundle and the problem. A zip
bundle's members are extracted streaming, into a private folder under ``tempfile``'s folder (the
command's own temporary folder when run from ``samfewshot``): the members' declared sizes are
checked against :func:`max_bundle_bytes` and the free space before anything is extracted, and
each member's size and sha256 are checked while it is copied (a member longer than declared, a
bit flip, a truncated archive: one-line error, nothing left behind).
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import json
import os
import shutil
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..files import sha256_file, write_atomic
from ..input_checks import check_regular
from ..volume import LabelVolume, Segment, Volume
from ..volume_io import DEFAULT_COLORS, PathLike, read_labels, read_volume, write_labels, write_volume
from .normalisation import check_normalisation, default_normalisation

FORMAT_VERSION = 1
#: Environment variable: the most bytes a zip bundle's members may declare in all (default
#: :data:`DEFAULT_MAX_BUNDLE_BYTES`; never more than the free space where they are extracted).
MAX_BUNDLE_BYTES_ENV = "SAMFEWSHOT_MAX_BUNDLE_BYTES"
DEFAULT_MAX_BUNDLE_BYTES = 32 << 30
_CHUNK = 1 << 20
_MAX_MANIFEST_BYTES = 16 << 20
MANIFEST = "manifest.json"
#: Engines a bundle can name: 3D registration of the atlases, the RRL-MedSAM network, or an SFR
#: study model (a MONAI 3D network, SAMFewShotLib.sfr; its atlas is the labelled volume).
ENGINES = ("registration", "rrl_medsam", "sfr")


@dataclass(frozen=True)
class AtlasLabel:
    """One structure of an atlas.

    Attributes:
        value: label value in the atlas label maps (> 0).
        name: structure name ("liver").
        color: (r, g, b) in [0, 1].
        terminology: Slicer terminology entry string, or None.
    """

    value: int
    name: str
    color: tuple[float, float, float]
    terminology: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, int) or self.value <= 0:
            raise InputError(f"Label value must be a positive integer, not {self.value!r}")
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"Label {self.value}: name must be a non-empty string, not {self.name!r}")
        try:
            color = tuple(float(c) for c in self.color)
        except (TypeError, ValueError):
            raise InputError(f"Label {self.value}: colour must be 3 numbers in [0, 1], not {self.color!r}") from None
        if len(color) != 3 or not all(0.0 <= c <= 1.0 for c in color):
            raise InputError(f"Label {self.value}: colour must be 3 numbers in [0, 1], not {self.color!r}")
        object.__setattr__(self, "color", color)
        if self.terminology is not None and not isinstance(self.terminology, str):
            raise InputError(f"Label {self.value}: terminology must be a string or null, not {self.terminology!r}")

    def to_segment(self) -> Segment:
        """The :class:`Segment` of this label (name, colour, terminology kept)."""
        return Segment(value=self.value, name=self.name, color=self.color, terminology=self.terminology)

    def as_json(self) -> dict:
        return {"value": self.value, "name": self.name, "color": list(self.color), "terminology": self.terminology}

    @classmethod
    def from_json(cls, entry) -> AtlasLabel:
        """The label of a manifest / --labels-json entry ``{"value", "name", "color", "terminology"}``."""
        if not isinstance(entry, dict) or not {"value", "name", "color"} <= set(entry):
            raise InputError(f"A label must be an object with value, name and color, not {entry!r}")
        return cls(entry["value"], entry["name"], entry["color"], entry.get("terminology"))


def labels_from_json(entries) -> tuple[AtlasLabel, ...]:
    """Labels of a JSON list of label objects; ValueError for a bad entry or a repeated value."""
    if not isinstance(entries, list):
        raise InputError(f"Labels must be a JSON list of label objects, not {type(entries).__name__}")
    labels = tuple(AtlasLabel.from_json(entry) for entry in entries)
    values = [label.value for label in labels]
    if len(set(values)) != len(values):
        raise InputError(f"Label values must be unique, not {values}")
    return labels


def labels_from_atlases(atlases: Sequence[tuple[Volume, LabelVolume]]) -> tuple[AtlasLabel, ...]:
    """A label per value present in any atlas label map, with the segment table's name, colour
    and terminology where it has them (else ``label_<value>`` and a default colour)."""
    values = sorted({value for _, labels in atlases for value in labels.label_values()})
    out = []
    for n, value in enumerate(values):
        segment = next((labels.segment(value) for _, labels in atlases
                        if any(s.value == value for s in labels.segments)), None)
        segment = segment or Segment(value=value)
        out.append(
            AtlasLabel(
                value=value,
                name=segment.name or f"label_{value}",
                color=segment.color if segment.color is not None else DEFAULT_COLORS[n % len(DEFAULT_COLORS)],
                terminology=segment.terminology,
            )
        )
    return tuple(out)


def _sha256(path: Path) -> str:
    return sha256_file(path)


def _check_member_name(member: object) -> str:
    """``member`` when it is a plain file name (no folders, not hidden); ValueError otherwise."""
    if not isinstance(member, str) or not member or "/" in member or "\\" in member or member.startswith("."):
        raise ValueError(f"A weights member name must be a plain file name, not {member!r}")
    return member


def _replace_folder(built: Path, out: Path) -> None:
    """Move the finished folder ``built`` to ``out``, replacing an existing bundle folder there."""
    if not out.exists():
        os.replace(built, out)
        return
    old = out.with_name(f".{out.name}-{uuid.uuid4().hex[:12]}.old")
    os.replace(out, old)
    try:
        os.replace(built, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def check_bundle_output(out: Path) -> None:
    """ValueError unless a bundle can be written at ``out`` (zip file or folder)."""
    if not out.parent.is_dir():
        raise InputError(f"{out}: the output folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise InputError(f"{out}: the output folder {out.parent} is not writable")
    if out.suffix.lower() == ".zip":
        if out.is_dir():
            raise InputError(f"{out}: is a folder, not a zip file name")
    elif out.is_file():
        raise InputError(f"{out}: is a file; a folder bundle needs a folder name (or end the name with .zip)")
    elif out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise InputError(f"{out}: is a folder that is not empty and holds no atlas bundle; choose another output")


def write_bundle(
    output: PathLike,
    *,
    name: str,
    atlases: Sequence[tuple[Volume, LabelVolume]],
    labels: Sequence[AtlasLabel] | None = None,
    modality: str = "CT",
    normalisation: dict | None = None,
    engine: str = "registration",
    parameters: dict | None = None,
    weights: Mapping[str, PathLike] | None = None,
) -> Path:
    """Write an atlas bundle atomically; returns its path.

    Args:
        output: ``*.zip`` for a zip file, anything else for a folder (an existing bundle folder
            or zip is replaced; a non-empty folder that is no bundle is refused).
        name: the atlas name shown to users.
        atlases: (image, labels) pairs; arrays (z, y, x), each pair on one grid (spacing, origin,
            direction kept in the files).
        labels: the label table; default: every value present in the atlases, named and
            coloured from their segment tables.
        modality: "CT", "MR", ... (free text, recorded).
        normalisation: see :mod:`.normalisation`; default per modality.
        engine: "registration", "rrl_medsam" or "sfr".
        parameters: the engine's parameters (JSON-able), recorded as given.
        weights: member name (plain file name) -> file to copy into ``weights/``; sha256 recorded.

    Raises:
        ValueError: bad name, engine, labels, normalisation, no atlas, an atlas whose image and
            labels grids differ, a missing weights file, an unusable output path.
    """
    out = Path(output).expanduser()
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"The atlas name must be a non-empty string, not {name!r}")
    if engine not in ENGINES:
        raise ValueError(f"The engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if not atlases:
        raise ValueError("A bundle needs at least one (image, labels) atlas")
    for i, (image, atlas_labels) in enumerate(atlases):
        image.require_same_grid(atlas_labels.volume, f"atlas {i} labels")
    labels = tuple(labels) if labels is not None else labels_from_atlases(atlases)
    labels_from_json([label.as_json() for label in labels])  # unique values
    normalisation = check_normalisation(normalisation if normalisation is not None else default_normalisation(modality))
    weight_files = {_check_member_name(member): Path(path) for member, path in (weights or {}).items()}
    for member, path in weight_files.items():
        if not path.is_file():
            raise ValueError(f"Weights file {path} (member {member!r}) does not exist")
    try:
        json.dumps(parameters or {})
    except TypeError as error:
        raise InputError(f"Engine parameters must be JSON-serialisable: {error}") from None
    check_bundle_output(out)

    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as temp:
        built = Path(temp) / "bundle"
        (built / "atlases").mkdir(parents=True)
        members: dict[str, str] = {}
        entries = []
        for i, (image, atlas_labels) in enumerate(atlases):
            entry = {"image": f"atlases/atlas_{i}_image.nii.gz", "labels": f"atlases/atlas_{i}_labels.nii.gz"}
            write_volume(image, built / entry["image"])
            write_labels(LabelVolume(atlas_labels.volume), built / entry["labels"])
            entries.append(entry)
        weight_entries = []
        if weight_files:
            (built / "weights").mkdir()
        for member, path in weight_files.items():
            shutil.copyfile(path, built / "weights" / member)
            weight_entries.append({"member": member, "sha256": _sha256(built / "weights" / member)})
        for entry in entries:
            for member in entry.values():
                members[member] = _sha256(built / member)
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "modality": modality,
            "normalisation": normalisation,
            "labels": [label.as_json() for label in labels],
            "engine": engine,
            "parameters": parameters or {},
            "atlases": entries,
            "weights": weight_entries,
            "sha256": members,
        }
        (built / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.suffix.lower() == ".zip":

            def write_zip(archive: Path) -> None:
                with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as handle:
                    for file in sorted(p for p in built.rglob("*") if p.is_file()):
                        handle.write(file, file.relative_to(built).as_posix())

            write_atomic(out, write_zip, suffix=".zip")
        else:
            _replace_folder(built, out)
    return out


#: Private extractions of zip bundles, removed by :meth:`AtlasBundle.close` or at exit.
_EXTRACTIONS: set[str] = set()


@atexit.register
def _remove_extractions() -> None:
    for folder in list(_EXTRACTIONS):
        shutil.rmtree(folder, ignore_errors=True)
    _EXTRACTIONS.clear()


class AtlasBundle:
    """A validated bundle (see :func:`load_bundle`); members are read from ``root``: the folder
    itself, or a private extraction of a zip bundle, which stays until :meth:`close` (or the
    end of the process), so paths from :meth:`weights_path` remain valid meanwhile. Usable as a
    context manager (closes on exit)."""

    def __init__(self, path: Path, manifest: dict, root: Path) -> None:
        self.path = path
        self.root = root
        self.manifest = manifest
        self.name: str = manifest["name"]
        self.modality: str = manifest["modality"]
        self.normalisation: dict = manifest["normalisation"]
        self.labels: tuple[AtlasLabel, ...] = labels_from_json(manifest["labels"])
        self.engine: str = manifest["engine"]
        self.parameters: dict = manifest["parameters"]
        self.n_atlases: int = len(manifest["atlases"])

    def close(self) -> None:
        """Remove the private extraction of a zip bundle (nothing for a folder bundle)."""
        if str(self.root) in _EXTRACTIONS:
            shutil.rmtree(self.root, ignore_errors=True)
            _EXTRACTIONS.discard(str(self.root))

    def __enter__(self) -> AtlasBundle:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def segments(self) -> tuple[Segment, ...]:
        """The label table as :class:`Segment` objects (for label maps built from this atlas)."""
        return tuple(label.to_segment() for label in self.labels)

    def atlas(self, index: int) -> tuple[Volume, LabelVolume]:
        """Atlas ``index``: its image and label map (segments carry name, colour, terminology)."""
        if not 0 <= index < self.n_atlases:
            raise ValueError(f"Atlas index must be in [0, {self.n_atlases - 1}], not {index}")
        entry = self.manifest["atlases"][index]
        image = read_volume(self.root / entry["image"])
        labels = read_labels(self.root / entry["labels"])
        image.require_same_grid(labels.volume, f"atlas {index} labels")
        return image, LabelVolume(labels.volume, self.segments())

    def weights_path(self, member: str) -> Path:
        """The file of weights ``member`` (sha256 verified on load and again here)."""
        for entry in self.manifest["weights"]:
            if entry["member"] == member:
                path = self.root / "weights" / member
                _verify(self.path, f"weights/{member}", path, entry["sha256"])
                return path
        known = ", ".join(e["member"] for e in self.manifest["weights"]) or "none"
        raise InputError(f"{self.path}: the bundle holds no weights member {member!r} (it holds: {known})")

    def info(self) -> dict:
        """What ``samfewshot atlas info --json`` prints."""
        return {
            "format_version": self.manifest["format_version"],
            "name": self.name,
            "modality": self.modality,
            "engine": self.engine,
            "atlases": self.n_atlases,
            "labels": [label.as_json() for label in self.labels],
            "weights": [{"member": e["member"], "sha256": e["sha256"]} for e in self.manifest["weights"]],
            "parameters": self.parameters,
            "normalisation": self.normalisation,
        }


def _verify(bundle: Path, member: str, path: Path, expected: str) -> None:
    if not path.is_file():
        raise InputError(f"{bundle}: not a valid atlas bundle: missing member {member}")
    actual = _sha256(path)
    if actual != expected:
        raise InputError(
            f"{bundle}: member {member} is corrupt: its sha256 {actual[:16]}... differs from the manifest's "
            f"{str(expected)[:16]}..."
        )


def _require(bundle: Path, manifest: dict, key: str, kind: type) -> None:
    if key not in manifest:
        raise InputError(f"{bundle}: not a valid atlas bundle: manifest.json has no {key!r}")
    if not isinstance(manifest[key], kind):
        raise InputError(f"{bundle}: manifest.json {key!r} must be a {kind.__name__}, not {manifest[key]!r}")


def _check_manifest(bundle: Path, manifest) -> dict:
    """The manifest when its fields are present and well formed; one-line ValueError otherwise."""
    if not isinstance(manifest, dict):
        raise InputError(f"{bundle}: manifest.json must hold a JSON object, not {type(manifest).__name__}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(
            f"{bundle}: bundle format version {version!r} is not supported (this samfewshot reads version "
            f"{FORMAT_VERSION})"
        )
    for key, kind in (("name", str), ("modality", str), ("engine", str), ("labels", list), ("atlases", list),
                      ("parameters", dict), ("normalisation", dict), ("weights", list), ("sha256", dict)):
        _require(bundle, manifest, key, kind)
    if manifest["engine"] not in ENGINES:
        raise InputError(f"{bundle}: engine must be one of {', '.join(ENGINES)}, not {manifest['engine']!r}")
    try:
        labels_from_json(manifest["labels"])
        check_normalisation(manifest["normalisation"])
    except ValueError as error:
        raise InputError(f"{bundle}: manifest.json: {error}") from None
    if not manifest["atlases"]:
        raise InputError(f"{bundle}: not a valid atlas bundle: it lists no atlas")
    for entry in manifest["atlases"]:
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("image", "labels")):
            raise InputError(f"{bundle}: manifest.json atlas entries need 'image' and 'labels' members, not {entry!r}")
        for member in (entry["image"], entry["labels"]):
            if member not in manifest["sha256"]:
                raise InputError(f"{bundle}: manifest.json gives no sha256 for member {member}")
    for entry in manifest["weights"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise InputError(f"{bundle}: manifest.json weights entries need 'member' and 'sha256', not {entry!r}")
        try:
            _check_member_name(entry.get("member"))
        except ValueError as error:
            raise InputError(f"{bundle}: manifest.json: {error}") from None
    return manifest


def _members(manifest: dict) -> dict[str, str]:
    """Every member the manifest lists (besides itself) -> its expected sha256."""
    members = {m: manifest["sha256"][m] for entry in manifest["atlases"] for m in (entry["image"], entry["labels"])}
    members.update({f"weights/{e['member']}": e["sha256"] for e in manifest["weights"]})
    for member in members:
        parts = Path(member).parts
        if Path(member).is_absolute() or ".." in parts or not parts:
            raise InputError(f"Bundle member names must be relative paths inside the bundle, not {member!r}")
    return members


def _parse_manifest(bundle: Path, text: bytes) -> dict:
    try:
        return _check_manifest(bundle, json.loads(text))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{bundle}: manifest.json is not valid JSON ({error})") from None


def _load_zip(path: Path) -> AtlasBundle:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise InputError(f"{path}: is not an atlas bundle (not a readable zip file: {error})") from None
    with archive:
        names = set(archive.namelist())
        if MANIFEST not in names:
            raise InputError(f"{path}: not a valid atlas bundle: missing member {MANIFEST}")
        if archive.getinfo(MANIFEST).file_size > _MAX_MANIFEST_BYTES:
            raise InputError(f"{path}: not a valid atlas bundle: {MANIFEST} declares more than "
                             f"{_MAX_MANIFEST_BYTES:,} bytes")
        try:
            text = archive.read(MANIFEST)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
            raise InputError(f"{path}: member {MANIFEST} is corrupt and cannot be read ({_one_line(error)})") from None
        manifest = _parse_manifest(path, text)
        try:
            members = _members(manifest)
        except ValueError as error:
            raise InputError(f"{path}: {error}") from None
        root = Path(tempfile.mkdtemp(prefix="samfewshot-atlas-"))
        _EXTRACTIONS.add(str(root))
        bundle = AtlasBundle(path, manifest, root)
        try:
            _extract(path, archive, names, members, root)
        except BaseException:
            bundle.close()
            raise
    return bundle


def max_bundle_bytes() -> int:
    """The most bytes a zip bundle's members may declare: ``$SAMFEWSHOT_MAX_BUNDLE_BYTES`` or
    :data:`DEFAULT_MAX_BUNDLE_BYTES`."""
    text = os.environ.get(MAX_BUNDLE_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_BUNDLE_BYTES
    try:
        value = int(float(text))
    except ValueError:
        raise InputError(f"{MAX_BUNDLE_BYTES_ENV} must be a number of bytes, not {text!r}") from None
    return max(0, value)


def _check_declared_sizes(path: Path, archive: zipfile.ZipFile, members: dict[str, str], root: Path) -> None:
    """InputError when the listed members declare more bytes than allowed or than fit on disk."""
    declared = sum(archive.getinfo(member).file_size for member in members if member in archive.NameToInfo)
    limit = max_bundle_bytes()
    if declared > limit:
        raise InputError(
            f"{path}: its members declare {declared:,} bytes, more than the {limit:,} allowed "
            f"(set {MAX_BUNDLE_BYTES_ENV} to change the limit); nothing extracted"
        )
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        return
    if declared > free:
        raise InputError(
            f"{path}: its members declare {declared:,} bytes but only {free:,} are free in {root.parent}; "
            "nothing extracted"
        )


def _extract(path: Path, archive: zipfile.ZipFile, names: set[str], members: dict[str, str], root: Path) -> None:
    """Extract and verify every listed member of a zip bundle into ``root``: declared sizes first
    (:func:`_check_declared_sizes`), then each member streamed with its size and sha256 checked."""
    for member in members:
        if member not in names:
            raise InputError(f"{path}: not a valid atlas bundle: missing member {member}")
    _check_declared_sizes(path, archive, members, root)
    for member, expected in members.items():
        target = root / member
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_member(path, archive, member, target, expected)


def _copy_member(path: Path, archive: zipfile.ZipFile, member: str, target: Path, expected: str) -> None:
    """Stream ``member`` to ``target``, stopping as soon as it outgrows its declared size;
    InputError for a member that cannot be read (bit flip, truncation) or whose sha256 differs."""
    declared = archive.getinfo(member).file_size
    digest = hashlib.sha256()
    size = 0
    try:
        with archive.open(member) as source, target.open("wb") as handle:
            while True:
                chunk = source.read(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > declared:
                    raise InputError(f"{path}: member {member} holds more than its declared {declared:,} bytes")
                digest.update(chunk)
                handle.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
        raise InputError(f"{path}: member {member} is corrupt and cannot be read ({_one_line(error)})") from None
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
            reason = os.strerror(error.errno).lower()
            raise OSError(error.errno, f"cannot extract member {member} of {path}: {reason}") from None
        raise InputError(f"{path}: member {member} cannot be read ({_one_line(error)})") from None
    actual = digest.hexdigest()
    if actual != expected:
        raise InputError(
            f"{path}: member {member} is corrupt: its sha256 {actual[:16]}... differs from the manifest's "
            f"{str(expected)[:16]}..."
        )


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_bundle(path: PathLike) -> AtlasBundle:
    """Open and validate a bundle (zip file or folder).

    Checks the manifest (valid JSON, supported format version, required fields), that every
    member it lists is present and that its sha256 matches.

    Raises:
        ValueError: one line naming the bundle and the problem (missing path, not a zip/folder
            bundle, bad JSON, wrong version, missing member, hash mismatch).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such atlas bundle (zip file or folder)")
    if not path.is_dir():
        check_regular(path)
        return _load_zip(path)
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        raise InputError(f"{path}: not a valid atlas bundle: missing member {MANIFEST}")
    manifest = _parse_manifest(path, manifest_file.read_bytes())
    try:
        members = _members(manifest)
    except ValueError as error:
        raise InputError(f"{path}: {error}") from None
    for member, expected in members.items():
        _verify(path, member, path / member, expected)
    return AtlasBundle(path, manifest, path)


def is_bundle(path: PathLike) -> bool:
    """True when ``path`` looks like an atlas bundle (a zip holding, or a folder with, a
    manifest.json); says nothing about its validity (:func:`load_bundle` checks that)."""
    path = Path(path).expanduser()
    if path.is_dir():
        return (path / MANIFEST).is_file()
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                return MANIFEST in archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return False
    return False


def bundle_engine(path: PathLike) -> str | None:
    """The ``engine`` its manifest names ("elastix", "rrl_medsam", "sfr", ...), read without
    verifying the members, or None when ``path`` is no readable bundle: for a caller that must
    know which packages applying it needs before loading it (:func:`load_bundle` validates)."""
    path = Path(path).expanduser()
    try:
        if path.is_dir():
            text = (path / MANIFEST).read_bytes()
        elif path.is_file() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if archive.getinfo(MANIFEST).file_size > _MAX_MANIFEST_BYTES:
                    return None
                text = archive.read(MANIFEST)
        else:
            return None
        engine = json.loads(text).get("engine")
    except (OSError, KeyError, ValueError, AttributeError, zipfile.BadZipFile):
        return None
    return engine if isinstance(engine, str) else None
