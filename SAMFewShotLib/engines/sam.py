"""Engine ``sam``: SAM-MPA refinement of a registration (or interpolation) coarse mask.

1. A coarse engine (``register`` by default, or ``interpolate``) propagates the drawn slices.
2. Only the slices the coarse result covers, and that are not annotated, are encoded by SAM's
   image encoder, through the embedding cache (a re-run or a second structure on the same
   volume costs no encoder call for slices already encoded).
3. Per slice and per connected component of the coarse mask, the SAM-MPA prompts
   (sam/prompts.py: foreground point, bounding-box-corner background points, box and the
   sigmoid-softened coarse mask as mask prompt) are decoded; post-refinement feeds SAM's own
   low-resolution logits back as the mask prompt ``refine`` times; components are unioned
   (maximum of their logits).
4. The label's probability is the sigmoid of those logits; annotated slices stay exactly as drawn.

Steps 3-4 for one slice and one label are :func:`~SAMFewShotLib.sam.refinement.refine_slice` and
:func:`~SAMFewShotLib.sam.refinement.refine_label`, which the atlas's SAM refinement
(``atlas/sam_refinement.py``) reuses with the atlas result as the coarse mask.

The image encoder runs in torch, or with ``encoder_runtime="onnx"``/``"onnx-int8"`` in ONNX
Runtime on the CPU (sam/onnx_encoder.py: exported once per checkpoint and cached; embeddings
cached under their own precision tag).

Needs the ``sam`` extra (torch, segment-anything) and a checkpoint (``--checkpoint``); the ONNX
runtimes need the ``onnx`` extra.
"""

from __future__ import annotations

import numpy as np

from ..annotation import SparseAnnotation
from ..errors import InputError
from ..progress import CancelToken, Progress, no_progress
from ..sam.device import torch_device
from ..sam.refinement import refine_label, refine_slice  # noqa: F401 - refine_slice: re-exported
from ..volume import Volume
from .base import LabelProbability, Prediction, Timer, check_same_grid, per_label_prediction
from .catalog import SAM_COARSE_ENGINES

#: Coarse engines SAM can refine.
COARSE_ENGINES = SAM_COARSE_ENGINES  # the coarse engines SAM refines (engines/catalog.py)


class SamEngine:
    """SAM-MPA: coarse mask -> auto-prompts -> SAM -> post-refinement.

    Args:
        checkpoint: a checkpoint path or a registry/import name (see ``samfewshot weights``).
        coarse: the engine that gives the coarse mask ("register" or "interpolate").
        refine: post-refinement rounds (SAM's logits fed back as the mask prompt), >= 0.
        model_type: architecture override for the loader (vit_b, vit_l, vit_h, vit_t).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        window: intensity window for SAM: "auto" (CT preset or percentiles), a CT preset name.
        cache: the embedding cache (default: memory + disk under the SAMFewShot home).
        batch_size: slices per encoder call.
        encoder_runtime: "torch", "onnx" (ONNX Runtime fp32), "onnx-int8" (dynamic int8) or
            "auto" (onnx on the CPU when onnxruntime is installed, else torch; the CLI's
            default); the ONNX runtimes run on the CPU only.
        max_encode: refuse the run (ValueError, before any encoder call, after the coarse
            engine) when more than this many slices are not cached yet; None: no limit.
        sam_slices: "all" (every slice the coarse mask covers) or "uncertain" (only slices of
            low coarse confidence or fast area change, sam/slice_selection.py; the others keep
            the coarse mask and cost no encoder call).
    """

    name = "sam"

    def __init__(
        self,
        checkpoint: str | None,
        *,
        coarse: str = "register",
        refine: int | None = 1,
        model_type: str | None = None,
        device: str = "auto",
        window: str = "auto",
        cache=None,
        batch_size: int = 1,
        encoder_runtime: str = "torch",
        max_encode: int | None = None,
        sam_slices: str = "all",
    ) -> None:
        from .options import SamOptions

        self.options = SamOptions(
            "sam", checkpoint, model_type=model_type, device=device, window=window, cache=cache, batch_size=batch_size
        )
        if coarse not in COARSE_ENGINES:
            raise InputError(f"The coarse engine must be one of {', '.join(COARSE_ENGINES)}, not {coarse!r}")
        refine = 1 if refine is None else refine
        if refine < 0:
            raise InputError(f"--refine must be 0 or more, not {refine}")
        if max_encode is not None and max_encode < 0:
            raise InputError(f"--max-encode must be 0 or more, not {max_encode}")
        from ..sam.slice_selection import check_sam_slices

        self.sam_slices = check_sam_slices(sam_slices)
        from ..sam.onnx_encoder import check_runtime  # imports torch: after the checks that need none

        check_runtime(encoder_runtime)
        if encoder_runtime in ("onnx", "onnx-int8") and device == "cuda":
            raise InputError(f"--encoder-runtime {encoder_runtime} runs on the CPU; use --device cpu or auto")
        self.checkpoint, self.coarse, self.refine = checkpoint, coarse, refine
        self.model_type, self.device, self.window = model_type, device, window
        self.cache, self.batch_size = cache, batch_size
        self.encoder_runtime, self.max_encode = encoder_runtime, max_encode

    def propagate(
        self,
        image: Volume,
        annotation: SparseAnnotation,
        *,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> Prediction:
        from ..sam.embedding_cache import EmbeddingCache
        from ..sam.encoder import encode_slices
        from ..sam.model_loading import load_sam
        from ..sam.preprocess import Preprocessing
        from . import make_engine

        check_same_grid(image, annotation)
        timer = Timer()
        # The coarse engine first: it may fork worker processes, best done before torch starts
        # its own thread pools.
        with timer.stage("coarse"):
            coarse = make_engine(self.coarse).propagate(image, annotation, progress=progress, cancel=cancel)
        with timer.stage("load model"):
            assert self.checkpoint is not None  # SamOptions requires a checkpoint
            sam, loaded = load_sam(self.checkpoint, model_type=self.model_type, progress=progress, cancel=cancel)
            from ..sam.onnx_encoder import resolve_runtime

            runtime = resolve_runtime(self.encoder_runtime, torch_device(self.device).type)
            sam = sam.to(torch_device(self.device) if runtime == "torch" else torch_device("cpu"))
        image_encoder = None
        if runtime != "torch":
            from ..sam.onnx_encoder import onnx_image_encoder

            with timer.stage("onnx encoder"):
                progress("ONNX encoder", 0, 1)
                image_encoder = onnx_image_encoder(sam, loaded.sha256, runtime)
                progress("ONNX encoder", 1, 1)
        coarse_labels = annotation.to_canonical(coarse.labels.array)
        needed = {}
        for value in annotation.label_values:
            annotated = set(annotation.annotated_slices(value))
            covered = np.flatnonzero((coarse_labels == value).any(axis=(1, 2)))
            needed[value] = [int(z) for z in covered if z not in annotated]
        kept: dict[int, list[int]] = {value: [] for value in annotation.label_values}
        if self.sam_slices == "uncertain":
            from ..sam.slice_selection import uncertain_slices

            for value in annotation.label_values:
                confidence = coarse.slice_confidence.get(value, np.zeros(annotation.n_slices, np.float32))
                chosen = uncertain_slices(coarse_labels == value, confidence, needed[value])
                kept[value] = sorted(set(needed[value]) - set(chosen))
                needed[value] = chosen
        cache = self.cache if self.cache is not None else EmbeddingCache()
        preprocessing = Preprocessing.for_volume(image, window=self.window)
        with timer.stage("encode"):
            encoded = encode_slices(
                sam,
                loaded.sha256,
                image,
                annotation.axis,
                sorted({z for slices in needed.values() for z in slices}),
                preprocessing,
                cache,
                batch_size=self.batch_size,
                progress=progress,
                cancel=cancel,
                image_encoder=image_encoder,
                max_encode=self.max_encode,
                encoder_name=loaded.model_type,
            )
        decoder_calls = [0]

        def propagate_label(value: int) -> LabelProbability:
            confidence = coarse.slice_confidence.get(value, np.zeros(annotation.n_slices, np.float32)).copy()
            probability, quality = refine_label(
                sam, encoded, coarse_labels == value, needed[value], refine=self.refine,
                decoder_calls=decoder_calls, progress=progress, stage=f"sam: label {value}", cancel=cancel,
            )
            for z, value_quality in quality.items():
                confidence[z] = value_quality
            for z in kept[value]:  # the coarse engine was confident here: its mask as it is
                probability[z] = coarse_labels[z] == value
            for z in annotation.annotated_slices(value):
                probability[z] = annotation.mask(value)[z]
            return LabelProbability(
                probability=probability,
                slice_confidence=confidence,
                details={
                    "coarse_engine": self.coarse,
                    "slices_refined": len(needed[value]),
                    "slices_kept_coarse": len(kept[value]),
                    "refine": self.refine,
                },
            )

        with timer.stage("decode"):
            prediction = per_label_prediction(
                self.name, annotation, propagate_label, progress=progress, cancel=cancel, timer=timer
            )
        stats = encoded.stats
        budget = encoded.budget
        if budget is not None:  # the encoder budget as it stood before encoding
            prediction.counters.update(
                budget_slices_to_encode=budget.to_encode,
                budget_slices_cached=budget.cached,
                budget_expected_seconds=budget.expected_seconds,
                budget_seconds_per_slice=budget.seconds_per_slice,
                budget_encoder=budget.encoder,
            )
        prediction.counters.update(
            encoder_calls=stats.encoder_calls,
            slices_encoded=stats.slices_encoded,
            cache_hits=stats.cache_hits,
            decoder_calls=decoder_calls[0],
            model=loaded.name,
            model_type=loaded.model_type,
            encoder_runtime=runtime,
            coarse_engine=self.coarse,
            sam_slices=self.sam_slices,
            slices_kept_coarse=sum(len(zs) for zs in kept.values()),
            **{f"coarse_{k}": v for k, v in coarse.counters.items() if isinstance(v, (int, float))},
        )
        prediction.seconds.update({f"coarse {k}": v for k, v in coarse.seconds.items()})
        return prediction
