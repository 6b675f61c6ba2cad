"""One ``promptlift batch`` input line, checked field by field before anything is sent.

A line is a JSON object: ``{"id": ..., "messages": [...]}`` or ``{"id": ..., "prompt": "..."}``,
with optional ``model``, ``temperature``, ``max_tokens``, ``top_p``, ``stop``, ``seed`` and
``response_format`` (null is the same as absent). ``id`` may be any JSON value, echoed as given.
Anything else — not JSON, not an object, an unknown key, a value of the wrong type or out of range,
NaN — makes that line a ``DatasetError`` that names the field and what it takes; the other lines
are unaffected.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from typing import Any

from promptlift.errors import DatasetError

FIELDS = (
    *("id", "messages", "prompt", "model", "temperature", "max_tokens", "top_p", "stop", "seed"),
    "response_format",
)
_ROLES = ("system", "user", "assistant")
_INT32 = 2**31 - 1
_INT64 = 2**63 - 1
_RESPONSE_TYPES = ("text", "json_object", "json_schema")


@dataclass(frozen=True)
class ParsedLine:
    """What one input line asks for: its ``id`` (as given) and the request's fields, all checked."""

    id: Any
    messages: tuple[dict[str, str], ...] | str
    params: dict[str, Any]


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f'the key "{key}" appears twice')
        out[key] = value
    return out


def load_json(text: str) -> Any:
    """Strict JSON: NaN, Infinity, numbers out of range and repeated keys are refused."""
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise ValueError("nested too deeply") from None


def parse_line(text: str) -> tuple[Any, ParsedLine | DatasetError]:
    """``(id, fields)``, or ``(id, the error)`` naming the first problem found.

    The id is read before any other field is checked, so a line refused for a bad field keeps it
    (None when the line is not a JSON object)."""
    try:
        item = load_json(text)
    except ValueError as exc:
        return None, DatasetError(f"not JSON ({exc})")
    if not isinstance(item, dict):
        return None, DatasetError(f"a line must be a JSON object, got {_shown(item)}")
    try:
        return item.get("id"), ParsedLine(item.get("id"), _messages(item), _params(item))
    except DatasetError as exc:
        return item.get("id"), exc


def _messages(item: dict[str, Any]) -> tuple[dict[str, str], ...] | str:
    unknown = [k for k in item if k not in FIELDS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], FIELDS, n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise DatasetError(f'unknown key "{unknown[0]}"{hint}; a line takes {", ".join(FIELDS)}')
    if ("messages" in item) == ("prompt" in item):
        raise DatasetError('a line needs exactly one of "messages" (a list) or "prompt" (a string)')
    if "prompt" in item:
        prompt = item["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise DatasetError(f'"prompt" must be a non-empty string, got {_shown(prompt)}')
        return prompt
    messages = item["messages"]
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f'"messages" must be a non-empty list of messages, got {_shown(messages)}')
    return tuple(_message(i, m) for i, m in enumerate(messages))


def _message(index: int, message: Any) -> dict[str, str]:
    where = f'"messages"[{index}]'
    if not isinstance(message, dict):
        shape = '{"role": ..., "content": "..."}'
        raise DatasetError(f"{where} must be an object {shape}, got {_shown(message)}")
    extra = [k for k in message if k not in ("role", "content")]
    if extra:
        raise DatasetError(f'{where} has an unknown key "{extra[0]}"; a message takes role and content')
    if message.get("role") not in _ROLES:
        roles = ", ".join(_ROLES)
        raise DatasetError(f"{where}: role must be one of {roles}, got {_shown(message.get('role'))}")
    if not isinstance(message.get("content"), str):
        raise DatasetError(f"{where}: content must be a string, got {_shown(message.get('content'))}")
    return {"role": message["role"], "content": message["content"]}


def _number(item: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = item.get(name)
    if value is None:  # absent or null: the default
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise DatasetError(f'"{name}" must be a number from {low:g} to {high:g}, got {_shown(value)}')
    return float(value)


def _integer(item: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = item.get(name)
    if value is None:  # absent or null: the default
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DatasetError(f'"{name}" must be a whole number from {low} to {high}, got {_shown(value)}')
    return value


def _stop(item: dict[str, Any]) -> tuple[str, ...] | None:
    if item.get("stop") is None:
        return None
    value = item["stop"]
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise DatasetError(f'"stop" must be a non-empty string or a list of them, got {_shown(value)}')
    return tuple(stops)


def _response_format(item: dict[str, Any]) -> dict[str, Any] | None:
    if item.get("response_format") is None:
        return None
    value = item["response_format"]
    if not isinstance(value, dict) or value.get("type") not in _RESPONSE_TYPES:
        raise DatasetError(
            f'"response_format" must be an object such as {{"type": "json_object"}} (type: '
            f"{', '.join(_RESPONSE_TYPES)}), got {_shown(value)}"
        )
    if value["type"] == "json_schema" and not isinstance(value.get("json_schema"), dict):
        raise DatasetError('"response_format" of type json_schema needs a "json_schema" object')
    return value


def _params(item: dict[str, Any]) -> dict[str, Any]:
    model = item.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip() or model != model.strip()):
        raise DatasetError(f'"model" must be a model name such as "openai/gpt-4o-mini", got {_shown(model)}')
    found: dict[str, Any] = {
        "model": model,
        "temperature": _number(item, "temperature", 0.0, 2.0),
        "top_p": _number(item, "top_p", 0.0, 1.0),
        "max_tokens": _integer(item, "max_tokens", 1, _INT32),
        "seed": _integer(item, "seed", -_INT64 - 1, _INT64),
        "stop": _stop(item),
        "response_format": _response_format(item),
    }
    return {k: v for k, v in found.items() if v is not None}
