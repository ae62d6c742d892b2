"""``samfewshot batch`` (being built in this session; registers nothing yet)."""

from __future__ import annotations

def add_batch_parser(subparsers) -> None:
    """Register ``samfewshot batch`` on ``subparsers`` (the top-level subparsers action)."""
