"""One-shot atlas segmentation: atlas bundles, 3D atlas registration, label fusion.

- :mod:`.bundle`: the bundle format (zip or folder: manifest, atlas images and label maps,
  optional network weights with sha256), :func:`write_bundle`, :func:`load_bundle`.
- :mod:`.registration`: 3D elastix affine + B-spline registration of an atlas onto a target.
- :mod:`.fusion`: multi-atlas label fusion (majority vote, STAPLE, locally weighted voting).
- :mod:`.apply`: :func:`apply_bundle`, the whole job (register or run the network, fuse,
  optionally refine with SAM).
- :mod:`.deformation`: known smooth random deformations (benchmarks and tests).
- :mod:`.rrl`: the RRL-MedSAM one-shot network (engine ``rrl_medsam``).

Only the bundle format is imported here; the rest loads elastix or torch on demand.
"""

from .bundle import FORMAT_VERSION, AtlasBundle, AtlasLabel, is_bundle, load_bundle, write_bundle

__all__ = ["FORMAT_VERSION", "AtlasBundle", "AtlasLabel", "is_bundle", "load_bundle", "write_bundle"]
