"""Engine ``fewshot``: SAM's mask decoder fine-tuned on the annotated slices (Xie et al.).

1. The annotated slices are encoded once by SAM's image encoder (through the embedding cache).
2. A few-shot head is trained on their embeddings (SAMFewShotLib/fewshot: target embeddings as
   prompt tokens, two learned output tokens per label, Adam, early stopping by
   leave-one-slice-out); the encoder is never trained.
3. Per label, the slices between its outermost drawn slices are predicted, then outward in
   batches while the prediction stays non-empty (fewshot/extent.py); only those slices are
   encoded. Annotated slices stay exactly as drawn.

``samfewshot propagate --engine fewshot --checkpoint C`` is ``fewshot train`` + apply in one go
(the head is not written; ``samfewshot fewshot train`` writes it).
"""

from __future__ import annotations

from ..annotation import SparseAnnotation
from ..errors import InputError
from ..progress import CancelToken, Progress, no_progress
from ..volume import Volume
from .base import Prediction, Timer, check_same_grid, per_label_prediction


class FewShotEngine:
    """Few-shot decoder fine-tuning, trained and applied within one propagation.

    Args:
        checkpoint: base SAM checkpoint path or registry/import name.
        model_type: architecture override for the loader (vit_b, vit_l, vit_h, vit_t).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        window: intensity window: "auto", "percentile" or a CT preset name.
        cache: the embedding cache (default: memory + disk under the SAMFewShot home).
        batch_size: slices per encoder call.
        refine: not used by this engine (must be None).
        init: not used by this engine (must be None).
        config: training settings (``fewshot.training.TrainingConfig``; None: defaults).
        decode_batch_size: slices per decoder call (None: 4 on the CPU, 32 on CUDA).
    """

    name = "fewshot"

    def __init__(
        self,
        checkpoint: str | None,
        *,
        model_type: str | None = None,
        device: str = "auto",
        window: str = "auto",
        cache=None,
        batch_size: int = 1,
        refine: int | None = None,
        init: str | None = None,
        config=None,
        decode_batch_size: int | None = None,
    ) -> None:
        if refine is not None:
            raise InputError(f"--refine is for the sam engine, not fewshot (got --refine {refine})")
        if init is not None:
            raise InputError(f"--init is for the meta engine, not fewshot (got --init {init})")
        from .options import SamOptions

        self.options = SamOptions(
            "fewshot", checkpoint, model_type=model_type, device=device, window=window, cache=cache,
            batch_size=batch_size,
        )
        assert checkpoint is not None  # SamOptions refuses a missing checkpoint
        self.checkpoint, self.model_type, self.device, self.window = checkpoint, model_type, device, window
        self.cache, self.batch_size, self.config, self.decode_batch_size = cache, batch_size, config, decode_batch_size

    def propagate(
        self,
        image: Volume,
        annotation: SparseAnnotation,
        *,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> Prediction:
        from ..fewshot.apply import load_base_model
        from ..fewshot.extent import propagate_labels
        from ..fewshot.fit import fit_head
        from ..fewshot.predictor import SlicePredictor
        from ..memory import peak_rss_mib
        from ..sam.embedding_cache import EmbeddingCache
        from ..sam.encoder_budget import BudgetRecorder
        from ..sam.preprocess import Preprocessing

        check_same_grid(image, annotation)
        progress = budgets = BudgetRecorder(progress)  # the encoder budgets of every encode_slices call
        timer = Timer()
        with timer.stage("load model"):
            sam, loaded = load_base_model(
                self.checkpoint, model_type=self.model_type, device=self.device, progress=progress, cancel=cancel
            )
        cache = self.cache if self.cache is not None else EmbeddingCache()
        preprocessing = Preprocessing.for_volume(image, window=self.window)
        with timer.stage("fit"):
            fit = fit_head(
                sam, loaded, image, annotation, preprocessing, cache=cache, config=self.config,
                encode_batch_size=self.batch_size, progress=progress, cancel=cancel,
            )
        values = fit.head.label_values
        predictor = SlicePredictor(
            sam, loaded.sha256, fit.decoder, fit.head.tokens(), image, annotation.axis, preprocessing, cache,
            encode_batch_size=self.batch_size, decode_batch_size=self.decode_batch_size, joint=fit.head.joint,
        )
        with timer.stage("predict"):
            per_label = propagate_labels(predictor, annotation, values, progress=progress, cancel=cancel)
        prediction = per_label_prediction(
            self.name, annotation, per_label.__getitem__, progress=progress, cancel=cancel, timer=timer
        )
        stats = predictor.stats
        prediction.seconds.update(
            {"encode annotated": fit.encoding.seconds, "train": fit.training.seconds,
             "encode": fit.encoding.seconds + stats.seconds["encode"], "decode": stats.seconds["predict"]}
        )
        prediction.counters.update(
            encoder_calls=fit.encoding.encoder_calls + stats.encoder_calls,
            slices_encoded=fit.encoding.slices_encoded + stats.slices_encoded,
            cache_hits=fit.encoding.cache_hits + stats.cache_hits,
            train_iterations=fit.training.iterations,
            planned_iterations=fit.training.planned_iterations,
            best_iteration=fit.training.best_iteration,
            train_seconds=round(fit.training.seconds, 3),
            slices_predicted=stats.slices_predicted,
            decoder_items=stats.decoder_items,
            peak_rss_mib=peak_rss_mib(),
            model=loaded.name,
            model_type=loaded.model_type,
            **budgets.counters(),
        )
        prediction.details["training"] = fit.head.training
        return prediction
