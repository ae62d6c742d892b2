"""``samfewshot weights list | import | verify``: the command lines the Slicer module runs as
child processes (never blocking Slicer), and what it reads from their output.

``weights list --json`` prints one JSON object ``{"weights_dir": str, "checkpoints": [row, ...]}``,
each row with ``name``, ``status`` (``"present, verified"``, ``"not present"``, ...),
``model_type``, ``family``, ``licence``, ``path``, ``size`` (bytes), ``sha256``, ``url`` (see
``SAMFewShotLib.cli_weights``). ``import`` and ``verify`` print a few readable lines on stdout
and progress as JSON lines (hashing a checkpoint of several GB takes a while).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from .commands import PathLike, base_command
from .progress_lines import parse_json_output


@dataclass(frozen=True)
class CheckpointRow:
    """One checkpoint of ``samfewshot weights list --json``.

    Attributes:
        name: registry or import name (what ``--checkpoint`` takes).
        status: the CLI's status text.
        model_type: ``vit_b``, ``vit_l``, ``vit_h`` or ``vit_t`` ("" when unknown).
        family: ``sam``, ``medsam``, ``mobile_sam``, ... ("" when unknown).
        licence: the licence of the weights ("" when unknown).
        size: file size in bytes (None when not present).
        url: where the registry downloads it from ("" for imported files).
    """

    name: str
    status: str
    model_type: str = ""
    family: str = ""
    licence: str = ""
    size: int | None = None
    url: str = ""

    @property
    def downloadable(self) -> bool:
        """A registry entry with a download address that is not usable yet (Download offered)."""
        return bool(self.url) and not self.usable

    def download_question(self) -> str:
        """What the module asks before ``weights download``: name, size, licence, address."""
        size = "unknown size" if self.size is None else f"{self.size / 1e6:.0f} MB"
        return (f"Download the SAM checkpoint '{self.name}' ({self.model_type or 'unknown'} {self.family}, {size})?\n\n"
                f"Licence: {self.licence or 'unknown'}. Using the weights means accepting it.\n"
                f"From: {self.url}\n\nThe file is checked against the registry's sha256 before it is used.")

    @property
    def usable(self) -> bool:
        """Present and not failing its hash check (the engines refuse a changed file)."""
        return self.status.startswith("present") and "mismatch" not in self.status

    def tooltip(self) -> str:
        """``"sam_vit_b: vit_b sam, 375.0 MB, licence Apache-2.0 (present, verified)"``."""
        kind = f"{self.model_type} {self.family}".strip()
        parts = [kind] if kind else []
        if self.size is not None:
            parts.append(f"{self.size / 1e6:.1f} MB")
        parts.append(f"licence {self.licence or 'unknown'}")
        return f"{self.name}: {', '.join(parts)} ({self.status})"


def weights_list_command(python_executable: PathLike) -> list[str]:
    """argv of ``samfewshot weights list --json`` (stdout: one JSON object, read it with
    :func:`parse_weights_list`). Progress is off so stdout holds only the JSON."""
    return base_command(python_executable, "weights", "list", "--json", "--progress", "none")


def weights_import_command(python_executable: PathLike, path: PathLike, name: str | None = None) -> list[str]:
    """argv of ``samfewshot weights import PATH [--name NAME] --progress json``: copy a checkpoint
    file into the weights cache (the file itself is not changed), sha256 checked.

    Raises:
        ValueError: an empty path or name.
    """
    text = str(path).strip() if path is not None else ""
    if not text:
        raise ValueError(f"The checkpoint path must not be empty, not {path!r}")
    argv = base_command(python_executable, "weights", "import", text)
    if name is not None:
        if not name.strip():
            raise ValueError(f"The checkpoint name must not be empty, not {name!r}")
        argv += ["--name", name.strip()]
    return argv + ["--progress", "json"]


def weights_download_command(python_executable: PathLike, name: str) -> list[str]:
    """argv of ``samfewshot weights download NAME --progress json``: fetch a registry checkpoint
    (resumable, sha256-verified); run only after the user agreed to its licence and size.

    Raises:
        ValueError: an empty name.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"The checkpoint name must not be empty, not {name!r}")
    return base_command(python_executable, "weights", "download", name.strip(), "--progress", "json")


def weights_verify_command(python_executable: PathLike, name: str | None = None) -> list[str]:
    """argv of ``samfewshot weights verify [NAME] --progress json``: re-hash the imported
    checkpoints (all of them when ``name`` is None). It exits 2 naming those that fail."""
    argv = base_command(python_executable, "weights", "verify")
    if name:
        argv.append(name)
    return argv + ["--progress", "json"]


def parse_weights_list(weights_list_json: str | Mapping) -> list[CheckpointRow]:
    """Every checkpoint row of the output of :func:`weights_list_command`, in its order.

    Raises:
        ValueError: the output is not that JSON object (one line saying why).
    """
    rows = parse_json_output(weights_list_json, "weights list").get("checkpoints")
    if not isinstance(rows, list):
        raise ValueError("The weights list has no 'checkpoints' list")
    result = []
    for row in rows:
        if not isinstance(row, Mapping) or "name" not in row:
            continue
        size = row.get("size")
        result.append(
            CheckpointRow(
                name=str(row["name"]),
                status=str(row.get("status") or ""),
                model_type=str(row.get("model_type") or ""),
                family=str(row.get("family") or ""),
                licence=str(row.get("licence") or ""),
                size=int(size) if isinstance(size, (int, float)) and not isinstance(size, bool) else None,
                url=str(row.get("url") or ""),
            )
        )
    return result


def present_checkpoints(weights_list_json: str | Mapping) -> list[str]:
    """Names of the usable checkpoints (:attr:`CheckpointRow.usable`) in the output of
    :func:`weights_list_command`. Raises ValueError as :func:`parse_weights_list`."""
    return [row.name for row in parse_weights_list(weights_list_json) if row.usable]


def command_message(stdout_lines: Iterable[str], default: str) -> str:
    """The readable answer of ``weights import`` / ``verify``: its non-empty stdout lines joined
    by newlines (progress lines are already taken out by the process runner), or ``default``."""
    lines = [line.rstrip() for line in stdout_lines if line.strip()]
    return "\n".join(lines) or default
