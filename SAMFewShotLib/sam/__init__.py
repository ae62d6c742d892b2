"""Segment Anything support: checkpoints registry and loader, slice preprocessing identical to
SamPredictor, the embedding cache, batched decoding and SAM-MPA auto-prompts.

Modules by job: :mod:`.checkpoints` (registry of known checkpoints), :mod:`.weights_store`
(the local cache: records, import, verify, resolve), :mod:`.download` (resumable HTTP, only on
``weights download``), :mod:`.architecture` (safe reading, architecture from weight shapes),
:mod:`.model_building` (segment_anything / MobileSAM classes), :mod:`.model_loading`
(``load_sam``), :mod:`.device`, :mod:`.preprocess`, :mod:`.encoder`, :mod:`.embedding_cache`,
:mod:`.decoder`, :mod:`.prompts`, :mod:`.refinement` (SAM-MPA refinement of a coarse mask).

Everything that runs a model needs the ``sam`` extra (torch, torchvision, segment-anything).
"""
