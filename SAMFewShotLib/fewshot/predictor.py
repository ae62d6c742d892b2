"""Predict a head's labels on the slices of a volume: encode (through the cache), then decode.

Slices are handled in chunks of ``chunk`` slices: a chunk is encoded (only the slices the
cache lacks), its (slice, label) requests are decoded in batches, and its embeddings are let
go before the next chunk, so memory stays bounded however many slices are predicted (a vit_b
embedding is 4 MiB). Cancel is polled before every encoder and decoder batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..progress import CancelToken, Progress, no_progress
from ..sam.embedding_cache import EmbeddingCache, volume_digest
from ..sam.encoder import encode_slices
from ..sam.preprocess import Preprocessing
from ..volume import Volume
from .decoder import FewShotMaskDecoder
from .inference import predict_slices

#: Slices encoded and decoded together before moving on.
DEFAULT_CHUNK = 16


@dataclass
class PredictorStats:
    """Counters of a :class:`SlicePredictor` (summed over its calls)."""

    encoder_calls: int = 0
    slices_encoded: int = 0
    cache_hits: int = 0
    slices_predicted: int = 0
    decoder_items: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: {"encode": 0.0, "predict": 0.0})

    def counters(self) -> dict[str, int]:
        return {
            "encoder_calls": self.encoder_calls,
            "slices_encoded": self.slices_encoded,
            "cache_hits": self.cache_hits,
            "slices_predicted": self.slices_predicted,
            "decoder_items": self.decoder_items,
        }


@dataclass(eq=False)
class SlicePredictor:
    """Everything needed to predict slices of one volume with one trained decoder.

    Attributes:
        sam: the base model; model_digest: its checkpoint sha256 (cache key).
        decoder: the trained decoder; tokens: (K, C) prompt tokens per label index.
        image: the volume; axis: numpy axis of the slices; preprocessing: their window.
        cache: embedding cache (None: memory only).
        encode_batch_size: slices per encoder call; decode_batch_size: slices per decoder call
            (None: 4 on the CPU, 32 on CUDA).
        chunk: slices per encode-then-decode round.
        joint: the decoder decodes all labels in one pass (``FewShotHead.joint``).
    """

    sam: torch.nn.Module
    model_digest: str
    decoder: FewShotMaskDecoder
    tokens: Sequence[torch.Tensor]
    image: Volume
    axis: int
    preprocessing: Preprocessing
    cache: EmbeddingCache | None = None
    encode_batch_size: int = 1
    decode_batch_size: int | None = None
    chunk: int = DEFAULT_CHUNK
    joint: bool = False
    stats: PredictorStats = field(default_factory=PredictorStats)

    def __post_init__(self) -> None:
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, not {self.chunk}")
        self.cache = self.cache if self.cache is not None else EmbeddingCache.memory_only()
        self._digest = volume_digest(self.image)

    def predict(
        self,
        requests: Sequence[tuple[int, int]],
        *,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> dict[tuple[int, int], np.ndarray]:
        """{(slice, label index): (rows, cols) float32 probability} for every request."""
        requests = list(dict.fromkeys((int(z), int(i)) for z, i in requests))
        slices = sorted({z for z, _ in requests})
        out: dict[tuple[int, int], np.ndarray] = {}
        for first in range(0, len(slices), self.chunk):
            part = set(slices[first : first + self.chunk])
            start = time.perf_counter()
            encoded = encode_slices(
                self.sam, self.model_digest, self.image, self.axis, sorted(part), self.preprocessing, self.cache,
                batch_size=self.encode_batch_size, progress=progress, cancel=cancel, digest=self._digest,
            )
            self.stats.seconds["encode"] += time.perf_counter() - start
            self.stats.encoder_calls += encoded.stats.encoder_calls
            self.stats.slices_encoded += encoded.stats.slices_encoded
            self.stats.cache_hits += encoded.stats.cache_hits
            start = time.perf_counter()
            chunk_requests = [r for r in requests if r[0] in part]
            out.update(
                predict_slices(
                    self.sam, self.decoder, self.tokens, encoded.embeddings, chunk_requests,
                    batch_size=self.decode_batch_size, joint=self.joint, progress=progress, cancel=cancel,
                )
            )
            self.stats.seconds["predict"] += time.perf_counter() - start
            self.stats.slices_predicted += len(part)
            self.stats.decoder_items += len(chunk_requests)
        return out
