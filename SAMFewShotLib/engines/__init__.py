"""Propagation engines: one file per engine, one common interface (see base.py)."""
