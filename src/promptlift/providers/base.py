"""The one interface every backend implements, and every client wrapper implements too."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from promptlift import errors, pricing
from promptlift.types import (
    Completion,
    CompletionRequest,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)


class Provider(abc.ABC):
    """Turns a ``CompletionRequest`` into a ``Completion`` or raises a ``promptlift.errors`` error.

    Contract: ``acomplete`` may be called concurrently from one event loop; it never raises an
    exception from a third-party library (the provider translates them); it sends exactly one
    request per call (retries belong to the client's retry wrapper).

    ``astream`` is the same call with the answer in pieces: ``TextDelta`` and ``ToolCallDelta``
    events as they arrive, then the final ``Completion``, last and exactly once. The default awaits
    ``acomplete`` and yields its answer whole (the text as one delta, each tool call as one), so
    every provider and test double can be streamed from; a provider that can do better overrides it.
    An error before the first event means nothing was received; an error after it ends the stream.
    """

    name: str = "provider"

    @abc.abstractmethod
    async def acomplete(self, request: CompletionRequest) -> Completion:
        """Send one request and return its normalized completion."""

    async def astream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Send one request and yield its answer in pieces, then the completion."""
        completion = await self.acomplete(request)
        for event in whole(completion):
            yield event

    async def preflight(self, model: str) -> None:  # noqa: B027 - an optional hook, not abstract
        """Raise the error a call to ``model`` would raise before sending anything — an unknown
        route or model, a host not allowed, a missing key — without sending it; the default (a
        test double) checks nothing."""

    async def aclose(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release connections; the default holds none."""


def answer(
    request: CompletionRequest,
    provider: str,
    *,
    content: str,
    tool_calls: tuple[ToolCall, ...],
    finish: str,
    usage: Usage,
    latency: float,
    served_by: str,
    prices: pricing.Prices | None,
    **more: Any,
) -> Completion:
    """The one way a provider's parsed answer becomes a ``Completion``: priced from its usage,
    and ``ContentFiltered`` when the filter left nothing (no text, no tool call). ``more``: the
    other fields (logprobs, samples)."""
    if finish == "content_filter" and not content and not tool_calls:
        raise errors.ContentFiltered(
            "the provider returned no content: blocked by its content filter",
            provider=provider,
            model=request.model,
        )
    return Completion(
        content=content,
        model=request.model,
        provider=provider,
        usage=usage,
        cost_usd=pricing.cost_usd(request.model, usage, prices),
        cache_saved_usd=pricing.cache_saving_usd(request.model, usage, prices),
        latency_s=latency,
        finish_reason=finish,
        tool_calls=tool_calls,
        served_by=served_by,
        **more,
    )


async def close_stream(events: AsyncIterator[Any]) -> None:
    """End a stream early (an async generator's ``aclose``: its ``finally`` blocks run now)."""
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()


E = TypeVar("E")


@contextlib.asynccontextmanager
async def closing(events: AsyncIterator[E]) -> AsyncIterator[AsyncIterator[E]]:
    """``async with closing(inner.astream(r)) as stream: async for event in stream: ...`` — the
    inner stream is closed when this block ends, however it ends. Without it, a wrapper's stream
    left early (``break``, an error, the caller's ``aclose``) leaves the inner one to the garbage
    collector, and its ``finally`` (a budget's settlement, a metric's record) runs at some later
    turn of the loop, after the caller has looked."""
    try:
        yield events
    finally:
        await close_stream(events)


def whole(completion: Completion) -> list[StreamEvent]:
    """A completion as the events of a stream that brought it in one piece."""
    events: list[StreamEvent] = [TextDelta(completion.content)] if completion.content else []
    events += [ToolCallDelta(i, c.id, c.name, c.arguments) for i, c in enumerate(completion.tool_calls)]
    return [*events, completion]
