"""Tools an agent prompt declares: a JSON schema the model sees, and the user's Python function.

A tool is declared by hand (name, description, JSON-schema parameters) or derived from a function's
signature and docstring (``Tool.from_function``). Its description is text an optimizer may change,
like an instruction; the function is what the agent loop runs when the model calls the tool.

Running a tool never raises: bad arguments, an exception inside the function or a timeout become an
error text the model is shown (``ToolOutcome.error``), so one bad call costs a step, not the row.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import enum
import functools
import inspect
import json
import re
import threading
import time
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptlift.errors import ConfigError

DEFAULT_TIMEOUT_S = 30.0
# What OpenAI, Anthropic and Gemini all accept (ASCII); Gemini's must start with a letter or _.
_TOOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class ToolOutcome:
    """What one tool call returned: ``result`` (text the model sees) or ``error`` (also shown)."""

    result: str = ""
    error: str = ""
    latency_s: float = 0.0

    @property
    def shown(self) -> str:
        """The text the model is given as the tool's result."""
        return f"error: {self.error}" if self.error else self.result


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    function: Callable[..., Any] | None = field(default=None, compare=False)
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if not _TOOL_NAME.fullmatch(self.name):
            raise ConfigError(
                f"tool name {self.name!r}: use letters, digits, _ and - (at most 64, starting with "
                "a letter or _), as every provider requires"
            )
        if self.parameters.get("type") != "object":
            raise ConfigError(
                f"tool {self.name!r}: parameters must be a JSON schema of type object, "
                f"got type {self.parameters.get('type')!r}"
            )
        if not (isinstance(self.timeout_s, int | float) and self.timeout_s > 0):
            raise ConfigError(f"tool {self.name!r}: timeout_s must be above 0, got {self.timeout_s!r}")
        object.__setattr__(self, "timeout_s", float(self.timeout_s))  # 3 and 3.0: one key

    @classmethod
    def from_function(
        cls,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> Tool:
        """A tool from ``function``'s signature (types → JSON schema; a parameter without a default is
        required) and docstring (its first paragraph is the description; ``Args:`` lines describe the
        parameters)."""
        summary, described = _docstring(inspect.getdoc(function) or "")
        hints = typing.get_type_hints(function)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for param in inspect.signature(function).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            where = f"tool {function.__name__!r}, parameter {param.name!r}"
            schema = schema_of(hints.get(param.name, Any), where)
            if param.name in described:
                schema = {**schema, "description": described[param.name]}
            properties[param.name] = schema
            if param.default is param.empty:
                required.append(param.name)
        parameters: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            parameters["required"] = required
        return cls(
            name or function.__name__,
            summary if description is None else description,
            parameters,
            function,
            timeout_s,
        )

    @property
    def reference(self) -> str:
        """``module:qualname`` of the function, what a config names it by ("" without one)."""
        fn = self.function
        if fn is None:
            return ""
        return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', getattr(fn, '__name__', '?'))}"

    def with_description(self, description: str) -> Tool:
        return dataclasses.replace(self, description=description)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON that ``from_dict`` (and a YAML config's ``tools:``) loads back; the function is
        named by reference, so a tool defined in ``__main__`` or as a lambda does not load elsewhere."""
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
            "timeout_s": self.timeout_s,
        }
        if self.function is not None:
            out["function"] = self.reference
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base_dir: str | Path | None = None) -> Tool:
        """A tool from ``to_dict``'s shape or a config's: ``function: "module:name"`` alone derives
        the rest from the function (``from_function``); name, description and parameters given
        beside it win."""
        from promptlift.optimize.metrics import load_callable

        target = data.get("function")
        timeout_s = float(data.get("timeout_s", DEFAULT_TIMEOUT_S))
        if target:
            function = load_callable(str(target), base_dir=base_dir, what="tool")
            base = cls.from_function(function, name=data.get("name"), timeout_s=timeout_s)
        elif data.get("name"):
            base = cls(str(data["name"]), "", timeout_s=timeout_s)
        else:
            raise ConfigError("a tool needs `function: module:name`, or a `name:` and `parameters:`")
        description, parameters = data.get("description"), data.get("parameters")
        return dataclasses.replace(
            base,
            name=str(data.get("name") or base.name),
            description=base.description if description is None else str(description),
            parameters=base.parameters if parameters is None else dict(parameters),
        )

    def spec(self) -> dict[str, Any]:
        """The tool as a request's ``tools`` entry (OpenAI's shape; LiteLLM translates it per route)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }

    async def run(self, arguments: str) -> ToolOutcome:
        """Call the function with the model's JSON ``arguments``; never raises (see the module doc).

        A sync function runs in a worker thread; on a timeout the model is told so at once, but the
        thread runs on to its end (Python cannot stop it): give slow sync tools their own deadline."""
        start = time.perf_counter()

        def done(result: str = "", error: str = "") -> ToolOutcome:
            return ToolOutcome(result, error, time.perf_counter() - start)

        if self.function is None:
            return done(error=f"the tool {self.name!r} has no function to run")
        try:
            kwargs = json.loads(arguments or "{}")
        except json.JSONDecodeError as exc:
            return done(error=f"the arguments are not valid JSON ({exc.msg} at character {exc.pos})")
        if not isinstance(kwargs, dict):
            return done(error=f"the arguments must be a JSON object, got {type(kwargs).__name__}")
        properties = self.parameters.get("properties") or {}
        unknown = sorted(set(kwargs) - set(properties))
        missing = [p for p in self.parameters.get("required") or () if p not in kwargs]
        if unknown or missing:
            problems = [f"unknown argument(s) {', '.join(unknown)}"] if unknown else []
            problems += [f"missing argument(s) {', '.join(missing)}"] if missing else []
            return done(error=f"{'; '.join(problems)} (the tool takes: {', '.join(properties) or 'nothing'})")
        deadline = asyncio.timeout(self.timeout_s)
        try:
            async with deadline:
                if inspect.iscoroutinefunction(self.function):
                    value = await self.function(**kwargs)
                else:
                    value = await _in_tool_thread(self.function, kwargs)
        except (Exception, SystemExit) as exc:  # the user's code: the model's to see, never a crash
            # A TimeoutError of the tool's own (socket.timeout is one) is its error, not our deadline.
            if isinstance(exc, TimeoutError) and deadline.expired():
                return done(error=f"the tool did not answer within {self.timeout_s:g} s")
            return done(error=f"{type(exc).__name__}: {exc}")
        return done(
            result=value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
        )


# Sync tools run on threads of their own, not the loop's default executor: a tool that hangs past
# its timeout keeps its thread (Python cannot stop it), and on the default executor a few of them
# would stall every other tool and the event loop's DNS lookups for model calls.
_TOOL_THREADS = 32
_tool_pool: concurrent.futures.ThreadPoolExecutor | None = None
_tool_pool_lock = threading.Lock()


async def _in_tool_thread(function: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    global _tool_pool
    with _tool_pool_lock:
        if _tool_pool is None:
            _tool_pool = concurrent.futures.ThreadPoolExecutor(
                _TOOL_THREADS, thread_name_prefix="promptlift-tool"
            )
    call = functools.partial(contextvars.copy_context().run, function, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_tool_pool, call)


def _docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph, and ``name: text`` lines under ``Args:`` (Google style)."""
    paragraphs = doc.strip().split("\n\n")
    summary = " ".join(paragraphs[0].split()) if paragraphs and not paragraphs[0].startswith("Args:") else ""
    described: dict[str, str] = {}
    in_args = False
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if in_args:
            if not stripped or (stripped.endswith(":") and " " not in stripped):
                in_args = False  # a blank line or the next section (Returns:) ends the arguments
                continue
            head, sep, text = stripped.partition(":")
            key = head.split("(")[0].strip()
            if sep and key.isidentifier():
                described[key] = text.strip()
    return summary, described


_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def schema_of(hint: Any, where: str = "a tool parameter") -> dict[str, Any]:
    """The JSON schema of a type annotation: str, int, float, bool, list[...], dict[str, ...],
    Literal, Enum, X | None, a pydantic model, and Any (no constraint)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return {}
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return schema_of(inner[0], where)
        return {"anyOf": [schema_of(a, where) for a in inner]}
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple, set):
        return {"type": "array", **({"items": schema_of(args[0], where)} if args else {})}
    if origin is dict or hint is dict:
        return {
            "type": "object",
            **({"additionalProperties": schema_of(args[1], where)} if len(args) == 2 else {}),
        }
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [member.value for member in hint]}
    model_schema = getattr(hint, "model_json_schema", None)  # a pydantic model
    if callable(model_schema):
        return dict(model_schema())
    raise ConfigError(
        f"{where}: no JSON schema for the annotation {hint!r}; use str, int, float, bool, list, dict, "
        "Literal, an Enum or a pydantic model, or declare the tool's parameters by hand"
    )
