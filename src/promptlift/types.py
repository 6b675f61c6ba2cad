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

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")


@dataclass(frozen=True, slots=True)
class Part:
    """One piece of a message's content: text, or an image by URL (``https://…`` or a ``data:`` URL)."""

    kind: Literal["text", "image"]
    text: str = ""
    url: str = ""

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "image":
            return {"type": "image_url", "image_url": {"url": self.url}}
        return {"type": "text", "text": self.text}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | str) -> Part:
        """OpenAI's content-part shapes (``text``, ``image_url`` as a URL or ``{"url"}``), or a string."""
        if isinstance(data, str):
            return cls("text", data)
        kind = data.get("type")
        if kind == "text" and isinstance(data.get("text"), str):
            return cls("text", data["text"])
        if kind == "image_url":
            image = data.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else image
            if isinstance(url, str) and url:
                return cls("image", url=url)
        raise ValueError(
            f"a content part is {{type: text, text: ...}} or {{type: image_url, image_url: {{url: ...}}}}, "
            f"got {dict(data)!r}"
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

    def to_openai(self) -> dict[str, Any]:
        """The call as an assistant message carries it in OpenAI's format (LiteLLM's lingua franca)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }

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
class Message:
    """One turn of a conversation, in the shape every route is translated from.

    ``content`` is text, or a tuple of ``Part`` (text and images). An assistant turn may carry the
    ``tool_calls`` it made (its content then often empty); a ``tool`` turn answers one of them: its
    ``tool_call_id`` names the call and ``name`` the tool (Gemini matches results by name).
    """

    role: Role
    content: str | tuple[Part, ...] = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    name: str = ""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"a message's role is one of {', '.join(ROLES)}, got {self.role!r}")
        if not isinstance(self.content, str):
            parts = tuple(p if isinstance(p, Part) else Part.from_dict(p) for p in self.content)
            object.__setattr__(self, "content", parts)
        if any(not isinstance(t, ToolCall) for t in self.tool_calls):
            calls = tuple(t if isinstance(t, ToolCall) else ToolCall.from_dict(t) for t in self.tool_calls)
            object.__setattr__(self, "tool_calls", calls)
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"only an assistant message carries tool calls, not a {self.role} message")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")

    @property
    def text(self) -> str:
        """The content's text (an image part adds none)."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if p.kind == "text")

    @property
    def images(self) -> tuple[str, ...]:
        return (
            () if isinstance(self.content, str) else tuple(p.url for p in self.content if p.kind == "image")
        )

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's message format, which LiteLLM translates for every other route."""
        content: Any = self.content if isinstance(self.content, str) else [p.to_dict() for p in self.content]
        if self.tool_calls and content == "":
            content = None  # an empty text block next to tool calls is refused by Anthropic
        out: dict[str, Any] = {"role": self.role, "content": content}
        if self.tool_calls:
            out["tool_calls"] = [t.to_openai() for t in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        if self.name:
            out["name"] = self.name
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """An OpenAI-style message dict (``to_dict``'s shape); ``ValueError`` names what is wrong."""
        role, content = data.get("role"), data.get("content")
        if role not in ROLES:
            raise ValueError(f"a message needs a role ({', '.join(ROLES)}), got {dict(data)!r}")
        calls = data.get("tool_calls") or ()
        if content is None and (calls or role == "tool"):
            content = ""
        if isinstance(content, list | tuple):
            content = tuple(Part.from_dict(p) for p in content)
        elif not isinstance(content, str):
            raise ValueError(f"a message's content is a string or a list of parts, got {dict(data)!r}")
        if not isinstance(calls, list | tuple) or not all(isinstance(c, Mapping) for c in calls):
            raise ValueError(f"a message's tool_calls is a list of calls, got {calls!r}")
        return cls(
            role,
            content,
            tuple(ToolCall.from_dict(c) for c in calls),
            str(data.get("tool_call_id") or ""),
            str(data.get("name") or ""),
        )


def messages_from(value: Iterable[Message | Mapping[str, Any]] | str) -> tuple[Message, ...]:
    """Accept a bare string (one user turn), Message objects or OpenAI-style dicts."""
    if isinstance(value, str):
        return (Message("user", value),)
    return tuple(item if isinstance(item, Message) else Message.from_dict(item) for item in value)


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
    # "auto", "none", "required", or {"type": "function", "function": {"name": ...}} (OpenAI's shape)
    tool_choice: str | Mapping[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    frequency_penalty: float | None = None  # -2..2, OpenAI's meaning
    presence_penalty: float | None = None
    # "minimal" | "low" | "medium" | "high": an o-series/GPT-5 model's reasoning, an Anthropic
    # model's thinking budget, a Gemini 2.5 model's (LiteLLM maps it per provider)
    reasoning_effort: str | None = None
    logprobs: bool | None = None  # the answer's tokens with their log-probabilities (Completion.logprobs)
    top_logprobs: int | None = None  # and that many likeliest alternatives per token (0-20; needs logprobs)
    n: int | None = None  # answers sampled in one call (Completion.samples); budgets count each one
    timeout: float = 120.0  # seconds; LiteLLM's own default is 6000 s
    api_base: str | None = None
    # Which sample this is when the same sampled request is asked for n times (cache key only).
    sample: int = 0
    # A ceiling on the answer that a budget sets when the caller set no max_tokens: sent as max_tokens,
    # but not part of the cache key, so answers are shared between runs with and without a budget.
    output_cap: int | None = None
    # How many leading messages (system text, demos) every call of an evaluation shares: a provider
    # whose prompt cache needs explicit breakpoints (Anthropic) marks them (``promptlift.prompt_cache``).
    # 0: mark nothing. It changes what is billed, never the answer, so it is not part of the cache key.
    cache_prefix: int = 0

    def generation_params(self) -> dict[str, Any]:
        """The parameters that change what the model generates, without None values."""
        params: dict[str, Any] = {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "seed": self.seed,
            "response_format": dict(self.response_format) if self.response_format else None,
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
            "reasoning_effort": self.reasoning_effort,
            "logprobs": self.logprobs,
            "top_logprobs": self.top_logprobs if self.logprobs else None,
            "n": self.n if self.n is not None and self.n > 1 else None,
        }
        if self.stop:
            params["stop"] = list(self.stop)
        if self.tools:
            params["tools"] = [dict(t) for t in self.tools]
            if self.tool_choice is not None:
                params["tool_choice"] = (
                    self.tool_choice if isinstance(self.tool_choice, str) else dict(self.tool_choice)
                )
            if self.parallel_tool_calls is not None:
                params["parallel_tool_calls"] = self.parallel_tool_calls
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

    def without_cache(self) -> Usage:
        """The same tokens as if no prompt cache had been read or written: all at the input rate."""
        return dataclasses.replace(self, cached_tokens=0, cache_write_tokens=0)

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
class TokenLogprob:
    """One token of an answer, its natural-log probability, and the likeliest alternatives there
    (``top``: token and log-probability pairs, likeliest first) when ``top_logprobs`` asked."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, "logprob": self.logprob, "top": [list(t) for t in self.top]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenLogprob:
        """Ours, or OpenAI's shape (``top_logprobs: [{token, logprob}, ...]``)."""
        top = data.get("top")
        if top is None:
            top = [(t["token"], t["logprob"]) for t in data.get("top_logprobs") or ()]
        return cls(str(data["token"]), float(data["logprob"]), tuple((str(t), float(lp)) for t, lp in top))


def logprobs_from(raw: Any) -> tuple[TokenLogprob, ...]:
    """A choice's ``logprobs`` in OpenAI's shape (``{"content": [{token, logprob, top_logprobs}]}``),
    as a dict or an SDK object, as our tokens; () when there are none."""
    if raw is None:
        return ()
    content = raw.get("content") if isinstance(raw, Mapping) else getattr(raw, "content", None)
    out = []
    for item in content or ():
        entry = (
            item
            if isinstance(item, Mapping)
            else item.model_dump()
            if hasattr(item, "model_dump")
            else vars(item)
        )
        out.append(TokenLogprob.from_dict(entry))
    return tuple(out)


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
    served_by: str = ""  # which path sent it: "litellm", "native" ("" for a provider of your own)
    logprobs: tuple[TokenLogprob, ...] = ()  # with request ``logprobs``, where the provider gives them
    samples: tuple[str, ...] = ()  # with request ``n`` > 1: every answer's text, ``content`` first
    # What the provider's prompt cache saved on this call: its cost with every input token at the
    # input rate, minus ``cost_usd`` (negative when a cache write's premium outweighed the reads).
    cache_saved_usd: float = 0.0
    # What a provider Batch API's discount saved on this call (served_by "batch"): its cost at the
    # list price minus ``cost_usd``, from the same reported usage. On such a call ``cache_saved_usd``
    # is priced at the list rate, so cost + both savings = the list price of the tokens uncached.
    batch_saved_usd: float = 0.0

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
            **({"served_by": self.served_by} if self.served_by else {}),
            **({"logprobs": [t.to_dict() for t in self.logprobs]} if self.logprobs else {}),
            **({"samples": list(self.samples)} if self.samples else {}),
            **({"cache_saved_usd": self.cache_saved_usd} if self.cache_saved_usd else {}),
            **({"batch_saved_usd": self.batch_saved_usd} if self.batch_saved_usd else {}),
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
            served_by=str(data.get("served_by") or ""),
            logprobs=tuple(TokenLogprob.from_dict(t) for t in data.get("logprobs") or ()),
            samples=tuple(str(t) for t in data.get("samples") or ()),
            cache_saved_usd=float(data.get("cache_saved_usd") or 0.0),
            batch_saved_usd=float(data.get("batch_saved_usd") or 0.0),
        )


# -- streaming ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer's text, as it arrived; the pieces of one stream join to its content."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of the ``index``-th tool call: its first piece names it (``id``, ``name``), every
    piece may add to its JSON ``arguments`` (fragments, not parseable until the call is whole)."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


# What a stream yields: deltas as they arrive, then exactly one Completion (the whole answer, with
# its usage and cost), last.
StreamEvent = TextDelta | ToolCallDelta | Completion
