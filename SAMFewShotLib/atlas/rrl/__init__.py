"""RRL-MedSAM: a one-shot atlas network (engine ``rrl_medsam`` of atlas bundles).

After Wang et al., "SAM-Guided Robust Representation Learning for One-Shot 3D Medical Image
Segmentation" (arXiv 2504.20501). One labelled atlas and unlabelled images of the same region
train a joint registration-segmentation network whose encoder is a lightweight 2D encoder
distilled from SAM's image encoder.

Modules (one concept each):

- :mod:`.lightweight_encoder`: the SAM-compatible lightweight encoder (1.6 M parameters, 1.8 % of ViT-B);
- :mod:`.volume_features`: how that 2D encoder feeds the 3D branch (per-slice, stacked, z-pooled;
  the coarsest level is the distilled neck);
- :mod:`.pyramid_decoder`, :mod:`.registration_decoder`, :mod:`.segmentation_decoder`,
  :mod:`.prompt_decoder`: the 3D decoders (displacement; class logits; auto-prompted logits);
- :mod:`.model`: the whole network and its configuration;
- :mod:`.spatial_transformer`: warping with ``grid_sample``; :mod:`.losses`: NCC, smoothness, Dice;
- :mod:`.ema`: mutual EMA (Eq. 2-3); :mod:`.distillation`: stage 1 (MSE to SAM's embeddings,
  on the working-grid slices the 3D model encodes); :mod:`.augmentation`: the paper's
  mirroring, rotation, scaling and elastic augmentation (TorchIO);
- :mod:`.cube`, :mod:`.data`: resampling to the 128^3 cube and back, training inputs;
- :mod:`.training`: ``train_rrl_bundle`` (alternating medical / general steps, each followed by
  the mutual EMA; the loss schedule); :mod:`.checkpoint`, :mod:`.network_file`: files;
- :mod:`.apply`: ``apply_rrl``; :mod:`.cli`: ``samfewshot atlas train``.

Deviations from the paper (details in the modules): the network computes on a working grid of
half the cube (64^3 for 128^3) so that a 128^3 pair runs in about a second on one CPU core;
the 2D encoder is applied slice by slice and its features stacked into 3D; the displacement
is a plain dense field; NCC is computed on globally standardised images; the mutual EMA uses
both encoders' pre-update weights (a simultaneous exchange); the atlas image is also
segmented against its own labels during training, and the registration's Dice term is ramped
in; without a teacher checkpoint stage 1 is skipped (with one it always runs). Kept as options,
off by default: one joint step instead of the alternating ones (``alternate=False``), no
augmentation, stage 3 instead of the neck on top of the pyramid (older bundles). Nothing heavy
is imported here.
"""
