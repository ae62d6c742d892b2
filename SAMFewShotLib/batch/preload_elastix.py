"""Loads itk-elastix when imported: the local pool's fork server imports this module once for
registration models (atlas bundles, reference images), so that every worker forked from it
starts with elastix loaded instead of paying the load itself (about 13 s of CPU per process
on the 2-core machine this was measured on)."""

import itk

# itk loads its modules lazily, on first attribute access: touch what registration uses.
REGISTRATION_API = (itk.elastix_registration_method, itk.transformix_filter, itk.ParameterObject)
