"""The slice registrars' names and the default one, with no heavy imports, so the engine catalogue
(and through it the command line and the Slicer module) can list them without loading OpenCV,
scikit-image or elastix. The implementations live in slice_registration.py."""

#: ``register:NAME`` / ``auto:NAME`` options: OpenCV DIS optical flow, scikit-image TV-L1 optical
#: flow, elastix 2D B-spline tuned for adjacent slices, elastix with SAM-MPA's settings (elastix's
#: default B-spline map, 3 resolutions).
REGISTRAR_NAMES = ("dis", "tvl1", "elastix", "elastix-mpa")
#: The registrar used when none is named (chosen by measurement: README "Clinical scale").
DEFAULT_REGISTRAR = "dis"
