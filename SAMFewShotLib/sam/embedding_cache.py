"""Cache of SAM image embeddings: in memory (LRU by bytes) and on disk (one file per slice).

A slice is encoded once: its embedding is keyed by the volume's content digest, the axis, the
slice index, the preprocessing, the encoder precision and the model's checkpoint digest, so a
second structure, a re-run or a new process costs no encoder call.

Disk layout, under the cache folder (default :func:`default_embedding_dir`)::

    v1/<model digest[:16]>/<volume digest[:16]>/axis<a>-slice<iiiii>-<key digest[:16]>.npz

Each ``.npz`` (uncompressed, written to a temporary file then renamed, so readers never see
a partial file) holds ``embedding`` (C, 64, 64) float32, ``original_size``, ``input_size``,
``slice_shape`` (each 2 int64) and ``key`` (the full key text, checked on load). A file that
cannot be read or does not match its key counts as a miss, is removed and is rewritten by the
next :meth:`EmbeddingCache.put`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..files import write_stream_atomic
from ..volume import Volume
from .preprocess import SliceGeometry

#: Default in-memory budget: 1 GiB, 256 vit_b slice embeddings (4 MiB each).
DEFAULT_MEMORY_BYTES = 1 << 30
_LAYOUT = "v1"


def volume_digest(volume: Volume) -> str:
    """sha256 (hex) of the volume's voxel bytes, dtype, shape and spacing.

    Origin and direction are left out: they do not change what SAM sees. Reads the array
    slab by slab (no full copy of a non-contiguous array); ~0.1-0.2 s for 150 MB.
    """
    array = volume.array
    digest = hashlib.sha256()
    header = {"dtype": array.dtype.str, "shape": list(array.shape), "spacing": [repr(s) for s in volume.spacing]}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for slab in array:
        digest.update(np.ascontiguousarray(slab).data)
    return digest.hexdigest()


def default_embedding_dir() -> Path:
    """``embeddings`` in the SAMFewShot home (``$SAMFEWSHOT_HOME``, else the user cache folder;
    the weights live beside it)."""
    from .weights_store import store_home

    return store_home() / "embeddings"


@dataclass(frozen=True)
class EmbeddingKey:
    """Everything an image embedding depends on.

    Attributes:
        volume_digest: :func:`volume_digest` of the volume.
        axis: numpy axis (0 = z, 1 = y, 2 = x) of the slice.
        slice_index: index along ``axis``.
        preprocessing: ``Preprocessing.key()``.
        model_digest: sha256 of the checkpoint (any stable text naming the weights).
        precision: encoder compute precision, ``"fp32"`` or ``"bf16"``/``"fp16"`` (autocast), or
            the ONNX Runtime encoder's ``"onnx-fp32"``/``"onnx-int8"``.
    """

    volume_digest: str
    axis: int
    slice_index: int
    preprocessing: str
    model_digest: str
    precision: str = "fp32"

    def text(self) -> str:
        """The canonical text of the key (stored in the file and compared on load)."""
        return json.dumps(
            [
                self.volume_digest,
                int(self.axis),
                int(self.slice_index),
                self.preprocessing,
                self.model_digest,
                self.precision,
            ]
        )

    def digest(self) -> str:
        return hashlib.sha256(self.text().encode()).hexdigest()

    def relative_path(self) -> Path:
        return (
            Path(_LAYOUT)
            / _path_part(self.model_digest)
            / _path_part(self.volume_digest)
            / f"axis{int(self.axis)}-slice{int(self.slice_index):05d}-{self.digest()[:16]}.npz"
        )


def _path_part(text: str) -> str:
    """A 16-character folder name for a digest (its prefix when hex, else a hash of it)."""
    if re.fullmatch(r"[0-9a-f]{16,}", text):
        return text[:16]
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _pair(values: Sequence[int]) -> tuple[int, int]:
    """(rows, cols) of a two-element size."""
    return values[0], values[1]


@dataclass(frozen=True, eq=False)
class SliceEmbedding:
    """The encoder output for one slice and the sizes needed to decode it.

    Attributes:
        embedding: (C, 64, 64) float32 CPU tensor (C = 256 for SAM), an ordinary tensor
            (not an inference-mode one), usable as input to trained modules.
        original_size: (rows, cols) of the model-grid image (SamPredictor's ``original_size``).
        input_size: (h, w) after ResizeLongestSide (SamPredictor's ``input_size``).
        slice_shape: (rows, cols) of the volume slice (differs from ``original_size`` when the
            slice was resampled to square pixels).
    """

    embedding: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    slice_shape: tuple[int, int]

    @property
    def geometry(self) -> SliceGeometry:
        return SliceGeometry(_pair(self.slice_shape), _pair(self.original_size))

    @property
    def nbytes(self) -> int:
        return self.embedding.element_size() * self.embedding.nelement()


@dataclass
class CacheStats:
    """Counters since the cache object was made."""

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    writes: int = 0
    corrupt: int = 0

    @property
    def hits(self) -> int:
        return self.memory_hits + self.disk_hits


@dataclass(eq=False)
class EmbeddingCache:
    """Slice embeddings in memory (LRU within ``max_memory_bytes``) and on disk.

    Args:
        directory: cache folder; None: :func:`default_embedding_dir`.
        disk: False keeps embeddings in memory only (nothing is read or written on disk).
        max_memory_bytes: in-memory budget; the least recently used embeddings go first.
    """

    directory: Path | None = None
    disk: bool = True
    max_memory_bytes: int = DEFAULT_MEMORY_BYTES
    stats: CacheStats = field(default_factory=CacheStats)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory).expanduser() if self.directory is not None else default_embedding_dir()
        if self.max_memory_bytes < 0:
            raise ValueError(f"max_memory_bytes must be >= 0, not {self.max_memory_bytes}")
        self._memory: OrderedDict[str, SliceEmbedding] = OrderedDict()
        self._memory_bytes = 0
        self._lock = threading.Lock()

    @classmethod
    def memory_only(cls, max_memory_bytes: int = DEFAULT_MEMORY_BYTES) -> EmbeddingCache:
        return cls(disk=False, max_memory_bytes=max_memory_bytes)

    @property
    def memory_bytes(self) -> int:
        """Bytes of embeddings held in memory now."""
        return self._memory_bytes

    def path(self, key: EmbeddingKey) -> Path:
        """The file of ``key`` on disk."""
        assert self.directory is not None  # set by __post_init__
        return self.directory / key.relative_path()

    def get(self, key: EmbeddingKey) -> SliceEmbedding | None:
        """The cached embedding of ``key`` (memory first, then disk), or None (a miss)."""
        text = key.text()
        with self._lock:
            entry = self._memory.get(text)
            if entry is not None:
                self._memory.move_to_end(text)
                self.stats.memory_hits += 1
                return entry
        entry = self._read(key) if self.disk else None
        with self._lock:
            if entry is None:
                self.stats.misses += 1
                return None
            self.stats.disk_hits += 1
            self._remember(text, entry)
        return entry

    def put(self, key: EmbeddingKey, entry: SliceEmbedding) -> None:
        """Store ``entry`` in memory and (when ``disk``) atomically on disk."""
        with self._lock:
            self._remember(key.text(), entry)
        if self.disk:
            self._write(key, entry)
            with self._lock:
                self.stats.writes += 1

    def clear_memory(self) -> None:
        """Drop every in-memory embedding (disk files stay)."""
        with self._lock:
            self._memory.clear()
            self._memory_bytes = 0

    # Internals ---------------------------------------------------------------------------------
    def _remember(self, text: str, entry: SliceEmbedding) -> None:
        old = self._memory.pop(text, None)
        if old is not None:
            self._memory_bytes -= old.nbytes
        if entry.nbytes > self.max_memory_bytes:
            return
        self._memory[text] = entry
        self._memory_bytes += entry.nbytes
        while self._memory_bytes > self.max_memory_bytes:
            _, evicted = self._memory.popitem(last=False)
            self._memory_bytes -= evicted.nbytes

    def _read(self, key: EmbeddingKey) -> SliceEmbedding | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["key"]) != key.text():
                    raise ValueError("key mismatch")
                embedding = np.array(data["embedding"], dtype=np.float32)
                sizes = [tuple(int(v) for v in data[name]) for name in ("original_size", "input_size", "slice_shape")]
            if embedding.ndim != 3 or any(len(size) != 2 for size in sizes):
                raise ValueError("bad shapes")
        except Exception:  # truncated, corrupt or foreign file: a miss, rewritten on put
            with self._lock:
                self.stats.corrupt += 1
            path.unlink(missing_ok=True)
            return None
        return SliceEmbedding(torch.from_numpy(embedding), _pair(sizes[0]), _pair(sizes[1]), _pair(sizes[2]))

    def _write(self, key: EmbeddingKey, entry: SliceEmbedding) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(stream) -> None:
            np.savez(
                stream,
                embedding=entry.embedding.detach().to("cpu", torch.float32).numpy(),
                original_size=np.asarray(entry.original_size, dtype=np.int64),
                input_size=np.asarray(entry.input_size, dtype=np.int64),
                slice_shape=np.asarray(entry.slice_shape, dtype=np.int64),
                key=np.asarray(key.text()),
            )

        write_stream_atomic(path, write)
