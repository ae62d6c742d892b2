"""How the propagation picks the drawn slice each slice takes its mask from (``--support``), with
no heavy imports so the engine catalogue and the command line can list the names.

- ``nearest``: the drawn slices next to it along the stack: between two drawn slices both chains,
  fused by distance; beyond them the outermost one (``mask_chain.py``).
- ``kcentroid``: SAM-MPA's support-driven propagation: every slice joins the cluster of the drawn
  slice nearest in feature space (k-centroid assignment, ``support_clusters.py``) and takes that
  centre's mask, chained slice to slice from the centre (``support_propagation.py``).
- ``kcentroid-direct``: the same assignment, the centre registered directly onto the slice (as the
  paper registers each exemplar to the images of its cluster).
"""

#: The support modes, in the order listed in messages.
SUPPORT_MODES = ("nearest", "kcentroid", "kcentroid-direct")
#: The mode used when none is named (chosen by measurement: README "Support slices (SAM-MPA)").
DEFAULT_SUPPORT = "nearest"
