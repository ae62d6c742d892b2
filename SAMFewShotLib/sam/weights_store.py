"""The local weights cache: where checkpoints live, what was imported, verification, download.

Folder: ``$SAMFEWSHOT_HOME/weights`` if that variable is set, else the platform's user cache
folder (platformdirs: ``~/.cache/samfewshot`` on Linux, ``~/Library/Caches/samfewshot`` on
macOS, ``%LOCALAPPDATA%\\samfewshot\\Cache`` on Windows; ``~/.cache/samfewshot`` when
platformdirs is not installed). Registry files keep their published names in ``weights/``;
user imports go to ``weights/user/NAME.pth``. ``weights/records.json`` lists every imported
file: name, file, sha256, size, model type, family, source (registry entry or ``"user"``),
how it was verified, when and from where it was imported.

Nothing here touches the network except :func:`download_checkpoint`, which the user calls
explicitly (``samfewshot weights download NAME``); the HTTP transfer itself is in :mod:`.download`.
Imports copy (never move) the source, atomically; the source is only ever read. Every user error
is a one-line ValueError.
Needs no torch, except to check that a user import is a SAM checkpoint at all.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import InputError
from ..files import (  # noqa: F401 - sha256_file: callers of this module use it
    file_digests,
    fsync_file,
    read_chunks,
    sha256_file,
    write_stream_atomic,
    write_text_atomic,
)
from ..progress import CancelToken, Progress, no_progress
from .checkpoints import (
    MODEL_TYPES,
    REGISTRY,
    Checkpoint,
    entries_of_size,
    entry_for_filename,
    get_checkpoint,
    match_digest,
)
from .download import DownloadError, fetch_resumable  # noqa: F401 - DownloadError is part of this API

ENV_HOME = "SAMFEWSHOT_HOME"
RECORDS_FILE = "records.json"
USER_FOLDER = "user"
USER_SOURCE = "user"
_CHUNK = 8 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


@dataclass(frozen=True)
class WeightRecord:
    """One imported checkpoint file. ``filename`` is relative to the weights folder.

    ``verified_by``: ``sha256`` (matches the registry's SHA-256), ``md5`` (matches the
    registry's MD5; its SHA-256 was recorded on import), ``first-use`` (registry entry with no
    reference digest: SHA-256 recorded on first use), ``user`` (user import: SHA-256 recorded).
    """

    name: str
    filename: str
    sha256: str
    size: int
    model_type: str
    family: str
    source: str
    imported_at: str
    verified_by: str
    origin: str = ""

    def path(self, home: str | os.PathLike | None = None) -> Path:
        return weights_dir(home) / self.filename


@dataclass(frozen=True)
class ImportResult:
    record: WeightRecord
    path: Path
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class WeightStatus:
    """One row of ``weights list``: a registry entry (imported or not) or a user import."""

    name: str
    source: str  # "registry" | "user"
    model_type: str
    family: str
    status: str
    path: Path | None
    size: int | None
    sha256: str | None
    licence: str = ""
    url: str = ""


@dataclass(frozen=True)
class VerifyResult:
    name: str
    path: Path
    ok: bool
    expected: str | None
    actual: str | None
    message: str


# --------------------------------------------------------------------------------------------
# Folders and records


def store_home() -> Path:
    """``$SAMFEWSHOT_HOME``, else the user cache folder for ``samfewshot``."""
    env = os.environ.get(ENV_HOME, "").strip()
    if env:
        return Path(env).expanduser()
    try:
        from platformdirs import user_cache_dir
    except ImportError:
        return Path.home() / ".cache" / "samfewshot"
    return Path(user_cache_dir("samfewshot", appauthor=False))


def weights_dir(home: str | os.PathLike | None = None) -> Path:
    """The folder holding checkpoint files and ``records.json`` (not created here)."""
    return (Path(home).expanduser() if home is not None else store_home()) / "weights"


def _records_path(home) -> Path:
    return weights_dir(home) / RECORDS_FILE


def load_records(home: str | os.PathLike | None = None) -> dict[str, WeightRecord]:
    """Imported checkpoints by name (empty if nothing was imported yet)."""
    path = _records_path(home)
    if not path.exists():
        return {}
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        items = payload["checkpoints"]
        records = [WeightRecord(**item) for item in items]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(
            f"Weights records {path} are unreadable ({error}); move the file away to start afresh"
        ) from None
    return {r.name: r for r in records}


def _save_records(records: dict[str, WeightRecord], home) -> None:
    path = _records_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"version": 1, "checkpoints": [asdict(r) for r in sorted(records.values(), key=lambda r: r.name)]}
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def _put_record(record: WeightRecord, home) -> None:
    records = load_records(home)  # re-read just before writing: keeps concurrent imports' records
    records[record.name] = record
    _save_records(records, home)


def _registry_record(entry: Checkpoint, sha: str, size: int, match: bool | None, origin: str) -> WeightRecord:
    """The record of a file of registry entry ``entry`` with digest ``sha``; ``match`` is
    :func:`~.checkpoints.match_digest`'s answer (None: no reference digest, trusted on first use)."""
    return WeightRecord(
        name=entry.name,
        filename=entry.filename,
        sha256=sha,
        size=size,
        model_type=entry.model_type,
        family=entry.family,
        source=entry.name,
        imported_at=_now(),
        verified_by="sha256" if entry.sha256 is not None else ("md5" if match else "first-use"),
        origin=origin,
    )


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# --------------------------------------------------------------------------------------------
# Hashing and copying


def _copy_atomic(source: Path, target: Path, sha256: str, progress: Progress, cancel: CancelToken | None) -> None:
    """Copy ``source`` to ``target`` through a temporary file and an atomic rename, only if the
    bytes copied have this SHA-256 (else ValueError, target untouched). The source is only read."""
    target.parent.mkdir(parents=True, exist_ok=True)
    total = source.stat().st_size

    def copy(destination) -> None:
        sha = hashlib.sha256()
        done = 0
        with source.open("rb") as src:
            for chunk in read_chunks(src, cancel, _CHUNK):
                destination.write(chunk)
                sha.update(chunk)
                done += len(chunk)
                progress("copy", done, total)
        if sha.hexdigest() != sha256:
            raise InputError(f"File {source} changed while it was being imported; nothing imported")

    write_stream_atomic(target, copy)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# Import


def _mismatch_message(what, entry: Checkpoint, sha: str, md5: str | None, size: int) -> str:
    if entry.sha256 is not None:
        found, expected, kind = sha, entry.sha256, "sha256"
    else:
        found, expected, kind = md5 or "?", entry.md5 or "?", "md5"
    sizes = f" ({size} bytes, expected {entry.size})" if entry.size is not None and entry.size != size else ""
    return (
        f"File {what} does not match registry checkpoint {entry.name}: wrong {kind} {found[:16]}..., "
        f"expected {expected[:16]}...{sizes} (wrong, truncated or corrupted file)"
    )


def import_checkpoint(
    path: str | os.PathLike,
    *,
    name: str | None = None,
    model_type: str | None = None,
    home: str | os.PathLike | None = None,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> ImportResult:
    """Copy a checkpoint file into the cache and record it.

    The file is hashed; if it is a registry checkpoint (same size and digest) it is recorded
    under the registry name (a differing ``name`` is ignored, with a note). If ``name``, or the
    file's own name, is a registry name or published file name but the digest differs, that
    is a ValueError (wrong sha256). Other files are user imports: checked to be a SAM
    checkpoint (architecture inferred; ``model_type`` must agree) and recorded as ``name``
    (default: the file's stem). Importing the same file again changes nothing.
    """
    source = Path(path).expanduser()
    if not source.is_file():
        raise InputError(f"Checkpoint file not found: {source}")
    if model_type is not None and model_type not in MODEL_TYPES:
        raise InputError(f"Unknown architecture {model_type!r}; choose one of {', '.join(MODEL_TYPES)}")
    if name is not None and not _NAME.match(name):
        raise InputError(f"Checkpoint name must be letters, digits, '.', '_' or '-' (at most 64), not {name!r}")
    size = source.stat().st_size
    named_entry = None
    if name is not None and name in REGISTRY:
        named_entry = REGISTRY[name]
    elif name is None:
        named_entry = REGISTRY.get(source.stem) or entry_for_filename(source.name)
    candidates = entries_of_size(size)
    need_md5 = any(e.sha256 is None and e.md5 is not None for e in candidates + ([named_entry] if named_entry else []))
    sha, md5 = file_digests(source, md5=need_md5, progress=progress, cancel=cancel)
    notes: list[str] = []

    entry, match = None, None
    for candidate in candidates:
        if match_digest(candidate, sha, md5):
            entry, match = candidate, True
            break
    if entry is None and named_entry is not None:
        match = match_digest(named_entry, sha, md5) if named_entry.size in (None, size) else False
        if match is False:
            hint = "" if name is not None else "; to import it as your own checkpoint, pass --name"
            raise InputError(_mismatch_message(source, named_entry, sha, md5, size) + hint)
        entry = named_entry  # no reference digest: trust on first use
    if entry is not None:
        if name is not None and name != entry.name:
            notes.append(f"recognised as registry checkpoint {entry.name}; --name {name} ignored")
        if model_type is not None and model_type != entry.model_type:
            raise InputError(
                f"--model-type {model_type} contradicts registry checkpoint {entry.name}, which is {entry.model_type}"
            )
        if match is None:
            previous = load_records(home).get(entry.name)
            if previous is not None and previous.sha256 != sha:
                raise InputError(
                    f"Registry checkpoint {entry.name} was imported with sha256 {previous.sha256[:12]}... (recorded "
                    f"on first use, no reference hash) and {source} differs ({sha[:12]}...); "
                    f"run `samfewshot weights verify {entry.name}`"
                )
            inspect_model_type(source, entry.model_type)
            notes.append(f"registry checkpoint {entry.name} has no reference hash: sha256 {sha} recorded on first use")
        record = _registry_record(entry, sha, size, match, origin=str(source.resolve()))
    else:
        user_name = name if name is not None else _name_from_stem(source.stem)
        existing = load_records(home).get(user_name)
        if existing is not None and existing.sha256 != sha:
            raise InputError(
                f"A different checkpoint is already imported as {user_name} (sha256 {existing.sha256[:12]}...); "
                "choose another --name"
            )
        architecture = inspect_model_type(source, model_type)
        suffix = source.suffix if source.suffix in _SUFFIXES else ".pth"
        record = WeightRecord(
            name=user_name,
            filename=f"{USER_FOLDER}/{user_name}{suffix}",
            sha256=sha,
            size=size,
            model_type=architecture.model_type,
            family=architecture.family,
            source=USER_SOURCE,
            imported_at=_now(),
            verified_by="user",
            origin=str(source.resolve()),
        )
    return _store(source, record, home, progress, cancel, notes)


def inspect_model_type(path: Path, model_type: str | None):
    """Check that ``path`` is a SAM checkpoint (and of ``model_type``); returns its architecture."""
    try:
        from .architecture import inspect_checkpoint
    except ImportError as error:
        raise InputError(f"Checking a SAM checkpoint needs the sam extra (torch, segment-anything): {error}") from None
    from ..torch_files import check_torch_file_format

    if path.is_file() and path.stat().st_size > 0:
        check_torch_file_format(path)
    return inspect_checkpoint(path, model_type=model_type)


def _name_from_stem(stem: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:64] or "checkpoint"
    return cleaned if cleaned[0].isalnum() else f"c{cleaned}"[:64]


def _store(source: Path, record: WeightRecord, home, progress: Progress, cancel, notes: list[str]) -> ImportResult:
    target = record.path(home)
    existing = load_records(home).get(record.name)
    if _same_file(source, target):
        notes.append("the file is already the cached copy")
    elif (
        existing is not None
        and existing.sha256 == record.sha256
        and target.is_file()
        and target.stat().st_size == record.size
    ):
        notes.append(f"already imported as {record.name}; nothing copied")
        return ImportResult(existing, target, tuple(notes))
    else:
        _copy_atomic(source, target, record.sha256, progress, cancel)
    _put_record(record, home)
    return ImportResult(record, target, tuple(notes))


# --------------------------------------------------------------------------------------------
# Listing, verifying, resolving


def _part_path(entry: Checkpoint, home) -> Path:
    return weights_dir(home) / (entry.filename + ".part")


def list_weights(home: str | os.PathLike | None = None) -> list[WeightStatus]:
    """Every registry entry with its status, then every user import. Cheap: no file is re-hashed
    (``verify_weights`` does that); a size change since import shows as a mismatch."""
    records = load_records(home)
    rows: list[WeightStatus] = []
    for entry in REGISTRY.values():
        record = records.get(entry.name)
        path, size, sha = None, entry.size, entry.sha256
        if record is None:
            part = _part_path(entry, home)
            if part.is_file():
                status = f"partial download ({part.stat().st_size} of {entry.size or '?'} bytes)"
            else:
                status = "not present"
        else:
            path, size, sha = record.path(home), record.size, record.sha256
            if not path.is_file():
                status = "missing file (recorded, but deleted)"
            elif path.stat().st_size != record.size:
                status = "present, hash mismatch (file changed since import)"
            elif record.verified_by == "sha256" and entry.sha256 == record.sha256:
                status = "present, verified"
            elif record.verified_by == "md5":
                status = "present, verified (md5)"
            elif record.verified_by == "first-use" and entry.sha256 is None:
                status = "present, no reference hash (sha256 recorded on first use)"
            else:
                status = "present, hash mismatch"
        rows.append(
            WeightStatus(
                name=entry.name,
                source="registry",
                model_type=entry.model_type,
                family=entry.family,
                status=status,
                path=path,
                size=size,
                sha256=sha,
                licence=entry.licence,
                url=entry.url,
            )
        )
    for record in sorted(records.values(), key=lambda r: r.name):
        if record.source != USER_SOURCE:
            continue
        path = record.path(home)
        if not path.is_file():
            status = "missing file (recorded, but deleted)"
        elif path.stat().st_size != record.size:
            status = "present, hash mismatch (file changed since import)"
        else:
            status = "present (user import)"
        rows.append(
            WeightStatus(
                name=record.name,
                source="user",
                model_type=record.model_type,
                family=record.family,
                status=status,
                path=path,
                size=record.size,
                sha256=record.sha256,
                url=record.origin,
            )
        )
    return rows


def verify_weights(
    name: str | None = None,
    *,
    home: str | os.PathLike | None = None,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> list[VerifyResult]:
    """Re-hash imported checkpoints (all, or the one called ``name``) and compare with the
    registry's digest or, where there is none, the SHA-256 recorded at import."""
    records = load_records(home)
    if name is not None:
        if name not in records:
            if name in REGISTRY:
                raise InputError(
                    f"Checkpoint {name} is not in the weights cache {weights_dir(home)}; import it with "
                    f"`samfewshot weights import PATH` or `samfewshot weights download {name}`"
                )
            raise InputError(f"No imported checkpoint is called {name!r}; see `samfewshot weights list`")
        selected = [records[name]]
    else:
        selected = sorted(records.values(), key=lambda r: r.name)
    return [_verify_one(r, home, progress, cancel) for r in selected]


def _verify_one(record: WeightRecord, home, progress: Progress, cancel) -> VerifyResult:
    path = record.path(home)
    entry = REGISTRY.get(record.source) if record.source != USER_SOURCE else None
    if not path.is_file():
        return VerifyResult(record.name, path, False, record.sha256, None, "file missing")
    use_md5 = entry is not None and entry.sha256 is None and entry.md5 is not None
    sha, md5 = file_digests(path, md5=use_md5, progress=progress, cancel=cancel)
    if entry is not None and entry.sha256 is not None:
        ok = sha == entry.sha256
        return VerifyResult(
            record.name,
            path,
            ok,
            entry.sha256,
            sha,
            "matches the registry sha256" if ok else "sha256 differs from the registry",
        )
    if use_md5:
        assert entry is not None  # use_md5 implies a registry entry
        ok = md5 == entry.md5 and sha == record.sha256
        message = (
            "matches the registry md5 (no published sha256)"
            if ok
            else "md5/sha256 differ from the registry md5 and the recorded sha256"
        )
        return VerifyResult(record.name, path, ok, record.sha256, sha, message)
    ok = sha == record.sha256
    if entry is not None:
        message = (
            "no reference hash; matches the sha256 recorded on first use"
            if ok
            else "differs from the sha256 recorded on first use (no reference hash)"
        )
    else:
        message = "matches the sha256 recorded at import" if ok else "differs from the sha256 recorded at import"
    return VerifyResult(record.name, path, ok, record.sha256, sha, message)


def resolve_checkpoint(spec: str | os.PathLike, home: str | os.PathLike | None = None) -> tuple[Path, str | None]:
    """A ``--checkpoint`` value (a file path, or the name of a registry entry or user import) to
    the file and the SHA-256 it must have (None when no reference is known).

    A path that is a cached file, or that carries a registry checkpoint's published file name,
    gets that checkpoint's digest. A registry name that is not imported is a ValueError telling
    how to import or download it.
    """
    text = os.fspath(spec)
    path = Path(text).expanduser()
    records = load_records(home)
    if path.is_file():
        for record in records.values():
            if _same_file(path, record.path(home)):
                return path, _expected_digest(record)
        entry = entry_for_filename(path.name)
        return path, entry.sha256 if entry is not None else None
    if text in records:
        record = records[text]
        cached = record.path(home)
        if not cached.is_file():
            raise InputError(f"Checkpoint {text} is recorded but its file {cached} is missing; import it again")
        return cached, _expected_digest(record)
    if text in REGISTRY:
        raise InputError(
            f"Checkpoint {text} is not in the weights cache {weights_dir(home)}; import it with "
            f"`samfewshot weights import PATH` or download it with `samfewshot weights download {text}`"
        )
    if os.sep in text or (os.altsep and os.altsep in text) or path.suffix in _SUFFIXES:
        raise InputError(f"Checkpoint file not found: {text}")
    known = list(REGISTRY) + [n for n in records if n not in REGISTRY]
    raise InputError(f"Unknown checkpoint {text!r}: not a file, and not one of {', '.join(known)}")


def _expected_digest(record: WeightRecord) -> str:
    entry = REGISTRY.get(record.source)
    if entry is not None and entry.sha256 is not None:
        return entry.sha256
    return record.sha256


def describe_checkpoint(path: Path, sha256: str, home: str | os.PathLike | None = None) -> tuple[str, str | None]:
    """Name and family for a loaded file: its record, else the registry entry with that
    digest, else the file's stem and no family."""
    for record in load_records(home).values():
        if record.sha256 == sha256 and _same_file(path, record.path(home)):
            return record.name, record.family
    for entry in REGISTRY.values():
        if entry.sha256 == sha256:
            return entry.name, entry.family
    return Path(path).stem, None


# --------------------------------------------------------------------------------------------
# Download


def download_checkpoint(
    name: str,
    *,
    home: str | os.PathLike | None = None,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
    chunk_size: int = 1 << 20,
    timeout: float = 60.0,
) -> ImportResult:
    """Download registry checkpoint ``name`` into the cache: HTTP(S), resumable.

    Bytes go to ``FILENAME.part``; a later call resumes it with a ``Range`` request (a server
    that ignores ranges restarts it). Cancel is honoured between chunks and keeps the partial
    file for resuming. The finished file is verified against the registry digest before the
    atomic rename; on mismatch the partial file is deleted and a ValueError raised. An entry
    without a reference digest is recorded with the SHA-256 computed (trust on first use).
    """
    entry = get_checkpoint(name)
    scheme = urllib.parse.urlsplit(entry.url).scheme.lower()
    if scheme not in ("http", "https"):
        raise InputError(f"Checkpoint {name} URL {entry.url!r} is not http(s); refusing to download it")
    target = weights_dir(home) / entry.filename
    record = load_records(home).get(entry.name)
    if record is not None and target.is_file() and target.stat().st_size == record.size:
        return ImportResult(record, target, ("already present; nothing downloaded",))
    part = _part_path(entry, home)
    part.parent.mkdir(parents=True, exist_ok=True)
    fetch_resumable(entry, part, progress=progress, cancel=cancel, chunk_size=chunk_size, timeout=timeout)
    use_md5 = entry.sha256 is None and entry.md5 is not None
    sha, md5 = file_digests(part, md5=use_md5, progress=progress, cancel=cancel, stage="verify")
    match = match_digest(entry, sha, md5)
    size = part.stat().st_size
    if match is False:
        part.unlink(missing_ok=True)
        raise InputError(_mismatch_message(f"downloaded from {entry.url}", entry, sha, md5, size) + "; deleted it")
    notes = []
    if match is None:
        notes.append(f"{entry.name} has no reference hash: sha256 {sha} recorded on first use")
    fsync_file(part)
    os.replace(part, target)
    record = _registry_record(entry, sha, size, match, origin=entry.url)
    _put_record(record, home)
    return ImportResult(record, target, tuple(notes))
