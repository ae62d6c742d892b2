"""``samfewshot fewshot train|apply`` (being built in this session; registers nothing yet)."""

from __future__ import annotations

def add_fewshot_parser(subparsers) -> None:
    """Register ``samfewshot fewshot train|apply`` on ``subparsers`` (the top-level subparsers action)."""
