"""Encode volume slices with SAM's image encoder, batched, through the embedding cache.

Only the requested slices that the cache lacks are encoded; each batch stacks the preprocessed
(3, 1024, 1024) inputs into one encoder forward call. Progress is reported per batch and
cancel is polled before each batch.

Precision: fp32 by default (parity with SamPredictor). ``dtype=torch.bfloat16`` runs the
encoder under ``torch.autocast`` (CPU with AVX512-BF16/AMX, or CUDA); its embeddings are cached
under their own key (precision "bf16"), never mixed with fp32 ones. Measured with
``benchmarks/bench_sam_cost.py`` on random-weight ViT-B, 2 CPU cores: 5.6 s per slice instead of
10.7 s; embeddings within 1.1% of their range (max abs 0.048), decoded logits within 0.0032,
mask IoU >= 0.97 (mean 0.996, 0.17% of pixels flipped, all where |logit| < 0.004). Random
weights give near-zero logits, so these flips overstate what trained weights would show; bf16
stays an opt-in speed option until checked on real checkpoints.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Callable

import torch
from segment_anything.modeling import Sam

from ..errors import InputError
from ..progress import CancelToken, Progress, no_progress, report_event
from ..volume import Volume
from .embedding_cache import EmbeddingCache, EmbeddingKey, SliceEmbedding, volume_digest
from .encoder_budget import EVENT, EncodeBudget, EncoderTimings, encoder_key, format_seconds, timings_path
from .preprocess import Preprocessing, model_input, preprocess_slice

#: Encoder precisions: torch dtype -> cache key tag.
PRECISIONS = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
#: Progress stage name of encoding.
STAGE = "SAM encoder"


@dataclass
class EncodeStats:
    """What one :func:`encode_slices` call did.

    Attributes:
        encoder_calls: image encoder forward calls (batches).
        slices_encoded: slices run through the encoder.
        cache_hits: slices found in the cache (memory or disk).
        seconds: wall time of the whole call.
    """

    encoder_calls: int = 0
    slices_encoded: int = 0
    cache_hits: int = 0
    seconds: float = 0.0


@dataclass
class EncodedSlices:
    """Embeddings of the requested slices.

    Attributes:
        embeddings: {slice index: embedding}, in the order requested.
        stats: counters of the call.
    """

    embeddings: dict[int, SliceEmbedding] = field(default_factory=dict)
    stats: EncodeStats = field(default_factory=EncodeStats)
    budget: EncodeBudget | None = None

    def __getitem__(self, index: int) -> SliceEmbedding:
        return self.embeddings[index]


class EncodeBudgetExceeded(InputError):
    """More slices to encode than ``max_encode`` allows (raised before any encoder call).

    Attributes:
        to_encode: slices the call would have encoded.
        cached: slices found in the cache.
        max_encode: the limit.
        expected_seconds: the encoder time those slices would take on this machine (None: not
            measured here yet).
    """

    def __init__(self, to_encode: int, cached: int, max_encode: int, expected_seconds: float | None = None) -> None:
        self.to_encode, self.cached, self.max_encode = to_encode, cached, max_encode
        self.expected_seconds = expected_seconds
        expected = "" if expected_seconds is None else f" (expected {format_seconds(expected_seconds)} of encoding)"
        super().__init__(
            f"{to_encode} slices to encode ({cached} cached) exceed --max-encode {max_encode}{expected}; use a "
            "lighter model (--checkpoint mobile_sam, --encoder-runtime onnx) or a weightless engine (--engine "
            "register or interpolate)"
        )


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(num_threads)`` (None: leave as is)."""
    if num_threads is None:
        yield
        return
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, not {num_threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _autocast(device_type: str, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype)


def encode_slices(
    sam: Sam,
    model_digest: str,
    volume: Volume,
    axis: int,
    slices: Iterable[int],
    preprocessing: Preprocessing,
    cache: EmbeddingCache | None = None,
    *,
    batch_size: int = 1,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
    dtype: torch.dtype = torch.float32,
    num_threads: int | None = None,
    digest: str | None = None,
    image_encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
    max_encode: int | None = None,
    timings: EncoderTimings | str | None = "cache",
    encoder_name: str | None = None,
) -> EncodedSlices:
    """Image embeddings of ``slices`` along ``axis``, encoding only those not cached.

    Args:
        sam: the model (any device); its image encoder runs under ``torch.inference_mode``.
        model_digest: sha256 of the checkpoint (part of the cache key).
        volume: the image; slices are taken along numpy ``axis`` (0 = z, 1 = y, 2 = x).
        slices: slice indices along ``axis`` (duplicates ignored).
        preprocessing: window and square-pixel choice.
        cache: where embeddings are looked up and stored; None: a new memory-only cache
            (nothing is kept after the call).
        batch_size: slices per encoder forward call.
        progress: called ``(STAGE, slices encoded, slices to encode)`` before the first and
            after each batch.
        cancel: polled before each batch (raises ``Cancelled``).
        dtype: float32, or bfloat16/float16 to run the encoder under autocast.
        num_threads: torch CPU threads during the call (None: torch's current setting).
        digest: :func:`volume_digest` of ``volume`` when the caller already has it.
        image_encoder: another runtime for ``sam.image_encoder``, e.g.
            :class:`~SAMFewShotLib.sam.onnx_encoder.OnnxImageEncoder`: called on the
            (B, 3, 1024, 1024) float32 model input, returns (B, C, 64, 64); its ``precision``
            attribute tags its embeddings in the cache. Only with ``dtype`` float32.
        max_encode: the most slices this call may run through the encoder (cached slices do
            not count); more raises :class:`EncodeBudgetExceeded` before any encoding.
        timings: this machine's encoder measurements (:mod:`.encoder_budget`): the estimate of
            the budget, and where this call's seconds per slice are recorded. "cache": the file
            in ``cache``'s folder when the cache keeps a disk folder, else none; None: none.
        encoder_name: the architecture's name in the measurements' key (vit_b, vit_t; None:
            the encoder's class and size).

    Before encoding, the budget (:class:`~.encoder_budget.EncodeBudget`: slices to encode,
    cached, expected seconds) goes to ``progress`` as the event ``"SAM encoder budget"``
    (:func:`~SAMFewShotLib.progress.report_event`) and into the result's ``budget``.

    Returns:
        :class:`EncodedSlices`: {slice index: :class:`SliceEmbedding` with a (C, 64, 64)
        float32 CPU embedding}, and the call's counters.
    """
    start = time.perf_counter()
    if dtype not in PRECISIONS:
        raise ValueError(f"dtype must be one of {', '.join(str(d) for d in PRECISIONS)}, not {dtype}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    if max_encode is not None and max_encode < 0:
        raise ValueError(f"max_encode must be 0 or more, not {max_encode}")
    if image_encoder is not None and dtype != torch.float32:
        raise ValueError(f"dtype {dtype} is for the torch encoder; another image_encoder runs as it was built")
    precision = PRECISIONS[dtype] if image_encoder is None else str(image_encoder.precision)  # type: ignore[attr-defined]
    if axis not in (0, 1, 2):
        raise ValueError(f"Axis must be 0, 1 or 2 (numpy z, y, x), not {axis}")
    n_slices = volume.array.shape[axis]
    wanted = list(dict.fromkeys(int(s) for s in slices))
    for index in wanted:
        if not 0 <= index < n_slices:
            raise ValueError(f"Slice {index} is outside 0..{n_slices - 1} along axis {axis}")
    cache = cache if cache is not None else EmbeddingCache.memory_only()
    digest = digest or volume_digest(volume)
    keys = {index: EmbeddingKey(digest, axis, index, preprocessing.key(), model_digest, precision) for index in wanted}

    result = EncodedSlices()
    found: dict[int, SliceEmbedding] = {}
    for index in wanted:
        entry = cache.get(keys[index])
        if entry is not None:
            found[index] = entry
    result.stats.cache_hits = len(found)
    missing = [index for index in wanted if index not in found]
    if timings == "cache":
        timings = EncoderTimings(timings_path(cache.directory) if cache.disk and cache.directory else None)
    elif isinstance(timings, str):
        raise ValueError(f"timings must be an EncoderTimings, 'cache' or None, not {timings!r}")
    with torch_threads(num_threads):
        threads = num_threads or torch.get_num_threads()
    device = sam.device.type if image_encoder is None else "cpu"
    key = encoder_key(sam.image_encoder, precision, device, threads, encoder_name)
    result.budget = EncodeBudget(
        len(missing),
        len(found),
        key,
        None if timings is None else timings.seconds_per_slice(key),
        None if timings is None else timings.path,
    )
    report_event(progress, EVENT, result.budget.as_dict())
    if max_encode is not None and len(missing) > max_encode:
        raise EncodeBudgetExceeded(len(missing), len(found), max_encode, result.budget.expected_seconds)

    progress(STAGE, 0, len(missing))
    # a runtime that encodes several slices at once (OnnxImageEncoder.slices_per_call) gets them
    batch_size = max(batch_size, int(getattr(image_encoder, "slices_per_call", 1)))
    encode_start = time.perf_counter()
    with torch_threads(num_threads):
        for first in range(0, len(missing), batch_size):
            if cancel is not None:
                cancel.raise_if_cancelled()
            batch = missing[first : first + batch_size]
            prepared = [preprocess_slice(sam, volume, axis, index, preprocessing) for index in batch]
            with torch.inference_mode(), _autocast(sam.device.type, dtype):
                pixels = model_input(sam, prepared)
                features = sam.image_encoder(pixels) if image_encoder is None else image_encoder(pixels)
            features = features.to("cpu", torch.float32)
            result.stats.encoder_calls += 1
            for index, item, embedding in zip(batch, prepared, features):
                # clone outside inference mode: an ordinary tensor (trainable modules may take it)
                # that holds one slice, not a view keeping the whole batch alive
                rows, cols = item.geometry.slice_shape
                entry = SliceEmbedding(embedding.clone(), item.original_size, item.input_size, (rows, cols))
                cache.put(keys[index], entry)
                found[index] = entry
            result.stats.slices_encoded += len(batch)
            progress(STAGE, result.stats.slices_encoded, len(missing))

    if timings is not None and result.stats.slices_encoded:
        timings.record(key, time.perf_counter() - encode_start, result.stats.slices_encoded)
    result.embeddings = {index: found[index] for index in wanted}
    result.stats.seconds = time.perf_counter() - start
    return result
