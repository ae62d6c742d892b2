"""``samfewshot atlas create|info|apply|train`` (being built in this session; registers nothing yet)."""

from __future__ import annotations

def add_atlas_parser(subparsers) -> None:
    """Register ``samfewshot atlas create|info|apply|train`` on ``subparsers`` (the top-level subparsers action)."""
