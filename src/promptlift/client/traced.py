"""One span per model call, after OpenTelemetry's GenAI semantic conventions (``promptlift.tracing``).

The outermost wrapper (``client.stack``), so a span covers the whole call as the caller saw it —
budget, cache, fallback, every retry — and its attributes hold what only the end knows: the model
that answered, the attempts, whether the cache answered, the cost. Only stacked when tracing is on.

    gen_ai.operation.name        "chat"
    gen_ai.provider.name         the route (openai, anthropic, azure.ai.openai, ...); gen_ai.system too
    gen_ai.request.model         as asked, without the route (gpt-4o-mini); promptlift.model: with it
    gen_ai.request.*             temperature, max_tokens, top_p, seed, stop_sequences, choice.count ...
    gen_ai.response.model        the model that answered (after any fallback)
    gen_ai.response.finish_reasons, gen_ai.usage.input_tokens / output_tokens / cache_read.input_tokens
    server.address, server.port  the endpoint's host and port (never its path, user or query)
    promptlift.cost_usd, promptlift.attempts, promptlift.cache_hit, promptlift.fallback_used
    gen_ai.input.messages, gen_ai.output.messages   only with ``capture_content``; JSON, redacted
    error.type                   the promptlift error a failed call raised

A stream's span ends with its final completion, its error, or the caller closing it early
(``error.type`` StreamClosed). For a model with replicas, ``server.*`` and ``promptlift.replica``
name the replica that served the call (``tracing.note``; a stream's span names the model's
endpoint, the first replica).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from promptlift.client.cache import route_of
from promptlift.errors import PromptliftError
from promptlift.providers.base import Provider, closing
from promptlift.tracing import Span, Tracer, collect_notes, end_notes
from promptlift.types import Completion, CompletionRequest, Message, StreamEvent, ToolCall

# LiteLLM routes whose GenAI provider name differs from the route (the conventions' well-known values)
_PROVIDER_NAMES = {
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "bedrock": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "watsonx": "ibm.watsonx.ai",
}


def call_attributes(request: CompletionRequest) -> dict[str, Any]:
    """What is known before the call: the operation, the provider, the model and the parameters."""
    route = route_of(request.model)
    provider = _PROVIDER_NAMES.get(route, route)
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,  # the name before semantic conventions 1.37, still read by many tools
        "gen_ai.request.model": request.model.split("/", 1)[1] if "/" in request.model else request.model,
        "promptlift.model": request.model,
        "gen_ai.request.temperature": request.temperature,
        "gen_ai.request.max_tokens": request.max_tokens,
        "gen_ai.request.top_p": request.top_p,
        "gen_ai.request.seed": request.seed,
        "gen_ai.request.frequency_penalty": request.frequency_penalty,
        "gen_ai.request.presence_penalty": request.presence_penalty,
        "gen_ai.request.stop_sequences": list(request.stop) or None,
        "gen_ai.request.choice.count": request.n if request.n and request.n > 1 else None,
    }
    return attrs | endpoint_attributes(request.api_base)


def endpoint_attributes(api_base: str | None) -> dict[str, str | int]:
    """``server.address`` and ``server.port`` of an endpoint: never its path, user or query."""
    if not api_base:
        return {}
    parts = urlsplit(api_base)
    attrs: dict[str, str | int] = {"server.address": parts.hostname or ""}
    with contextlib.suppress(ValueError):  # not a port: left out rather than fail the call
        attrs["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
    return attrs


def completion_attributes(completion: Completion) -> dict[str, Any]:
    usage = completion.usage
    return {
        "gen_ai.response.model": completion.model,
        "gen_ai.response.finish_reasons": [completion.finish_reason],
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": usage.cached_tokens or None,
        "promptlift.cost_usd": completion.cost_usd,
        "promptlift.attempts": completion.attempts,
        "promptlift.cache_hit": completion.cached,
        "promptlift.fallback_used": completion.fallback_used,
        "promptlift.served_by": completion.served_by or None,
    }


def _parts(content: str, tool_calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "text", "content": content}] if content else []
    parts += [{"type": "tool_call", "id": t.id, "name": t.name, "arguments": t.arguments} for t in tool_calls]
    return parts


def input_messages(messages: Sequence[Message]) -> str:
    """The conversation sent, in the conventions' ``gen_ai.input.messages`` JSON shape."""
    out = []
    for m in messages:
        if m.role == "tool":
            out.append(
                {
                    "role": "tool",
                    "parts": [{"type": "tool_call_response", "id": m.tool_call_id, "response": m.text}],
                }
            )
        else:
            out.append({"role": m.role, "parts": _parts(m.text, m.tool_calls)})
    return json.dumps(out, ensure_ascii=False)


def output_messages(completion: Completion) -> str:
    message = {
        "role": "assistant",
        "parts": _parts(completion.content, completion.tool_calls),
        "finish_reason": completion.finish_reason,
    }
    return json.dumps([message], ensure_ascii=False)


class TracingProvider(Provider):
    """Outermost wrapper: one ``chat {model}`` span (SpanKind.CLIENT) per call through the client."""

    name = "tracing"

    def __init__(self, inner: Provider, tracer: Tracer):
        self.inner = inner
        self.tracer = tracer

    def _open(self, request: CompletionRequest) -> Span:
        attrs = call_attributes(request)
        span = self.tracer.start(f"chat {attrs['gen_ai.request.model']}", attrs, client=True)
        if self.tracer.capture_content:
            span.set("gen_ai.input.messages", input_messages(request.messages))
        return span

    def _close(self, span: Span, completion: Completion) -> None:
        span.update(completion_attributes(completion))
        if self.tracer.capture_content:
            span.set("gen_ai.output.messages", output_messages(completion))
        span.end()

    async def acomplete(self, request: CompletionRequest) -> Completion:
        span = self._open(request)
        notes, token = collect_notes()  # the replica that served it, when the model has replicas
        try:
            completion = await self.inner.acomplete(request)
        except BaseException as exc:  # a cancellation too: the span says the call did not finish
            span.update(notes)
            span.fail(exc)
            span.end()
            raise
        finally:
            end_notes(token)
        span.update(notes)
        self._close(span, completion)
        return completion

    async def astream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        span = self._open(request)
        ended = False
        try:
            async with closing(self.inner.astream(request)) as stream:
                async for event in stream:
                    if isinstance(event, Completion):
                        ended = True
                        self._close(span, event)
                    yield event
        except PromptliftError as exc:
            if not ended:
                ended = True
                span.fail(exc)
                span.end()
            raise
        finally:
            if not ended:  # the caller stopped reading before the answer was whole
                span.set("error.type", "StreamClosed")
                span.end()

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            self.tracer.shutdown()  # flushes: the last spans reach the collector before the client ends
