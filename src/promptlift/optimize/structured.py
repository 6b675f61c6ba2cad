"""Structured output: a prompt's JSON schema, sent as ``response_format`` and checked on each answer.

``OutputSchema.of`` takes a JSON schema (a mapping) or a pydantic model class. The request carries
OpenAI's ``{"type": "json_schema", "json_schema": {name, schema, strict}}``; LiteLLM translates it
per route (a forced tool on older Anthropic models, ``response_json_schema`` on Gemini 2+).

``parse`` is lenient about the wrapping and strict about the value: models often put the object in a
```json fence or between sentences, so the first JSON value found is taken; that value must then
validate against the schema. A failure is one line naming the failing path, like
``$.items[2].price: 'x' is not of type 'number'``, which the evaluator gives as the row's reason.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from promptlift.errors import ConfigError
from promptlift.optimize.schema import At, flag, refuse_unknown, shown

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what OpenAI accepts as json_schema.name
_FENCE = re.compile(r"```[A-Za-z]*[ \t]*\n?(.*?)```", re.S)
_REASON_WIDTH = 240


@dataclass(frozen=True)
class Parsed:
    """An answer read as JSON: ``value`` when it parsed and validated, else ``error`` (one line)."""

    value: Any = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def _one_line(text: str, width: int = _REASON_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def json_path(parts: Any) -> str:
    """``$.items[2].price`` for the path ``["items", 2, "price"]``."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def extract_json(text: str) -> Parsed:
    """The JSON value in a model's answer: the whole text, else a fenced block, else the first
    object (or array) that decodes where a ``{`` (``[``) starts. No schema is applied."""
    stripped = text.strip()
    if not stripped:
        return Parsed(error="the output is empty")
    try:
        return Parsed(json.loads(stripped))
    except json.JSONDecodeError as exc:
        first = exc
    for fenced in _FENCE.finditer(text):
        try:
            return Parsed(json.loads(fenced.group(1)))
        except json.JSONDecodeError:
            pass
    decoder = json.JSONDecoder()
    for start in re.finditer(r"[{\[]", text):
        try:
            return Parsed(decoder.raw_decode(text, start.start())[0])
        except json.JSONDecodeError:
            pass
    return Parsed(error=f"no JSON object found ({first.msg} at character {first.pos})")


def check_json_schema(schema: Any, at: At) -> dict[str, Any]:
    """A JSON schema for a whole answer: a mapping, valid for its draft (``check_schema``), of
    type object (every provider's structured output is one object). One-line ConfigError naming
    the key, with the path inside the schema, otherwise."""
    if not isinstance(schema, Mapping):
        at.fail("a JSON schema, like {type: object, properties: {label: {type: string}}}", schema)
    # plain JSON: YAML's dates or tuples would not survive an export
    plain: dict[str, Any] = json.loads(json.dumps(schema, default=str))
    try:
        jsonschema.validators.validator_for(plain).check_schema(plain)
    except SchemaError as exc:
        where = at
        for part in exc.path:
            where = where / part
        raise where.error(f"`{where.path}` is not a valid JSON schema: {_one_line(exc.message)}") from None
    _check_refs(plain, at)
    if plain.get("type") != "object":
        raise at.error(
            f"`{at.path}` must be a schema of `type: object` (structured output is one JSON object), "
            f"got type {shown(plain.get('type'))}"
        )
    return plain


_SELF = "urn:promptlift:output-schema"  # the schema's own URI, so "#/$defs/..." resolves in it


def _check_refs(schema: dict[str, Any], at: At) -> None:
    """Every ``$ref`` in ``schema`` resolves (a dangling one would fail only when an answer reaches
    it, as a traceback from the validator): checked by resolving each one here."""
    resource = Resource.from_contents(schema, default_specification=DRAFT202012)
    resolver = Registry().with_resource(_SELF, resource).resolver(base_uri=_SELF)

    def walk(node: Any, where: At) -> None:
        if isinstance(node, Mapping):
            ref = node.get("$ref")
            if isinstance(ref, str):
                try:
                    resolver.lookup(ref)
                except Unresolvable as exc:  # PointerToNowhere, or a remote schema (never fetched)
                    raise where.error(
                        f"`{(where / '$ref').path}`: {ref!r} points to nothing in the schema "
                        f"({type(exc).__name__}); define it (under $defs) or fix the reference"
                    ) from None
            for key, value in node.items():
                walk(value, where / key)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, where / i)

    walk(schema, at)


@dataclass(frozen=True)
class OutputSchema:
    """The JSON schema a prompt's answers follow. ``strict`` asks the provider to enforce it
    (OpenAI then needs every property required and ``additionalProperties: false``); either way
    each answer is validated here."""

    name: str
    schema: Mapping[str, Any]
    strict: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigError(
                f"output schema name {self.name!r}: use letters, digits, _ and - (at most 64), "
                "as OpenAI requires"
            )
        if not isinstance(self.strict, bool):
            raise ConfigError(
                f"output schema {self.name!r}: strict must be true or false, got {self.strict!r}"
            )
        object.__setattr__(self, "schema", check_json_schema(self.schema, At("", "output_schema.schema")))

    @classmethod
    def of(cls, source: Any, *, name: str | None = None, strict: bool = False) -> OutputSchema:
        """From a JSON-schema mapping or a pydantic model class (its ``model_json_schema()``); an
        ``OutputSchema`` is returned as is. The name defaults to the model's class name, or the
        schema's ``title``, or "output"."""
        if isinstance(source, OutputSchema):
            return source
        model_schema = getattr(source, "model_json_schema", None)
        if isinstance(source, type) and callable(model_schema):  # a pydantic model class
            return cls(name or source.__name__, model_schema(), strict)
        if isinstance(source, Mapping):
            title = source.get("title")
            default = re.sub(r"[^A-Za-z0-9_-]+", "_", title)[:64] if isinstance(title, str) else ""
            return cls(name or default or "output", source, strict)
        raise ConfigError(
            "an output schema is a JSON schema (a mapping) or a pydantic model class, "
            f"got {type(source).__name__}"
        )

    def response_format(self) -> dict[str, Any]:
        """The request's ``response_format`` (OpenAI's shape; LiteLLM maps it for other routes). A
        copy each time: a route's translation may edit the schema it is given."""
        return {
            "type": "json_schema",
            "json_schema": {
                "name": self.name,
                "schema": copy.deepcopy(dict(self.schema)),
                "strict": self.strict,
            },
        }

    def parse(self, text: str) -> Parsed:
        """The answer's JSON value, validated; a failure names the first failing path."""
        found = extract_json(text)
        if not found.ok:
            return found
        try:
            error: ValidationError | None = best_match(self._validator.iter_errors(found.value))
        except Unresolvable as exc:  # a reference the schema check could not see (a remote one)
            return Parsed(error=f"the schema cannot be applied: {type(exc).__name__}: {_one_line(str(exc))}")
        if error is None:
            return found
        return Parsed(error=f"{json_path(error.absolute_path)}: {_one_line(error.message)}")

    @functools.cached_property
    def _validator(self) -> Any:  # built once per schema, not per answer
        return jsonschema.validators.validator_for(self.schema)(self.schema)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "schema": copy.deepcopy(dict(self.schema)), "strict": self.strict}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputSchema:
        """``to_dict``'s shape, or a bare JSON schema (a schema has no ``schema`` keyword)."""
        return config_output_schema(data, At("", "output_schema"))

    def describe(self, width: int = 400) -> str:
        """The schema as one short line, for terminals and a reflecting model."""
        return _one_line(json.dumps(dict(self.schema), ensure_ascii=False, sort_keys=True), width)


_WRAPPED = ("schema", "name", "strict")


def config_output_schema(value: Any, at: At) -> OutputSchema:
    """A config's ``output_schema:``: a JSON schema, or ``{schema: ..., name: ..., strict: ...}``;
    every mistake one line naming its key."""
    if not isinstance(value, Mapping):
        at.fail("a JSON schema or {schema: ..., name: ..., strict: ...}", value)
    if "schema" not in value:
        bare = check_json_schema(value, at)  # its own errors already name the key
        return _built(lambda: OutputSchema.of(bare), at)
    refuse_unknown(value, _WRAPPED, at)
    schema = check_json_schema(value["schema"], at / "schema")
    strict = flag(value["strict"], at / "strict") if "strict" in value else False
    name = value.get("name")
    if name is not None and not isinstance(name, str):
        (at / "name").fail("a text", name)
    return _built(lambda: OutputSchema.of(schema, name=name, strict=strict), at)


def _built(make: Callable[[], OutputSchema], at: At) -> OutputSchema:
    try:
        return make()
    except ConfigError as exc:
        raise at.error(f"`{at.path}`: {exc}") from None
