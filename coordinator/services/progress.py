"""How far a long service call has come, told through a callback the caller renders (the
CLI as a bar or status lines on stderr), so that services know nothing of terminals."""

from __future__ import annotations

from typing import Protocol

__all__ = ["OnProgress", "quiet"]


class OnProgress(Protocol):
    def __call__(self, phase: str, done: int, total: int | None, detail: str = "") -> None:
        """`phase` has `done` of `total` units (None: a total not known ahead) behind it;
        `detail` says what they are (e.g. "LUT entries 40/340")."""


def quiet(phase: str, done: int, total: int | None, detail: str = "") -> None:
    """Reports nowhere: for callers with no one to tell."""
