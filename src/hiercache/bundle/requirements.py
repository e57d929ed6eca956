"""Fails early, with one clear line, when the ``bundle`` extra is not installed."""

from __future__ import annotations

from typing import Final

__all__ = ["EXTRA_HINT"]

EXTRA_HINT: Final = "hiercache bundle needs the 'bundle' extra: pip install 'hiercache[bundle]'"

try:
    import grafana_foundation_sdk  # noqa: F401
    import yaml  # noqa: F401
except ImportError as exc:
    raise ImportError(f"{EXTRA_HINT} ({exc.name} is missing)", name=exc.name) from None
