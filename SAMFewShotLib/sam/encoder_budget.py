"""The encoder budget: how many slices a run will encode, how many are cached, and the expected
seconds, from this machine's own earlier measurement of the same encoder.

Measurements live in one small JSON file in the embedding cache's folder (by default
``embeddings/encoder_seconds.json`` in the SAMFewShot home: ``$SAMFEWSHOT_HOME``, else the user
cache folder, e.g. ``~/.cache/samfewshot/embeddings/encoder_seconds.json`` on Linux), written atomically through
``files.write_json_atomic``. One record per encoder key (architecture class and size, precision
or runtime, device, threads): the seconds per slice of the latest run that encoded slices. The
first run of an encoder on a machine has no estimate yet; it records one.

File format::

    {"version": 1, "encoders": {"<key>": {"seconds_per_slice": 3.2, "slices": 17, "measured": "2026-12-04T03:50:00Z"}}}
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

#: File name of the measurements, in the embedding cache's folder.
FILE_NAME = "encoder_seconds.json"
#: ``progress`` event name of the budget (``--progress json``: ``{"event": EVENT, ...}``).
EVENT = "SAM encoder budget"


def timings_path(embedding_dir: str | Path) -> Path:
    """The measurements file of an embedding cache folder: ``<folder>/encoder_seconds.json``."""
    return Path(embedding_dir).expanduser() / FILE_NAME


def encoder_key(image_encoder, precision: str, device: str, threads: int, name: str | None = None) -> str:
    """What the seconds per slice depend on, as one string, e.g. ``"vit_b/onnx-fp32/cpu/2threads"``,
    or without a name ``"ImageEncoderViT-89.7M/fp32/cpu/2threads"``.

    Args:
        image_encoder: the torch image encoder module (without ``name``, its class and parameter
            count name the architecture; an ONNX runtime runs the same architecture).
        precision: the embedding precision tag ("fp32", "bf16", "onnx-fp32", "onnx-int8").
        device: "cpu" or "cuda".
        threads: CPU threads the encoder runs with.
        name: the architecture's registry name (vit_b, vit_t, ...) when known.
    """
    if name is None:
        parameters = sum(p.numel() for p in image_encoder.parameters())
        name = f"{type(image_encoder).__name__}-{parameters / 1e6:.1f}M"
    return f"{name}/{precision}/{device}/{threads}threads"


def measured_seconds_per_slice(model_type: str, path: str | Path | None = None) -> float | None:
    """This machine's fastest measured CPU seconds per slice of architecture ``model_type`` (any
    runtime, any thread count), None when never measured here.

    Args:
        model_type: vit_b, vit_l, vit_h, vit_t (the ``name`` part of :func:`encoder_key`).
        path: the measurements file (None: the default embedding cache's).
    """
    if path is None:
        from .weights_store import store_home  # as embedding_cache.default_embedding_dir, without torch

        path = timings_path(store_home() / "embeddings")
    timings = EncoderTimings(path)
    found = [
        value
        for key in timings.keys()
        if key.startswith(f"{model_type}/") and "/cpu/" in key
        for value in [timings.seconds_per_slice(key)]
        if value is not None
    ]
    return min(found) if found else None


def cpu_run_question(model_type: str, slice_count: int, seconds_per_slice: float, threshold_seconds: float = 60.0):
    """The question before a SAM run on the CPU from this machine's measurement, or None when it
    would take under ``threshold_seconds`` (just run it)."""
    seconds = slice_count * seconds_per_slice
    if seconds < threshold_seconds:
        return None
    return (
        f"On this machine's CPU, the {model_type} image encoder needs about {format_seconds(seconds)} for up to "
        f"{slice_count} slices to encode ({seconds_per_slice:.1f} s per slice, measured here; slices already "
        "encoded are cached and cost nothing). A lighter model (mobile_sam), a GPU or an engine without "
        f"weights (register, interpolate) is much faster. Run {model_type} anyway?"
    )


@dataclass(frozen=True)
class EncodeBudget:
    """What a run will encode, before it starts.

    Attributes:
        to_encode: slices not cached yet (each costs one encoder pass).
        cached: slices found in the embedding cache.
        encoder: the encoder key (:func:`encoder_key`).
        seconds_per_slice: this machine's measured seconds per slice for that key, None when
            never measured here.
        store: the measurements file (None: measurements are not kept).
    """

    to_encode: int
    cached: int
    encoder: str
    seconds_per_slice: float | None = None
    store: Path | None = None

    @property
    def expected_seconds(self) -> float | None:
        """to_encode x seconds per slice, None without a measurement."""
        return None if self.seconds_per_slice is None else self.to_encode * self.seconds_per_slice

    def message(self) -> str:
        """One line for people: ``"120 slices to encode (30 cached), expected 6 min 0 s (3.00 s per
        slice, measured on this machine)"``."""
        head = f"{self.to_encode} slices to encode ({self.cached} cached)"
        if self.to_encode == 0:
            return head + ", no encoder time"
        if self.seconds_per_slice is None:
            return head + ", no estimate yet (first run of this encoder on this machine measures it)"
        return (
            f"{head}, expected {format_seconds(self.expected_seconds or 0.0)} "
            f"({self.seconds_per_slice:.2f} s per slice, measured on this machine)"
        )

    def as_dict(self) -> dict:
        """JSON-ready fields (the ``--progress json`` event and the report)."""
        return {
            "slices_to_encode": self.to_encode,
            "slices_cached": self.cached,
            "expected_seconds": self.expected_seconds,
            "seconds_per_slice": self.seconds_per_slice,
            "encoder": self.encoder,
            "measurements": None if self.store is None else str(self.store),
            "message": self.message(),
        }


def format_seconds(seconds: float) -> str:
    """``"45 s"`` below a minute, ``"6 min 5 s"`` below an hour, ``"1 h 2 min"`` above."""
    whole = int(round(max(0.0, seconds)))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


class EncoderTimings:
    """This machine's seconds per slice per encoder key, in one JSON file (see the module docstring).

    Args:
        path: the JSON file; None keeps nothing (no estimate, nothing recorded).
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = None if path is None else Path(path)

    def _read(self) -> dict:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            payload = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # an unreadable or damaged file only costs the estimate
        encoders = payload.get("encoders") if isinstance(payload, dict) else None
        return encoders if isinstance(encoders, dict) else {}

    def keys(self) -> list[str]:
        """The encoder keys measured here."""
        return list(self._read())

    def seconds_per_slice(self, key: str) -> float | None:
        """The recorded seconds per slice of ``key``, None when never measured (or unreadable)."""
        record = self._read().get(key)
        value = record.get("seconds_per_slice") if isinstance(record, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            return float(value)
        return None

    def record(self, key: str, seconds: float, slices: int) -> None:
        """Keep ``seconds / slices`` as ``key``'s measurement (replacing an older one).

        Nothing is written without a path, for no slices or a non-positive time; a folder that
        cannot be written costs the record, never the run.
        """
        from ..files import write_json_atomic

        if self.path is None or slices < 1 or not seconds > 0:
            return
        encoders = self._read()
        encoders[key] = {
            "seconds_per_slice": seconds / slices,
            "slices": int(slices),
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(str(self.path), {"version": 1, "encoders": encoders})
        except OSError:
            pass


class BudgetRecorder:
    """A progress display that passes every call and event on to ``progress`` and keeps the
    :data:`EVENT` budgets of the :func:`~.encoder.encode_slices` calls made through it, for
    engines whose encoding is spread over several calls (fewshot: the annotated slices, then the
    slices propagation reaches). Other attributes are ``progress``'s own."""

    def __init__(self, progress) -> None:
        self.progress = progress
        self.budgets: list[dict] = []

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.progress(stage, done, total)

    def event(self, name: str, fields: dict) -> None:
        from ..progress import report_event

        if name == EVENT:
            self.budgets.append(dict(fields))
        report_event(self.progress, name, fields)

    def __getattr__(self, name: str):
        return getattr(self.progress, name)

    def counters(self) -> dict:
        """The report's ``budget_*`` counters summed over the budgets seen (empty when none):
        slices to encode and cached, expected seconds (None when any call with slices to encode
        had no measurement), the first measured seconds per slice and encoder key, and
        ``budget_encode_calls`` (the budgets summed)."""
        if not self.budgets:
            return {}
        expected = [b.get("expected_seconds") for b in self.budgets if b.get("slices_to_encode")]
        per_slice = [b["seconds_per_slice"] for b in self.budgets if b.get("seconds_per_slice") is not None]
        return {
            "budget_slices_to_encode": sum(int(b.get("slices_to_encode") or 0) for b in self.budgets),
            "budget_slices_cached": sum(int(b.get("slices_cached") or 0) for b in self.budgets),
            "budget_expected_seconds": None if None in expected else float(sum(e or 0.0 for e in expected)),
            "budget_seconds_per_slice": per_slice[0] if per_slice else None,
            "budget_encoder": self.budgets[0].get("encoder"),
            "budget_encode_calls": len(self.budgets),
        }


def pass_budget_counters(model_type: str, passes: int, path: str | Path | None = None) -> dict:
    """``budget_*`` counters of an engine that runs the image encoder itself, uncached (meta):
    ``passes`` encoder passes at this machine's fastest measured seconds per slice of
    ``model_type`` (:func:`measured_seconds_per_slice`; None: never measured here). Forward
    passes only: passes with gradients (online adaptation) cost more, so the expected seconds
    are a lower bound."""
    seconds = measured_seconds_per_slice(model_type, path)
    return {
        "budget_slices_to_encode": int(passes),
        "budget_slices_cached": 0,
        "budget_expected_seconds": None if seconds is None else passes * seconds,
        "budget_seconds_per_slice": seconds,
        "budget_encoder": model_type,
    }
