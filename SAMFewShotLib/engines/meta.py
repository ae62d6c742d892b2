"""Engine ``meta``: SSM-SAM (Self-Sampling Meta SAM), adapted online to every structure.

Per structure (label):

1. The network starts from the init: a meta-learned one (``--init INIT.pt`` from
   ``samfewshot meta-train``), or the plain init - the engine then says so (a warning, and
   ``init`` in the report's counters).
2. The online optimiser (Algorithm 1, meta/online.py) takes S sweeps of per-pair SGD updates
   over the K support pairs: the label's drawn slices (image slice, mask), plus the slices
   declared empty for it.
3. The slices between the drawn ones, then outward while the prediction is not empty, are
   predicted with the adapted network (meta/predict.py). Drawn slices stay exactly as drawn.

The adapters change the encoder's output, so the SAM embedding cache (``cache``) cannot serve
it; the frozen patch embedding of each slice is computed once per structure and reused by all
steps. The report's counters give the online steps, their seconds, the encoder passes and the
process's peak memory.

Needs the ``sam`` extra (torch, segment-anything) and a ViT SAM checkpoint (``--checkpoint``).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..annotation import SparseAnnotation
from ..errors import InputError
from ..progress import CancelToken, Progress, no_progress
from ..volume import Volume
from .base import LabelProbability, Prediction, Timer, check_same_grid, per_label_prediction


class MetaEngine:
    """SSM-SAM: online adaptation from a (meta-learned) init, then slice-by-slice prediction.

    Args:
        checkpoint: a SAM checkpoint path or a registry/import name.
        init: a meta-learned init file (``samfewshot meta-train``); None: the plain init.
        model_type: architecture override for the loader (vit_b, vit_l, vit_h).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        window: intensity window for SAM: "auto", "percentile" or a CT preset name.
        cache: accepted for the common engine signature; unused (see the module docstring).
        batch_size: slices per adapted-encoder call when predicting.
        refine: not supported (a ValueError when given): refinement rounds are the sam engine's.
        steps: online steps S (None: the init's).
        config: the plain init's :class:`~SAMFewShotLib.meta.config.MetaConfig` (ignored with an
            init file, which carries its own).
    """

    name = "meta"

    def __init__(
        self,
        checkpoint: str | None,
        *,
        init: str | None = None,
        model_type: str | None = None,
        device: str = "auto",
        window: str = "auto",
        cache=None,
        batch_size: int = 1,
        refine: int | None = None,
        steps: int | None = None,
        config=None,
    ) -> None:
        if refine is not None:
            raise InputError(f"--refine is for the sam engine; the meta engine adapts online instead (not {refine!r})")
        if steps is not None and steps < 1:
            raise InputError(f"Online steps must be >= 1, not {steps}")
        from ..meta.init_file import load_init
        from .options import SamOptions

        self.options = SamOptions(
            "meta", checkpoint, model_type=model_type, device=device, window=window, cache=cache,
            batch_size=batch_size,
        )
        if init is not None:
            load_init(init)  # a missing or corrupt init too
        assert checkpoint is not None  # SamOptions refuses a missing checkpoint
        self.checkpoint, self.init, self.model_type, self.device = checkpoint, init, model_type, device
        self.window, self.batch_size, self.steps, self.config = window, batch_size, steps, config
        self.cache = cache

    def propagate(
        self,
        image: Volume,
        annotation: SparseAnnotation,
        *,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> Prediction:
        from ..memory import peak_gpu_mib, peak_rss_mib
        from ..meta.load import PLAIN_INIT, load_meta_model
        from ..meta.online import PatchCache, SupportSet, adapt
        from ..meta.predict import predict_structure
        from ..meta.slices import prepare
        from ..sam.encoder_budget import pass_budget_counters
        from ..sam.preprocess import Preprocessing

        check_same_grid(image, annotation)
        timer = Timer()
        with timer.stage("load model"):
            meta = load_meta_model(
                self.checkpoint, init=self.init, model_type=self.model_type, device=self.device,
                steps=self.steps, config=self.config, progress=progress, cancel=cancel,
            )
        if meta.is_plain:
            warnings.warn(f"meta engine: {PLAIN_INIT}", stacklevel=2)
        network, axis = meta.network, annotation.axis
        preprocessing = Preprocessing.for_volume(image, window=self.window)
        steps = int(meta.learning_rates.shape[0])
        tag = "meta (plain init)" if meta.is_plain else "meta"
        totals = {"online_steps": 0, "online_encoder_passes": 0, "predict_encoder_passes": 0, "support_pairs": 0}

        def propagate_label(value: int) -> LabelProbability:
            meta.reset()
            mask = annotation.mask(value)
            drawn = annotation.drawn_slices(value)
            empty = sorted(set(annotation.annotated_slices(value)) - set(drawn))
            supports = [prepare(network.sam, image, axis, z, preprocessing, mask[z]) for z in drawn]
            negatives = [prepare(network.sam, image, axis, z, preprocessing, mask[z]) for z in empty]
            support_set = SupportSet(supports, negatives, image, axis, preprocessing, network.config.max_shift)
            cache = PatchCache(network)
            with timer.stage("online adaptation"):
                online = adapt(
                    network, support_set, meta.learning_rates, rng=np.random.default_rng(network.config.seed + value),
                    cache=cache, stage=f"{tag}: adapt label {value}", progress=progress, cancel=cancel,
                )
            with timer.stage("predict"):
                predicted = predict_structure(
                    network, image, axis, preprocessing, supports, set(empty), cache=cache,
                    batch_size=self.batch_size, stage=f"{tag}: predict label {value}", progress=progress, cancel=cancel,
                )
            totals["online_steps"] += steps
            totals["online_encoder_passes"] += online.encoder_passes
            totals["predict_encoder_passes"] += predicted.encoder_passes
            totals["support_pairs"] += len(supports)
            confidence = np.zeros(annotation.n_slices, np.float32)
            for z, c in predicted.confidence.items():
                confidence[z] = c
            stop = predicted.first + predicted.probability.shape[0]
            return LabelProbability(
                probability=predicted.probability,
                slice_confidence=confidence,
                box=(slice(predicted.first, stop), slice(None), slice(None)),
                details={
                    "support_slices": drawn,
                    "empty_slices": empty,
                    "online_losses": online.losses,
                    "online_final_loss": online.final_loss,
                    "online_seconds": online.seconds,
                    "predicted_slices": [predicted.first, stop - 1],
                },
            )

        prediction = per_label_prediction(
            self.name, annotation, propagate_label, progress=progress, cancel=cancel, timer=timer
        )
        gpu = peak_gpu_mib()
        prediction.counters.update(
            totals,
            online_steps_per_label=steps,
            online_seconds=timer.seconds.get("online adaptation", 0.0),
            peak_rss_mib=peak_rss_mib(),
            **({"peak_gpu_mib": gpu} if gpu is not None else {}),
            init=meta.init,
            model=meta.loaded.name,
            model_type=meta.loaded.model_type,
            device=str(next(network.parameters()).device),
            **pass_budget_counters(
                meta.loaded.model_type, totals["online_encoder_passes"] + totals["predict_encoder_passes"]
            ),
        )
        return prediction
