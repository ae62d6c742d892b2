"""Fault injection: truncated and corrupt inputs, full disks, memory bombs, leftovers (issue 14)."""
