"""``samfewshot meta-train`` (being built in this session; registers nothing yet)."""

from __future__ import annotations

def add_meta_parser(subparsers) -> None:
    """Register ``samfewshot meta-train`` on ``subparsers`` (the top-level subparsers action)."""
