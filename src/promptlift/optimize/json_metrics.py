"""``json_fields``: a metric that scores a JSON answer field by field (exact, numeric within a
tolerance, set overlap, contains), each field with its weight.

It reads the answer itself (``structured.extract_json``: fences and prose around the object are
tolerated), so it scores any prompt's JSON answers; with an output schema the evaluator has
validated them first. Its YAML is checked in ``metrics`` (``METRICS["json_fields"]``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptlift.errors import ConfigError
from promptlift.optimize.metrics import MATCHES, Normalize, Score
from promptlift.optimize.schema import suggest
from promptlift.optimize.structured import extract_json

if TYPE_CHECKING:
    from promptlift.optimize.dataset import Row

_TEXT = Normalize()  # strings in JSON answers compare as exact_match's do: case and spacing aside


@dataclass(frozen=True)
class FieldMatch:
    """How one field of a JSON answer is scored: against the row's dataset field ``expected``
    (a native value, or a JSON string of one), by ``match``:

    - ``exact``: equal values; strings ignoring case and spacing, numbers as numbers (3 == 3.0);
    - ``numeric``: numbers (or numeric strings) within ``abs_tol`` or ``rel_tol``;
    - ``set``: lists (a JSON list, or comma-separated text) scored by overlap, |A ∩ B| / |A ∪ B|;
    - ``contains``: the expected text inside the answer's, or the expected item in its list.

    ``weight`` is the field's share of the row's score."""

    expected: str
    match: str = "exact"
    abs_tol: float = 1e-6
    rel_tol: float = 0.0
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.match not in MATCHES:
            raise ConfigError(f"json field match must be one of {', '.join(MATCHES)}, got {self.match!r}")
        if not self.weight >= 0:
            raise ConfigError(f"json field weight must be at least 0, got {self.weight!r}")

    @staticmethod
    def wanted(want: Any, got: Any) -> Any:
        """The expected value as compared: a dataset's JSON string decoded, unless the answer's
        value is a string too."""
        return _decoded(want) if isinstance(want, str) and not isinstance(got, str) else want

    def score(self, want: Any, got: Any) -> float:
        """The field's score in [0, 1]: the expected value ``want`` against the answer's ``got``."""
        want = self.wanted(want, got)
        if self.match == "numeric":
            w, g = _number(_decoded(want) if isinstance(want, str) else want), _number(got)
            ok = (
                w is not None
                and g is not None
                and math.isclose(g, w, abs_tol=self.abs_tol, rel_tol=self.rel_tol)
            )
            return 1.0 if ok else 0.0
        if self.match == "set":
            a, b = {_item_key(x) for x in _items(want)}, {_item_key(x) for x in _items(got)}
            return len(a & b) / len(a | b) if a | b else 1.0
        if self.match == "contains":
            if isinstance(got, list):
                return 1.0 if any(_same_value(want, item) for item in got) else 0.0
            shown = got if isinstance(got, str) else json.dumps(got, ensure_ascii=False)
            return 1.0 if _TEXT(str(want)) in _TEXT(shown) else 0.0
        return 1.0 if _same_value(want, got) else 0.0


def _decoded(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().replace(",", ""))
        except ValueError:
            return None
    return None


def _items(value: Any) -> list[Any]:
    if isinstance(value, str):
        decoded = _decoded(value)
        if isinstance(decoded, list):
            return decoded
        return [part for part in (p.strip() for p in value.split(",")) if part]
    return list(value) if isinstance(value, list | tuple) else [value]


def _item_key(value: Any) -> str:
    return _TEXT(value) if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _same_value(want: Any, got: Any) -> bool:
    if isinstance(want, str) and isinstance(got, str):
        return _TEXT(want) == _TEXT(got)
    w, g = _number(want), _number(got)
    if w is not None and g is not None and not isinstance(want, str) and not isinstance(got, str):
        return math.isclose(w, g, rel_tol=1e-9, abs_tol=1e-12)
    return bool(want == got)


def json_lookup(value: Any, path: str) -> tuple[bool, Any]:
    """``(found, value)`` at a dotted ``path`` (``address.city``, ``items.0.name``); a key that
    itself holds dots is found as written first."""
    if isinstance(value, dict) and path in value:
        return True, value[path]
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class JsonFields:
    """Scores a JSON answer field by field: ``fields`` maps each path in the answer (dotted for
    nested objects) to a ``FieldMatch`` (a text is shorthand for ``FieldMatch(expected=text)``).
    The score is the weighted mean of the fields'; the reason names each field that missed, with
    what was expected and what came. An answer that is not JSON scores 0. ``field`` names the
    dataset field holding the whole answer, for fewshot's demos (optional)."""

    fields: Mapping[str, FieldMatch | str]
    field: str | None = None
    name: str = "json_fields"
    checks: Mapping[str, FieldMatch] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checks = {str(k): FieldMatch(v) if isinstance(v, str) else v for k, v in self.fields.items()}
        if not checks or sum(c.weight for c in checks.values()) <= 0:
            raise ConfigError("metric json_fields: name at least one field, with weights that sum above 0")
        object.__setattr__(self, "checks", checks)

    def __call__(self, row: Row, output: str) -> Score:
        found = extract_json(output)
        if not found.ok:
            return Score(0.0, f"output is not JSON: {found.error}")
        total = earned = 0.0
        misses = []
        for path, check in self.checks.items():
            want = row.get(check.expected)
            if want is None:
                raise ConfigError(
                    f"metric json_fields: field {path!r} is expected in {check.expected!r}, which row "
                    f"{row.index + 1} does not have (its fields: {', '.join(row.fields)})"
                    f"{suggest(check.expected, row.fields)}"
                )
            present, got = json_lookup(found.value, path)
            value = check.score(want, got) if present else 0.0
            total, earned = total + check.weight, earned + check.weight * value
            if not present:
                misses.append(f"{path}: missing (expected {_short(want)})")
            elif value < 1.0:
                overlap = f" (overlap {value:.2f})" if check.match == "set" else ""
                misses.append(
                    f"{path}: expected {_short(check.wanted(want, got))}, got {_short(got)}{overlap}"
                )
        return Score(earned / total if total else 0.0, "; ".join(misses))
