"""What the loopback server answers, protocol-neutral: ``ok()``, ``rate_limited()``, ``tool_call()``...

Each reply is rendered by ``LoopbackServer`` in the body shape of whichever protocol asked (a 429
with OpenAI's, Anthropic's or Google's error body). ``promptlift.testing.server`` re-exports all of
these; import them from there.
"""

from __future__ import annotations

import dataclasses
import email.utils
import itertools
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ErrorKind",
    "Reply",
    "bad_request",
    "content_filtered",
    "context_length_exceeded",
    "cut_stream",
    "drop_connection",
    "empty_choices",
    "forbidden",
    "held_stream",
    "http_date",
    "malformed_json",
    "metered",
    "not_found",
    "ok",
    "parsed_calls",
    "rate_limited",
    "server_error",
    "slow",
    "tool_call",
    "unauthorized",
]

ErrorKind = Literal[
    "rate_limit",
    "server",
    "auth",
    "permission",
    "not_found",
    "bad_request",
    "context_length",
    "content_policy",
]

_ids = itertools.count(1)


@dataclass(frozen=True)
class Reply:
    """What the server does with one request. Build one with the helpers below (``ok()``, ...).

    ``delay`` is seconds to wait before answering (a slow server). ``error`` names an error kind
    that each protocol renders in its own body shape; ``action`` "drop" closes the connection
    without an answer, "malformed" answers 200 with a body that is not JSON.

    Streamed (a request with ``"stream": true``, ``testing.sse``): ``cut_after`` N closes the
    connection after N chunks, mid-answer; ``hold`` (N, event) waits after N chunks until the
    event is set (or the server closes), so a test can see what arrived before the rest is sent.
    """

    status: int = 200
    content: str = "Hello from the loopback server."
    input_tokens: int | None = None  # None: the number of words in the request's messages
    output_tokens: int | None = None  # None: the number of words in ``content``
    finish_reason: str = "stop"
    error: ErrorKind | None = None
    message: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    action: Literal["answer", "drop", "malformed"] = "answer"
    tool_calls: tuple[Mapping[str, Any], ...] = ()  # OpenAI shape: build with ``tool_call()``
    body: Mapping[str, Any] | None = None  # sent as the JSON body as is, whatever the protocol
    # How the answer's usage is reported. ``input_tokens`` counts every prompt token (OpenAI's
    # convention); of them ``cached_tokens`` were read from and ``cache_write_tokens`` written to the
    # provider's prompt cache; ``reasoning_tokens`` are part of the output. Anthropic's body reports
    # the three input parts apart. ``report_usage`` False: a 200 with no usage at all.
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    report_usage: bool = True
    cut_after: int | None = None
    hold: tuple[int, threading.Event] | None = None


def ok(
    content: str = "Hello from the loopback server.",
    *,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    finish_reason: str | None = None,
    tool_calls: tuple[Mapping[str, Any], ...] = (),
) -> Reply:
    """A successful answer with ``content``; token counts default to word counts.

    With ``tool_calls`` (see ``tool_call``) the finish reason defaults to "tool_calls", and an empty
    ``content`` sends no text beside the calls, as a provider does when it only calls a tool.
    """
    return Reply(
        content=content,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        finish_reason=finish_reason or ("tool_calls" if tool_calls else "stop"),
        tool_calls=tool_calls,
    )


def metered(
    reply: Reply,
    *,
    cached_tokens: int = 0,
    cache_write_tokens: int = 0,
    reasoning_tokens: int = 0,
    report_usage: bool = True,
) -> Reply:
    """``reply`` with its usage reported so (see ``Reply``): prompt-cache reads and writes, reasoning
    tokens, or no usage at all (``report_usage=False``)."""
    return dataclasses.replace(
        reply,
        cached_tokens=cached_tokens,
        cache_write_tokens=cache_write_tokens,
        reasoning_tokens=reasoning_tokens,
        report_usage=report_usage,
    )


def tool_call(name: str, arguments: Mapping[str, Any], *, id: str | None = None) -> dict[str, Any]:
    """One function call for ``ok(tool_calls=...)``, in OpenAI's shape (arguments as a JSON string).

    Each protocol renders it its own way; Gemini's ``functionCall`` carries no id, so ``id`` is
    only sent to OpenAI, Azure and Anthropic (default: a new ``call_<n>``).
    """
    return {
        "id": id or f"call_{next(_ids)}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(dict(arguments))},
    }


def http_date(seconds_from_now: float) -> str:
    """An HTTP-date (RFC 9110) ``seconds_from_now`` in the future, for ``Retry-After``."""
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


def rate_limited(retry_after: float | str | None = None) -> Reply:
    """429. ``retry_after`` is sent as the ``Retry-After`` header: seconds, or a string (an HTTP-date)."""
    headers = {} if retry_after is None else {"Retry-After": _header_value(retry_after)}
    return Reply(status=429, error="rate_limit", message="Rate limit reached; slow down.", headers=headers)


def server_error(status: int = 500, message: str = "The server had an error.") -> Reply:
    """A 5xx (500, 502, 503, or Anthropic's 529 overloaded)."""
    return Reply(status=status, error="server", message=message)


def unauthorized(message: str = "Invalid authentication credentials.") -> Reply:
    return Reply(status=401, error="auth", message=message)


def forbidden(message: str = "This key may not use this model.") -> Reply:
    return Reply(status=403, error="permission", message=message)


def not_found(message: str = "The model does not exist.") -> Reply:
    return Reply(status=404, error="not_found", message=message)


def bad_request(message: str = "Invalid value for parameter.") -> Reply:
    return Reply(status=400, error="bad_request", message=message)


def context_length_exceeded() -> Reply:
    """400 with each protocol's own "prompt too long" body and code."""
    return Reply(status=400, error="context_length")


def content_filtered() -> Reply:
    """400 refused by content policy. Its message is neutral on purpose: only the code says so."""
    return Reply(status=400, error="content_policy", message="The request was rejected.")


def slow(seconds: float, then: Reply | None = None) -> Reply:
    """Answer ``then`` (default ``ok()``) after ``seconds``: longer than a timeout, a timeout."""
    base = then or ok()
    return Reply(**{**base.__dict__, "delay": seconds})


def drop_connection() -> Reply:
    """Read the request, then close the connection without sending a response."""
    return Reply(action="drop")


def cut_stream(after: int, then: Reply | None = None) -> Reply:
    """A streamed answer (``then``, default ``ok()``) whose connection drops after ``after`` chunks;
    asked without ``"stream": true``, it is answered whole."""
    return dataclasses.replace(then or ok(), cut_after=after)


def held_stream(after: int, until: threading.Event, then: Reply | None = None) -> Reply:
    """A streamed answer (``then``, default ``ok()``) that stops after ``after`` chunks until
    ``until`` is set, then sends the rest."""
    return dataclasses.replace(then or ok(), hold=(after, until))


def malformed_json() -> Reply:
    """200 with ``Content-Type: application/json`` and a body that does not parse."""
    return Reply(action="malformed")


def empty_choices() -> Reply:
    """200 with a well-formed OpenAI chat body whose ``choices`` list is empty (no answer at all)."""
    return Reply(
        body={
            "id": "chatcmpl-empty",
            "object": "chat.completion",
            "created": 0,
            "model": "x",
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3},
        }
    )


def _header_value(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


def parsed_calls(reply: Reply) -> list[tuple[str, str, dict[str, Any]]]:
    """``reply.tool_calls`` as (id, name, parsed arguments), for the protocols to render."""
    out = []
    for call in reply.tool_calls:
        function = call["function"]
        arguments = function.get("arguments") or "{}"
        parsed = json.loads(arguments) if isinstance(arguments, str) else dict(arguments)
        out.append((str(call.get("id") or f"call_{next(_ids)}"), str(function["name"]), parsed))
    return out
