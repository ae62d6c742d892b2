"""SSM-SAM (Self-Sampling Meta SAM, Leng et al. 2023) for the ``meta`` engine.

- adapters.py, model.py: the frozen SAM ViT with adapters in every block, exposing its four
  stage embeddings (model.py) - per-block tune MLPs, GELU, shared up-projection (adapters.py).
- self_sampling_prompt.py: prompt tokens from points sampled from a prior mask (features
  interpolated from the image embedding) and learnable global queries; self-attention, then
  cross-attention with the image embedding.
- mask_attention_block.py, mask_attention_decoder.py: the flexible mask attention decoder
  (the Gaussian-blurred support mask weights keys and values; multiply-and-norm residual; the
  four stage sub-blocks fused into the image embedding; SAM's mask decoder on top).
- network.py: the whole network; load.py: build it on a checkpoint with an init.
- online.py: Algorithm 1 (online optimiser on the K support pairs); predict.py: which slices
  are predicted; meta_learning.py: Algorithm 2 (MAML++-style meta-learner); tasks.py and
  labeled_dir.py: its tasks and the LABELED_DIR layout; init_file.py: INIT.pt files.

Needs the ``sam`` extra (torch, segment-anything) and a ViT SAM checkpoint.
"""
