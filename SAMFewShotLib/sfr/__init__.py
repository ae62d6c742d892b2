"""SFR (Li et al., "Stitching, Fine-tuning, Re-training", arXiv 2403.11229): one labelled volume
plus the unlabelled rest of a study -> a compact 3D segmenter.

Layers, lowest first: :mod:`.stitching` (slices <-> SAM-sized mosaics), :mod:`.pseudo_labels`
(pseudo-label sources and confidences, SFR+ selection), :mod:`.retraining` (MONAI 3D network,
semi-supervised methods such as Mean Teacher, checkpoints), :mod:`.bundle_model` (the ``sfr``
engine of atlas bundles), :mod:`.pipeline` (train a study model end to end).
Importing this package imports neither torch nor MONAI.
"""

#: File name of the re-training checkpoint in a study model's work folder (what ``--resume`` continues).
CHECKPOINT_NAME = "sfr_checkpoint.pt"
