"""Segment Anything support: checkpoints registry and loader, slice preprocessing identical to
SamPredictor, the embedding cache, batched decoding and SAM-MPA auto-prompts.

Everything here needs the ``sam`` extra (torch, torchvision, segment-anything); the rest of
SAMFewShotLib does not import this package.
"""
