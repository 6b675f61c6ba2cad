"""The data that crosses every layer: a request in, a completion out.

Both are frozen: a request is a value (it is hashed for the cache and replayed by retries),
and a completion is a record of what happened.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def messages_from(value: Iterable[Message | Mapping[str, Any]] | str) -> tuple[Message, ...]:
    """Accept a bare string (one user turn), Message objects or OpenAI-style dicts."""
    if isinstance(value, str):
        return (Message("user", value),)
    out: list[Message] = []
    for item in value:
        if isinstance(item, Message):
            out.append(item)
            continue
        role, content = item.get("role"), item.get("content")
        if role not in ("system", "user", "assistant") or not isinstance(content, str):
            raise ValueError(
                f"a message needs role system/user/assistant and string content, got {dict(item)!r}"
            )
        out.append(Message(role, content))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """One call to one model. ``model`` follows LiteLLM's ``provider/model`` convention."""

    model: str
    messages: tuple[Message, ...]
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    response_format: Mapping[str, Any] | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    timeout: float = 120.0  # seconds; LiteLLM's own default is 6000 s
    api_base: str | None = None
    # Which sample this is when the same sampled request is asked for n times (cache key only).
    sample: int = 0
    # A ceiling on the answer that a budget sets when the caller set no max_tokens: sent as max_tokens,
    # but not part of the cache key, so answers are shared between runs with and without a budget.
    output_cap: int | None = None

    def generation_params(self) -> dict[str, Any]:
        """The parameters that change what the model generates, without None values."""
        params: dict[str, Any] = {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "seed": self.seed,
            "response_format": dict(self.response_format) if self.response_format else None,
        }
        if self.stop:
            params["stop"] = list(self.stop)
        if self.tools:
            params["tools"] = [dict(t) for t in self.tools]
        return {k: v for k, v in params.items() if v is not None}

    @property
    def answer_limit(self) -> int | None:
        """The most tokens the answer may have: ``max_tokens``, else a budget's ``output_cap``."""
        return self.max_tokens if self.max_tokens is not None else self.output_cap

    @property
    def is_sampled(self) -> bool:
        """A call whose answer may differ each time: temperature above 0 and no seed."""
        return (self.temperature is None or self.temperature > 0) and self.seed is None

    def replace(self, **changes: Any) -> CompletionRequest:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one call, as the provider billed them (``promptlift.pricing`` prices each part).

    ``input_tokens`` counts every prompt token; of them ``cached_tokens`` were read from the
    provider's prompt cache and ``cache_write_tokens`` written to it (Anthropic bills writes at
    1.25x input). ``output_tokens`` counts every generated token, ``reasoning_tokens`` (hidden
    thinking) among them. ``reported`` False: the provider answered without usage, and the counts
    are promptlift's worst-case estimate of the call (what a budget charges for it).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    reported: bool = True

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, int | bool]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cached_tokens": self.cached_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "reported": self.reported,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """The inverse of ``to_dict``; fields an older record lacks take their defaults."""
        return cls(
            int(data.get("input_tokens", 0)),
            int(data.get("output_tokens", 0)),
            int(data.get("cached_tokens", 0)),
            int(data.get("cache_write_tokens", 0)),
            int(data.get("reasoning_tokens", 0)),
            bool(data.get("reported", True)),
        )


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call the model asked for, the same whichever provider answered.

    ``arguments`` is the JSON text of the call's arguments, as the model wrote it: it may not parse
    (models make mistakes), so it is kept as text and ``parsed_arguments()`` decodes it on demand.
    ``id`` is the provider's (LiteLLM makes one up for Gemini, whose calls carry none).
    """

    name: str
    arguments: str = "{}"
    id: str = ""

    def parsed_arguments(self) -> Any:
        """The arguments decoded; raises ``json.JSONDecodeError`` when the model wrote bad JSON."""
        return json.loads(self.arguments)

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolCall:
        """Our own ``to_dict`` shape, or OpenAI's (``{"id", "function": {"name", "arguments"}}``)."""
        function = data.get("function")
        inner: Mapping[str, Any] = function if isinstance(function, Mapping) else data
        arguments = inner.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments if arguments is not None else {})
        arguments = arguments if arguments.strip() else "{}"  # a call without arguments: an empty object
        return cls(name=str(inner.get("name") or ""), arguments=arguments, id=str(data.get("id") or ""))


@dataclass(frozen=True, slots=True)
class Completion:
    """A normalized answer, whatever served it.

    ``model`` is the model that actually answered (after any fallback); ``cost_usd`` is what the
    call cost when it was made (a cache hit keeps the original cost and sets ``cached``).
    ``tool_calls``: the functions the model asked to call (request ``tools``), in its order; the
    content is then often empty and ``finish_reason`` "tool_calls".
    """

    content: str
    model: str
    provider: str
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    finish_reason: str = "stop"
    attempts: int = 1
    fallback_used: bool = False
    cached: bool = False
    tool_calls: tuple[ToolCall, ...] = ()

    def __post_init__(self) -> None:
        # A provider written before ToolCall existed may still give OpenAI-shaped dicts: accept them
        # here, not later in the cache, where the answer is already paid for.
        if any(not isinstance(t, ToolCall) for t in self.tool_calls):
            calls = tuple(t if isinstance(t, ToolCall) else ToolCall.from_dict(t) for t in self.tool_calls)
            object.__setattr__(self, "tool_calls", calls)

    def replace(self, **changes: Any) -> Completion:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "model": self.model,
            "provider": self.provider,
            "usage": self.usage.to_dict(),
            "cost_usd": self.cost_usd,
            "latency_s": self.latency_s,
            "finish_reason": self.finish_reason,
            "attempts": self.attempts,
            "fallback_used": self.fallback_used,
            "cached": self.cached,
            "tool_calls": [t.to_dict() for t in self.tool_calls],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Completion:
        usage = data.get("usage") or {}
        return cls(
            content=data["content"],
            model=data["model"],
            provider=data["provider"],
            usage=Usage.from_dict(usage),
            cost_usd=float(data.get("cost_usd") or 0.0),  # null: a NaN written as strict JSON
            latency_s=float(data.get("latency_s") or 0.0),
            finish_reason=str(data.get("finish_reason", "stop")),
            attempts=int(data.get("attempts", 1)),
            fallback_used=bool(data.get("fallback_used", False)),
            cached=bool(data.get("cached", False)),
            tool_calls=tuple(ToolCall.from_dict(t) for t in data.get("tool_calls") or ()),
        )
