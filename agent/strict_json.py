"""JSON as the user gets it: strict (RFC 8259), so every reader takes it. Python's json
writes NaN and Infinity, which are not JSON; here a non-finite number is null."""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["dumps", "finite"]


def finite(value: Any) -> Any:
    """`value` with every non-finite float, at any depth, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def dumps(value: Any, **kwargs) -> str:
    return json.dumps(finite(value), allow_nan=False, **kwargs)
