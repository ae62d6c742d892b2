"""Fit a few-shot head to a sparse annotation: encode the annotated slices, build the examples,
train the decoder.

Per label L with drawn slices D (slices holding L) and declared-empty slices E:

- every drawn slice gives a target embedding (masked average of its image embedding) and a
  training example whose prompt tokens are the target embeddings of the *other* drawn slices
  (as on an unannotated slice, whose own target embedding is never known); with a single drawn
  slice it is prompted by its own;
- every declared-empty slice is an example with an empty target, prompted by all of D;
- with 3 or more drawn slices, the middle one (``D[len(D) // 2]``) is held out for early
  stopping (leave-one-slice-out): it is predicted from the other drawn slices and never
  trained on; its target embedding joins the head's tokens after training.

Joint pass (``TrainingConfig(joint=True)``): the same examples grouped by slice (:class:`.training.JointExample`): a
slice is a training example for the labels it is drawn (not held out) or declared empty for,
and a validation example for the labels held out on it; the prompt tokens of label L on slice z
are the target embeddings of L's trained slices other than z (all of them when z is the only
one).

The head keeps, per label, the target embeddings of all drawn slices (K x C) as its tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..annotation import SparseAnnotation
from ..errors import InputError
from ..progress import CancelToken, Progress, no_progress
from ..sam.embedding_cache import EmbeddingCache
from ..sam.encoder import EncodeStats, encode_slices
from ..sam.model_loading import LoadedModel
from ..sam.preprocess import Preprocessing
from ..volume import Volume
from .decoder import FewShotMaskDecoder
from .head import BaseModel, FewShotHead
from .targets import input_frame_mask, masked_average, pooled, valid_region
from .training import Example, JointExample, TrainingConfig, TrainingResult, train_decoder

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

#: Drawn slices a label needs before one is held out for early stopping.
MIN_SHOTS_FOR_VALIDATION = 3


@dataclass
class FitResult:
    """A fitted head and how it was made.

    Attributes:
        head: the head (decoder state on the CPU).
        decoder: the trained decoder, on the model's device.
        training: the training record.
        encoding: counters of encoding the annotated slices.
        held_out: {label value: slice held out for early stopping}.
    """

    head: FewShotHead
    decoder: FewShotMaskDecoder
    training: TrainingResult
    encoding: EncodeStats
    held_out: dict[int, int]


def check_labels(
    annotation: SparseAnnotation, labels: Sequence[int] | None, source: str = "the annotation"
) -> list[int]:
    """The label values to train: ``labels`` (each must be drawn in the annotation) or all."""
    present = annotation.label_values
    if labels is None:
        return list(present)
    chosen = list(dict.fromkeys(int(v) for v in labels))
    for value in chosen:
        if value not in present:
            raise InputError(f"Label {value} is not in {source} (it holds {', '.join(map(str, present))})")
    if not chosen:
        raise InputError("No label chosen to train")
    return chosen


def fit_head(
    sam: Sam,
    model: LoadedModel,
    image: Volume,
    annotation: SparseAnnotation,
    preprocessing: Preprocessing,
    *,
    labels: Sequence[int] | None = None,
    cache: EmbeddingCache | None = None,
    config: TrainingConfig | None = None,
    encode_batch_size: int = 1,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> FitResult:
    """Train a head for ``labels`` (default: every label) of ``annotation`` on ``image``.

    Args:
        sam: the base SAM (any device); model: its :class:`LoadedModel` record.
        image: the image; annotation: its sparse annotation (same grid, checked by the caller).
        preprocessing: window of the slices (part of the embedding cache key).
        labels: label values to train, in decoder order; each must be drawn.
        cache: embedding cache (None: memory only for this call).
        config: training settings.
        encode_batch_size: slices per encoder call.
        progress, cancel: see :mod:`SAMFewShotLib.progress` (stages: SAM encoder, fewshot: train).
    """
    values = check_labels(annotation, labels)
    slices = sorted({s for v in values for s in annotation.annotated_slices(v)})
    encoded = encode_slices(
        sam, model.sha256, image, annotation.axis, slices, preprocessing, cache,
        batch_size=encode_batch_size, progress=progress, cancel=cancel,
    )
    image_size = int(sam.image_encoder.img_size)
    config = config or TrainingConfig()
    examples: list[Example] = []
    validation: list[Example] = []
    targets, held_out = {}, {}
    per_label = []  # (drawn, empty, trained, held, tokens, low_res) per label index
    for index, value in enumerate(values):
        drawn = annotation.drawn_slices(value)
        masks = annotation.mask(value)
        tokens, low_res = {}, {}
        for z in drawn:
            embedding = encoded[z]
            frame = input_frame_mask(masks[z], embedding, image_size)
            grid = int(embedding.embedding.shape[-1])
            tokens[z] = masked_average(embedding.embedding, pooled(frame, grid))
            low_res[z] = (pooled(frame, 4 * grid), valid_region(embedding, image_size, 4 * grid))
        held = drawn[len(drawn) // 2] if len(drawn) >= MIN_SHOTS_FOR_VALIDATION else None
        trained = [z for z in drawn if z != held]

        def example(z: int, target, valid, prompt_slices: list[int], index=index, tokens=tokens) -> Example:
            prompt = torch.stack([tokens[s] for s in prompt_slices])
            return Example(index, z, encoded[z].embedding, target, valid, prompt)

        for z in trained:
            examples.append(example(z, *low_res[z], [s for s in trained if s != z] or [z]))
        for z in annotation.empty_slices.get(value, ()):
            size = 4 * int(encoded[z].embedding.shape[-1])
            examples.append(example(z, torch.zeros((size, size)), valid_region(encoded[z], image_size, size), trained))
        if held is not None:
            held_out[value] = held
            validation.append(example(held, *low_res[held], trained))
        targets[value] = torch.stack([tokens[z] for z in drawn]).cpu()
        per_label.append((drawn, list(annotation.empty_slices.get(value, ())), trained, held, tokens, low_res))

    train_set: Sequence[Example] | Sequence[JointExample] = examples
    validation_set: Sequence[Example] | Sequence[JointExample] = validation
    if config.joint:
        train_set, validation_set = _joint_examples(encoded, per_label, image_size)
    decoder = FewShotMaskDecoder.from_sam(sam, len(values))
    shots = max(len(annotation.drawn_slices(v)) for v in values)
    training = train_decoder(
        decoder, train_set, validation_set, config, shots=shots, progress=progress, cancel=cancel
    )
    head = FewShotHead(
        segments=tuple(annotation.labels.segment(v) for v in values),
        targets=targets,
        decoder_state={k: v.detach().cpu().clone() for k, v in decoder.state_dict().items()},
        base_model=BaseModel(model.sha256, model.name, model.model_type),
        preprocessing=preprocessing,
        axis=annotation.axis,
        image_size=image_size,
        training=dict(training.summary(), held_out=held_out, shots=shots),
        joint=config.joint,
    )
    return FitResult(head, decoder, training, encoded.stats, held_out)


def _joint_examples(encoded, per_label: list, image_size: int) -> tuple[list[JointExample], list[JointExample]]:
    """(training, validation) joint examples from the per-label pieces built in :func:`fit_head`:
    ``per_label[i] = (drawn, empty, trained, held, tokens by slice, (target, valid) by slice)``."""
    slices = sorted({z for drawn, empty, *_ in per_label for z in (*drawn, *empty)})
    training: list[JointExample] = []
    validation: list[JointExample] = []
    for z in slices:
        embedding = encoded[z]
        size = 4 * int(embedding.embedding.shape[-1])
        valid = valid_region(embedding, image_size, size)
        targets = torch.zeros((len(per_label), size, size))
        trains, holds, prompts = [], [], []
        for index, (_drawn, empty, trained, held, tokens, low_res) in enumerate(per_label):
            if z in low_res:
                targets[index] = low_res[z][0]
            trains.append(z in trained or z in empty)
            holds.append(z == held)
            prompts.append(torch.stack([tokens[s] for s in ([s for s in trained if s != z] or trained)]))
        for supervised, out in ((trains, training), (holds, validation)):
            if any(supervised):
                out.append(JointExample(z, embedding.embedding, targets, valid, tuple(prompts),
                                        torch.tensor(supervised, dtype=torch.bool)))
    return training, validation
