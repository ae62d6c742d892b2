"""The names of the multi-atlas label fusion methods (see fusion.py); no heavy imports, so the
command line and the engine catalogue can list them without loading SimpleITK."""

FUSION_METHODS = ("majority", "staple", "local")
