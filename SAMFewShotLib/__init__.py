"""SAMFewShotLib: few annotated slices or one atlas in, a full 3D segmentation out.

The backend of the SAMFewShot 3D Slicer extension. It imports no slicer, qt or vtk.
"""

from .annotation import SparseAnnotation
from .volume import LabelVolume, Segment, Volume

__all__ = ["LabelVolume", "Segment", "SparseAnnotation", "Volume"]
__version__ = "0.1.0"  # the package version (pyproject.toml reads it from here)
