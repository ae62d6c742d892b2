"""SSM-SAM (Self-Sampling Meta SAM, Leng et al., WACV 2024) for the ``meta`` engine.

- adapters.py, model.py: the frozen SAM ViT with adapters in every block, exposing its four
  stage embeddings (model.py) - per-block tune MLPs, GELU, shared up-projection (adapters.py).
- self_sampling_prompt.py: the self-sampling prompt encoder: positive/negative points sampled
  from a prior mask, the image embedding interpolated there as point tokens, learnable global
  queries, self- then cross-attention (no positional encoding).
- mask_attention_block.py, mask_attention_decoder.py: the flexible mask attention decoder
  (FMAD): Eq. 7-10 per stage embedding (V = the support mask, l2-normalised Q/K with a
  temperature, InsNorm(AV * F)), then upsample, concatenate and convolve the four stages.
  SAM's prompt encoder and mask decoder are not used.
- network.py: the whole network; load.py: build it on a checkpoint with an init.
- online.py: Algorithm 1 (S x K per-pair SGD updates at rate alpha); predict.py: which slices
  are predicted; meta_learning.py: Algorithm 2 (T tasks per meta-step, AdamW, cosine schedule);
  tasks.py and labeled_dir.py: its tasks (leave-one-organ-out) and the LABELED_DIR layout;
  init_file.py: INIT.pt files (version 2; inits of the previous network are refused).

Needs the ``sam`` extra (torch, segment-anything) and a ViT SAM checkpoint.
"""
