"""Defaults of ``samfewshot atlas train`` that the parser shows (torch-free, so building the
``samfewshot`` parser never imports torch)."""

#: Cube edge in voxels the volumes are resampled to (RRL-MedSAM trains at 128^3).
DEFAULT_SIZE = 128
#: Training iterations of the joint registration-segmentation stage.
DEFAULT_ITERATIONS = 1000
