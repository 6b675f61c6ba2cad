"""Config checking as data: one ``Schema`` per level of the run config, one small check per key.

A check is ``check(value, at) -> value``: it returns the value (converted where a YAML value has
an obvious meaning, like a list of stop strings) or raises ``ConfigError`` naming the file, the
dotted key, what the key must be and what it got. A schema refuses keys it does not know with the
nearest valid name (difflib), so ``prompt.sytem`` or ``dataset.split.sead`` is an error at load
time, not a setting silently ignored. The optimizers' params are checked against their dataclass
fields with ``of_type`` (names and types from the constructor), so a new optimizer needs no new
checking code.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from promptlift.errors import ConfigError


@dataclass(frozen=True)
class At:
    """Where a value sits: the file (or '' for a value given in code) and its dotted key."""

    file: str = ""
    path: str = ""

    def __truediv__(self, key: object) -> At:
        return At(self.file, f"{self.path}.{key}" if self.path else str(key))

    def __str__(self) -> str:
        prefix = f"{self.file}: " if self.file else ""
        return f"{prefix}`{self.path}`" if self.path else prefix.rstrip(": ") or "the config"

    def fail(self, must: str, got: Any, hint: str = "") -> NoReturn:
        raise ConfigError(f"{self} must be {must}, got {shown(got)}{hint}")

    def error(self, message: str) -> ConfigError:
        prefix = f"{self.file}: " if self.file else ""
        return ConfigError(f"{prefix}{message}")


Check = Callable[[Any, At], Any]


def shown(value: Any) -> str:
    """A value as the user wrote it, with its YAML type when that is the surprise."""
    if value is None:
        return "null (an empty value)"
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    kind = {str: "text", bool: "true/false", int: "a number", float: "a number", type(None): "null"}
    name = kind.get(type(value), "a list" if isinstance(value, list) else "a mapping")
    return text if isinstance(value, str | int | float) and not isinstance(value, bool) else f"{name} {text}"


def suggest(key: str, known: Iterable[str]) -> str:
    """'; did you mean `x`?' for the nearest known name, or ''."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def refuse_unknown(mapping: Mapping[Any, Any], known: Iterable[str], at: At, what: str = "key") -> None:
    """Every key of ``mapping`` must be known: the first unknown one is named, with a suggestion."""
    names = list(known)
    for key in mapping:
        if str(key) not in names:
            where = f"`{(at / key).path}`"
            raise at.error(f"unknown {what} {where}{suggest(str(key), names)} (known: {', '.join(names)})")


# -- checks for single values -------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def whole(minimum: int | None = 0) -> Check:
    """An integer (``4`` or ``4.0``), at least ``minimum`` (None: any)."""
    must = "a whole number" if minimum is None else f"a whole number of at least {minimum}"

    def check(value: Any, at: At) -> int:
        if not _is_number(value) or value % 1 or (minimum is not None and value < minimum):
            at.fail(must, value)
        return int(value)

    return check


def number(low: float = 0.0, high: float | None = None, *, above: bool = False) -> Check:
    """A finite number, at least ``low`` (more than ``low`` with ``above``), at most ``high``."""
    if high is not None:
        must = f"a number from {low:g} to {high:g}"
    else:
        must = f"a number above {low:g}" if above else f"a number of at least {low:g}"

    def check(value: Any, at: At) -> float:
        if not _is_number(value) or value < low or (above and value == low):
            at.fail(must, value)
        if high is not None and value > high:
            at.fail(must, value)
        return float(value)

    return check


def text(value: Any, at: At) -> str:
    if not isinstance(value, str) or not value.strip():
        at.fail("a non-empty text", value)
    return value


def any_text(value: Any, at: At) -> str:
    if not isinstance(value, str):
        at.fail("a text", value)
    return value


def flag(value: Any, at: At) -> bool:
    if not isinstance(value, bool):
        at.fail("true or false", value)
    return value


def texts(value: Any, at: At) -> list[str]:
    """One text or a list of texts."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        at.fail("a text or a list of texts", value)
    return list(items)


def mapping(value: Any, at: At) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        at.fail("a mapping", value)
    return dict(value)


def mappings(value: Any, at: At) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(x, Mapping) for x in value):
        at.fail("a list of mappings", value)
    return [dict(x) for x in value]


def choice(*options: str) -> Check:
    def check(value: Any, at: At) -> str:
        if value not in options:
            at.fail(f"one of {', '.join(options)}", value, suggest(str(value), options))
        return str(value)

    return check


def optional(check: Check) -> Check:
    """``check``, or null."""

    def optional_check(value: Any, at: At) -> Any:
        return None if value is None else check(value, at)

    return optional_check


# -- a level of the config ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Schema:
    """The keys one mapping may have, each with its check; ``required`` keys must be present."""

    keys: Mapping[str, Check]
    required: tuple[str, ...] = ()
    example: str = ""  # shown when the value is not a mapping at all
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, value: Any, at: At) -> dict[str, Any]:
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            at.fail(f"a mapping{' like ' + self.example if self.example else ''}", value)
        refuse_unknown(value, self.keys, at)
        for key in self.required:
            if value.get(key) is None:
                raise at.error(f"`{(at / key).path}` is missing; add it (keys: {', '.join(self.keys)})")
        checked = dict(self.defaults)
        checked.update({str(k): self.keys[str(k)](v, at / k) for k, v in value.items()})
        return checked


# -- a value against a type annotation (optimizer params, from the constructor) -----------------------
def of_type(hint: Any) -> Check:
    """A check from a dataclass field's annotation: int, float, bool, str, list[...], dict[str, ...],
    X | None and Any. A count (int) is never negative."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return lambda value, at: value
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return optional(of_type(inner[0])) if len(inner) == 1 else (lambda value, at: value)
    if hint is bool:
        return flag
    if hint is int:
        return whole(0)
    if hint is float:
        return number(0.0)
    if hint is str:
        return any_text
    if origin is list:
        return _list_of(of_type(args[0]) if args else of_type(Any), hint)
    if origin is dict:
        return _dict_of(of_type(args[1]) if len(args) == 2 else of_type(Any))
    return lambda value, at: value


def _list_of(item: Check, hint: Any) -> Check:
    def check(value: Any, at: At) -> list[Any]:
        if not isinstance(value, list):
            at.fail("a list", value)
        return [item(v, at / i) for i, v in enumerate(value)]

    return check


def _dict_of(item: Check) -> Check:
    def check(value: Any, at: At) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            at.fail("a mapping", value)
        return {str(k): item(v, at / k) for k, v in value.items()}

    return check
