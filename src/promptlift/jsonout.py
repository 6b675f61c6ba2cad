"""Strict JSON for everything promptlift writes: ``--json`` outputs, the run store, exports.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which is not JSON: strict parsers
(``jq``, JavaScript's ``JSON.parse``, Go, Rust's serde) reject the whole document. A score can be
NaN (the mean of no rows, an interval of one row), so every writer goes through ``dumps``, which
writes a non-finite number as ``null`` ("no value") and refuses to write one by accident.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every NaN and infinity, at any depth, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that always writes valid JSON (non-finite numbers as null)."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
