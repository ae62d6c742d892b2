"""Slice-to-slice mask propagation: registration of adjacent slices, intensity model, chaining."""
