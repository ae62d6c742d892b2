"""Few-shot fine-tuning of SAM's mask decoder (Xie et al., WACV 2024) and the reusable head.

- decoder.py: :class:`FewShotMaskDecoder`, SAM's mask decoder prompted by target embeddings.
- targets.py: drawn masks in SAM's frames, masked average pooling.
- training.py: the training loop (Adam, schedule, augmentation, early stopping).
- fit.py: annotation -> examples -> trained head.
- inference.py, predictor.py: batched prediction on volume slices through the embedding cache.
- extent.py: which slices the ``fewshot`` engine predicts.
- head.py: :class:`FewShotHead` and its ``.sfs`` file.
- apply.py: :func:`train_head`, :func:`apply_head`.

Needs the ``sam`` extra (torch, segment-anything).
"""

from .apply import apply_head, run_head, train_head
from .head import FewShotHead, load_head, save_head

__all__ = ["FewShotHead", "apply_head", "load_head", "run_head", "save_head", "train_head"]
