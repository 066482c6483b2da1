"""How long ago something happened, as the command line says it."""

from __future__ import annotations

__all__ = ["ago"]


def ago(seconds: float) -> str:
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"
