"""Users' JSON files (subnet configs, schedules), read so that every way a file can be bad
(unreadable, not UTF-8, not JSON, nested deeper than Python's parser can follow) is one
ValueError naming the file, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["parse", "read", "read_text"]


def parse(text: str | bytes, where: str) -> Any:
    """The JSON value of `text`; `where` (a file, `file:line`, a field) prefixes any error."""
    try:
        return json.loads(text)
    except RecursionError:  # e.g. 200k nested lists: the C parser gives up, a ValueError here
        raise ValueError(f"{where}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError, bytes that are not text, over-long integers
        raise ValueError(f"{where}: not valid JSON ({exc})") from None


def read_text(path: str | Path) -> str:
    """The file's text (UTF-8), or a ValueError naming the file and the reason."""
    try:
        data = Path(path).read_bytes()
    except (OSError, ValueError) as exc:  # ValueError: a name with a NUL byte
        reason = getattr(exc, "strerror", None) or exc
        raise ValueError(f"{path}: cannot be read ({reason})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: not valid JSON (not UTF-8 text: {exc.reason} at byte {exc.start})"
        ) from None


def read(path: str | Path) -> Any:
    """The JSON value of a file."""
    return parse(read_text(path), str(path))
